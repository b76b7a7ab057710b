"""The journal: the append-only event log every accepted event goes into before anything else.

One interface, two implementations sharing one contract test suite
(``tests/core/store/test_contract.py``): SQLite (:mod:`nabat.store.sqlite`, the embedded
default) and PostgreSQL through asyncpg (:mod:`nabat.store.postgres`, production; several hub
processes may share it).

Guarantees every implementation gives:

* **Durable before acknowledged.** :meth:`Journal.append` returns only after the events are
  committed (SQLite ``synchronous=FULL``; PostgreSQL ``synchronous_commit=on``).
* **Group commit.** Concurrent appends are batched into one transaction; a lone append is
  written at once, without waiting for company.
* **Idempotent.** An event whose ``(source, id)`` is already in the journal is not stored again;
  ``append`` returns the sequence number it already has.
* **Ordered.** Every stored event has a sequence number (``seq``), increasing in commit order
  and never reused, so ``seq`` is a safe cursor: a reader that has seen ``seq <= n`` has seen
  every event that will ever have ``seq <= n``.
* **Versioned schema.** The hub creates and migrates its schema; opening a database whose
  schema is newer than the code raises :class:`SchemaTooNew` instead of touching it.

Beside the events the journal keeps small **records** (schema version 3): JSON documents the
HTTP API needs (API tokens, idempotency keys with their responses, outbound webhook
subscriptions, the audit log), each under a ``(collection, key)``, optionally expiring. Keys
sort byte-wise (code point order), so uuid7 keys list in time order. An expired record is
absent to every read and to :meth:`Journal.put_record` ``only_new``;
:meth:`Journal.purge_records` deletes it for good.
"""

from __future__ import annotations

import abc
import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from types import EllipsisType
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from ..events import Event, EventTypes, decode_event, encode_event
from ..logs import get_logger
from ..subjects import compile_pattern, validate_pattern
from .delivery import DeliveryIssue, IssueState, SubscriptionSpec, SubscriptionState
from .health import JournalHealth

__all__ = [
    "MAX_PAGE",
    "Appended",
    "EventQuery",
    "Journal",
    "JournalError",
    "Page",
    "Record",
    "SchemaTooNew",
    "StoredEvent",
    "decode_cursor",
    "encode_cursor",
]

log = get_logger("nabat.store")
MAX_PAGE = 1000
_MAX_BATCH = 2000  # events per group-commit transaction

PutMode = Literal["any", "new", "claim"]
"""How a record is written: over anything, only where no live record is (``only_new``), or
also over this same body (``claim``); see :meth:`Journal.put_record`."""


class JournalError(RuntimeError):
    """The journal could not do what was asked (connection lost, disk full…)."""

    outage = False
    """The database is unavailable (its health logged that once): callers log this failure
    quietly instead of once per request."""
    disk_full = False
    """No room left to write: the API answers 507 rather than 503."""


class SchemaTooNew(JournalError):
    """The database was migrated by a newer Nabat; this code must not touch it."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the journal's schema is version {found}, this Nabat supports up to {supported}; "
            "upgrade Nabat (never downgrade a database)"
        )
        self.found = found
        self.supported = supported


class StoredEvent(msgspec.Struct, frozen=True):
    """An event with its place in the journal."""

    seq: int
    event: Event


class Appended(msgspec.Struct, frozen=True):
    """What :meth:`Journal.append_checked` did with one event."""

    seq: int
    new: bool
    """True: stored by this call. False: its ``(source, id)`` was in the journal already (or
    earlier in the same group commit), and ``seq`` is the number it has."""


class Record(msgspec.Struct, frozen=True):
    """A small document kept beside the events (see the module docstring)."""

    collection: str
    key: str
    body: bytes
    created: datetime
    """When the record was first written (timezone-aware UTC)."""
    updated: datetime
    """When it was last written."""
    expires: datetime | None = None
    """From this instant on the record is absent; None: never expires."""


def check_aware(name: str, value: datetime | None) -> None:
    """Refuse a naive datetime: every stored instant is absolute."""
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must carry a UTC offset")


class EventQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to read. All filters combine with AND; lists combine with OR inside."""

    since: datetime | None = None
    """Events whose ``time`` is at or after this."""
    until: datetime | None = None
    """Events whose ``time`` is before this."""
    types: tuple[str, ...] = ()
    """NATS patterns on the event type (``camera.health.*``, ``alert.>``)."""
    subject: str | None = None
    municipalities: tuple[str, ...] = ()
    correlationid: str | None = None
    after: int | None = None
    """Cursor: only events with ``seq`` greater than this."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = 100

    def __post_init__(self) -> None:
        for pattern in self.types:
            validate_pattern(pattern)
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must carry a UTC offset")

    def type_filters(self) -> tuple[list[str], list[str]] | None:
        """How SQL can narrow by type: (exact types, literal prefixes ending in '.'), or None
        when some pattern starts with a wildcard and SQL cannot narrow at all."""
        if not self.types:
            return None
        exact: list[str] = []
        prefixes: list[str] = []
        for pattern in self.types:
            tokens = pattern.split(".")
            literal = []
            for token in tokens:
                if token in ("*", ">"):
                    break
                literal.append(token)
            if len(literal) == len(tokens):
                exact.append(pattern)
            elif not literal:
                return None
            else:
                prefixes.append(".".join(literal) + ".")
        return exact, prefixes

    def type_matches(self, event_type: str) -> bool:
        return not self.types or any(compile_pattern(p).fullmatch(event_type) for p in self.types)


class Page(msgspec.Struct, frozen=True):
    events: list[StoredEvent]
    next_cursor: str | None
    """Pass as ``after`` (decoded) to read on; None when this page reached the end."""


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching strings that start with ``prefix`` (``ESCAPE '\\'``)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Raise ValueError with a clear message for a cursor we did not issue."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("s"):
            raise ValueError
        return int(text[1:])
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"invalid cursor {cursor!r}") from None


class _Pending:
    __slots__ = ("checked", "events", "future")

    def __init__(
        self, events: Sequence[Event], future: asyncio.Future[list[Any]], checked: bool
    ) -> None:
        self.events = events
        self.future = future
        self.checked = checked  # answer with Appended (append_checked), not bare seqs


class Journal(abc.ABC):
    """The event log. Subclasses implement the ``_``-prefixed storage primitives."""

    SCHEMA_VERSION: ClassVar[int] = 3
    """1: events; 2: durable subscriptions and delivery issues; 3: records."""
    kind: ClassVar[str]
    _commits_in_flight: ClassVar[int] = 1
    """Group commits that may be under way at once. More than one only where the storage
    keeps them in commit order itself (PostgreSQL's write lock): the next batch is then
    already waiting at the server when the previous one commits."""
    _split_from: ClassVar[int] = 0
    """With several commits in flight: a backlog of at least this many events, found when no
    commit is under way, goes out as two batches, so the server writes one while this process
    answers the producers of the other (0: never split)."""

    shared: bool = False
    """Whether several hub processes may use this journal at once (PostgreSQL): state they
    share (rate limits) must then live in it, not in one process."""

    def __init__(self, *, types: EventTypes | None = None) -> None:
        self.types = types
        self._pending: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0
        self.appended = 0
        self.health = JournalHealth(type(self).__name__)
        """Whether the database answers, as this journal's calls find (outages)."""

    def is_outage(self, exc: BaseException) -> bool:
        """Whether a failure means the database is unavailable (not that one statement was
        refused)."""
        return True

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self, *, migrate: bool = True) -> None:
        """Connect, and create or migrate the schema (``migrate=False``: only check it)."""
        await self._connect()
        try:
            await self._check_and_migrate(migrate)
        except BaseException:
            await self._disconnect()  # no threads, pools or connections left behind
            raise
        self._wake = asyncio.Event()
        self._flusher = asyncio.get_running_loop().create_task(
            self._flush_loop(), name="journal:flush"
        )

    async def _check_and_migrate(self, migrate: bool) -> None:
        found = await self._schema_version()
        if found > self.SCHEMA_VERSION:
            raise SchemaTooNew(found, self.SCHEMA_VERSION)
        if found < self.SCHEMA_VERSION:
            if not migrate:
                raise JournalError(
                    f"the journal's schema is version {found}, this Nabat needs "
                    f"{self.SCHEMA_VERSION}: run `nabat db upgrade`"
                )
            await self._migrate(found)
            log.info(
                "journal.migrated",
                kind=self.kind,
                from_version=found,
                to_version=self.SCHEMA_VERSION,
            )

    async def close(self) -> None:
        """Finish pending appends, then disconnect."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            assert self._wake is not None
            self._wake.set()
            await self._flusher
        await self._disconnect()

    async def schema_version(self) -> int:
        return await self._schema_version()

    async def peek_schema_version(self) -> int:
        """The stored schema version, read without opening (or migrating) the journal."""
        await self._connect()
        try:
            return await self._schema_version()
        finally:
            await self._disconnect()

    # -- writing ---------------------------------------------------------------------------
    async def peek_lease_holders(self) -> list[str]:
        """Owners of live delivery leases — hub processes running on this journal — read
        without opening (or migrating) it."""
        await self._connect()
        try:
            if await self._schema_version() == 0:
                return []
            now = datetime.now(UTC)
            return sorted(
                {
                    s.lease_owner
                    for s in await self.subscriptions()
                    if s.lease_owner and s.lease_until is not None and s.lease_until > now
                }
            )
        finally:
            await self._disconnect()

    async def append(self, events: Sequence[Event]) -> list[int]:
        """Store ``events`` durably; return their sequence numbers, in order."""
        return await self._enqueue(events, checked=False)

    async def append_checked(self, events: Sequence[Event]) -> list[Appended]:
        """Like :meth:`append`, and say for each event whether this call stored it
        (``new``) or its ``(source, id)`` was there already. Of duplicates committed together
        (in one call or in concurrent ones) the first is new, the others are not."""
        return await self._enqueue(events, checked=True)

    async def _enqueue(self, events: Sequence[Event], *, checked: bool) -> list[Any]:
        if self._closed or self._wake is None:
            raise JournalError("the journal is not open")
        if self._flusher is not None and self._flusher.done():
            raise JournalError("the journal's writer has stopped; restart the hub")
        if not events:
            return []
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(events, future, checked))
        self._wake.set()
        # No shield: the future is this call's own, so a cancelled caller only cancels it, and
        # the writer skips futures that are done. The events are written all the same.
        return await future

    async def append_one(self, event: Event) -> int:
        return (await self.append([event]))[0]

    async def _flush_loop(self) -> None:
        """Group commit: take what is pending (up to ``_MAX_BATCH`` events) and commit it.

        With ``_commits_in_flight`` above 1 the next batch starts while earlier ones are still
        committing; the storage keeps commits in seq order. Batches in flight together hold
        appends that were concurrent, so nothing orders them anyway, and an append awaited
        before the next one is made still gets the lower numbers."""
        assert self._wake is not None
        wake = self._wake
        loop = asyncio.get_running_loop()
        depth = self._commits_in_flight
        running: set[asyncio.Task[None]] = set()
        escaped: list[BaseException] = []

        async def commit(batch: list[_Pending]) -> None:
            try:
                await self._commit(batch)
            except BaseException as exc:  # cancelled mid-write: nobody may wait forever
                error = JournalError(f"append interrupted: {exc!r}")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                raise

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            if not task.cancelled() and task.exception() is not None:
                escaped.append(task.exception())  # type: ignore[arg-type]
            wake.set()

        try:
            while True:
                await wake.wait()
                wake.clear()
                if escaped:  # a commit died of something _commit does not handle: stop
                    raise escaped[0]
                while self._pending and len(running) < depth:
                    limit = _MAX_BATCH
                    if depth > 1 and not running and self._split_from:
                        queued = sum(len(item.events) for item in self._pending)
                        if queued >= self._split_from:
                            limit = (queued + 1) // 2
                    count = size = 0
                    for item in self._pending:
                        if count and size + len(item.events) > limit:
                            break
                        size += len(item.events)
                        count += 1
                    batch = self._pending[:count]
                    del self._pending[:count]
                    if depth == 1:
                        await commit(batch)
                    else:
                        task = loop.create_task(commit(batch), name="journal:commit")
                        running.add(task)
                        task.add_done_callback(finished)
                if self._closed and not self._pending and not running:
                    return
        except BaseException as exc:
            error = JournalError(f"append interrupted: {exc!r}")
            for task in running:
                task.cancel()
            for item in self._pending:
                if not item.future.done():
                    item.future.set_exception(error)
            self._pending.clear()
            raise

    async def _commit(self, batch: list[_Pending]) -> None:
        rows = [(e, encode_event(e)) for item in batch for e in item.events]
        try:
            seqs, new = await self._write(rows)
        except Exception as exc:
            error = (
                exc if isinstance(exc, JournalError) else JournalError(f"append failed: {exc!r}")
            )
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            (log.debug if error.outage else log.error)(
                "journal.append_failed", kind=self.kind, events=len(rows), error=repr(exc)
            )
            return
        self.batches += 1
        self.appended += len(rows)
        start = 0
        for item in batch:
            n = len(item.events)
            if not item.future.done():
                if item.checked:
                    item.future.set_result(
                        [
                            Appended(seq=seq, new=fresh)
                            for seq, fresh in zip(
                                seqs[start : start + n], new[start : start + n], strict=True
                            )
                        ]
                    )
                else:
                    item.future.set_result(seqs[start : start + n])
            start += n

    # -- reading ---------------------------------------------------------------------------
    def _decode(self, seq: int, body: bytes) -> StoredEvent:
        return StoredEvent(seq=seq, event=decode_event(body, self.types))

    async def query(self, query: EventQuery) -> Page:
        """Read events in ``seq`` order matching ``query``, one page at a time."""
        rows = await self._select(query)
        more = len(rows) > query.limit
        scanned = rows[: query.limit]
        events = [self._decode(seq, body) for seq, body in scanned]
        # SQL narrowed type patterns by their literal prefix; wildcards are matched here. A page
        # can therefore hold fewer than ``limit`` events: follow next_cursor until it is None.
        events = [s for s in events if query.type_matches(s.event.type)]
        cursor = encode_cursor(scanned[-1][0]) if more else None
        return Page(events=events, next_cursor=cursor)

    async def get(self, source: str, event_id: str) -> StoredEvent | None:
        row = await self._get(source, event_id)
        return None if row is None else self._decode(*row)

    async def last_seq(self) -> int:
        """The highest committed sequence number (0 for an empty journal)."""
        return await self._last_seq()

    async def purge(self, before: datetime) -> int:
        """Delete events whose ``time`` is before ``before`` (retention); return how many."""
        if before.tzinfo is None:
            raise ValueError("before must carry a UTC offset")
        return await self._purge(before)

    async def ids_after(self, after: int, limit: int = 5000) -> list[tuple[int, str]]:
        """``(seq, id)`` of the events after ``after``, in seq order, bodies unread: the cheap
        way for the hub's tailer to skip what its own process wrote."""
        return await self._ids_after(after, limit)

    async def events_at(self, seqs: Sequence[int]) -> list[StoredEvent]:
        """The stored events with these sequence numbers (missing ones are skipped)."""
        return [self._decode(seq, body) for seq, body in await self._at(list(seqs))]

    # -- durable delivery state (see nabat.store.delivery) ---------------------------------
    @abc.abstractmethod
    async def save_subscription(self, spec: SubscriptionSpec) -> SubscriptionState:
        """Create the subscription (cursor at the journal's end, or 0 with
        ``start_at_beginning``) or update its spec, keeping its cursor."""

    @abc.abstractmethod
    async def subscription(self, subscription_id: str) -> SubscriptionState | None: ...

    @abc.abstractmethod
    async def subscriptions(self) -> list[SubscriptionState]: ...

    @abc.abstractmethod
    async def delete_subscription(self, subscription_id: str) -> bool:
        """Remove a subscription and its retry and dead rows."""

    @abc.abstractmethod
    async def acquire_lease(self, subscription_id: str, owner: str, ttl: float) -> bool:
        """Take or renew the lease when it is free, expired or already ``owner``'s."""

    @abc.abstractmethod
    async def release_lease(self, subscription_id: str, owner: str) -> None: ...

    @abc.abstractmethod
    async def advance_cursor(self, subscription_id: str, owner: str, seq: int) -> bool:
        """Move the cursor forward to ``seq`` (never back) if ``owner`` holds an unexpired
        lease; False means the lease was lost and the caller must stop delivering."""

    @abc.abstractmethod
    async def record_failure(
        self,
        subscription_id: str,
        seq: int,
        event_id: str,
        error: str,
        next_attempt_at: datetime | None,
        dead: bool,
    ) -> DeliveryIssue:
        """Count a failed attempt: create or update the event's row (attempts + 1)."""

    @abc.abstractmethod
    async def clear_failure(self, subscription_id: str, seq: int) -> None:
        """The event was delivered after all: drop its retry row."""

    @abc.abstractmethod
    async def issues(
        self,
        subscription_id: str | None = None,
        state: IssueState | None = None,
        *,
        due_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[DeliveryIssue]:
        """Retry and dead rows, by subscription then seq; ``due_before`` keeps retry rows
        whose next attempt is due."""

    @abc.abstractmethod
    async def revive_dead(self, subscription_id: str, seqs: Sequence[int] | None = None) -> int:
        """Turn dead letters back into retries due now (attempts reset); return how many."""

    @abc.abstractmethod
    async def discard_dead(self, subscription_id: str, seqs: Sequence[int] | None = None) -> int:
        """Forget dead letters; return how many."""

    # -- records (schema version 3) --------------------------------------------------------
    async def put_record(
        self,
        collection: str,
        key: str,
        body: bytes,
        *,
        expires: datetime | None = None,
        only_new: bool = False,
        claim: bool = False,
    ) -> bool:
        """Write the record (insert, or replace body and expiry keeping ``created``). With
        ``only_new`` write it only if no unexpired record has that key (an expired one is
        replaced), atomically: of concurrent ``only_new`` puts of one key exactly one wins.
        With ``claim`` also over an unexpired record whose body is this same body: a lease
        whose body names its holder is taken, renewed (a later ``expires``) or given up
        (``expires`` now) in one atomic statement, never over another holder's. True when
        written."""
        check_aware("expires", expires)
        mode: PutMode = "claim" if claim else "new" if only_new else "any"
        return await self._put_record(collection, key, bytes(body), expires, mode)

    async def put_records(
        self, collection: str, items: Sequence[tuple[str, bytes, datetime | None]]
    ) -> None:
        """Write many ``(key, body, expires)`` records in one transaction, as
        :meth:`put_record` would one by one (of repeated keys the last wins)."""
        latest: dict[str, tuple[bytes, datetime | None]] = {}
        for key, body, expires in items:
            check_aware("expires", expires)
            latest[key] = (bytes(body), expires)
        if latest:
            await self._put_records(collection, [(k, b, e) for k, (b, e) in latest.items()])

    async def swap_record(
        self,
        collection: str,
        key: str,
        expected: bytes,
        body: bytes,
        *,
        expires: datetime | EllipsisType | None = ...,
    ) -> bool:
        """Replace an unexpired record's body with ``body`` only while it is still
        ``expected``, atomically: of concurrent swaps from one body — in this process or any
        other on the same journal — exactly one wins. ``created`` stays, and ``expires``
        unless given. True when written; False when the body had changed or the record is
        absent."""
        if expires is not ...:
            check_aware("expires", expires)
        return await self._swap_record(collection, key, bytes(expected), bytes(body), expires)

    async def update_record(
        self,
        collection: str,
        key: str,
        change: Callable[[bytes], bytes | None],
        *,
        attempts: int = 50,
        expires: datetime | EllipsisType | None = ...,
    ) -> bytes | None:
        """Read, change and write one record, safe against every other writer: ``change``
        gets the current body and returns the new one (None: leave it), and is called again
        on the fresh body when someone else wrote in between. Returns the body written, or
        None when the record is absent or ``change`` left it. Raises :class:`JournalError`
        when ``attempts`` writers in a row got there first."""
        for _ in range(attempts):
            found = await self.get_record(collection, key)
            if found is None:
                return None
            body = change(found.body)
            if body is None:
                return None
            if await self.swap_record(collection, key, found.body, body, expires=expires):
                return body
        raise JournalError(f"record {key!r} of {collection!r}: {attempts} concurrent changes won")

    async def take_allowance(
        self, key: str, *, rate: float, burst: int, cost: int = 1
    ) -> float | None:
        """``cost`` requests from the rate limit ``key``, counted for every process on the
        journal: ``burst`` requests at once, then ``rate`` a second (GCRA, its state one
        record of ``rate_limits``, changed in one atomic statement). None when allowed;
        otherwise the seconds until they would be."""
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        if not 1 <= cost <= burst:
            raise ValueError("a rate limit's cost is 1 to burst requests")
        return await self._take_allowance(key, cost / rate, burst / rate)

    @abc.abstractmethod
    async def _take_allowance(self, key: str, interval: float, window: float) -> float | None:
        """The next allowed time moves on by ``interval`` (from now at the latest) unless it
        would lie more than ``window`` ahead; then the seconds it is over."""

    @abc.abstractmethod
    async def get_record(self, collection: str, key: str) -> Record | None:
        """The record, or None when there is none or it has expired."""

    async def records(
        self,
        collection: str,
        *,
        after: str | None = None,
        before: str | None = None,
        prefix: str | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> list[Record]:
        """Unexpired records in key order (byte-wise; ``descending`` reverses it), keys
        strictly between ``after`` and ``before`` and starting with ``prefix`` (taken
        literally, case-sensitive), at most ``limit``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        return await self._records(collection, after, before, prefix, limit, descending)

    async def all_records(self, collection: str, *, page: int = 500) -> AsyncIterator[Record]:
        """Every unexpired record of ``collection`` in key order, read a page at a time."""
        after: str | None = None
        while True:
            batch = await self.records(collection, after=after, limit=page)
            for record in batch:
                yield record
            if len(batch) < page:
                return
            after = batch[-1].key

    @abc.abstractmethod
    async def delete_record(self, collection: str, key: str) -> bool:
        """Remove the record; True when an unexpired one was there."""

    async def purge_records(self, now: datetime | None = None) -> int:
        """Delete records expired at ``now`` (default: the current time) in every
        collection; return how many."""
        check_aware("now", now)
        return await self._purge_records(now)

    # -- storage primitives ----------------------------------------------------------------
    @abc.abstractmethod
    async def _put_record(
        self,
        collection: str,
        key: str,
        body: bytes,
        expires: datetime | None,
        mode: PutMode,
    ) -> bool: ...

    @abc.abstractmethod
    async def _swap_record(
        self,
        collection: str,
        key: str,
        expected: bytes,
        body: bytes,
        expires: datetime | EllipsisType | None,
    ) -> bool:
        """One atomic statement: the body (and the expiry, unless ``...``) replaced where it
        is ``expected`` and live."""

    @abc.abstractmethod
    async def _put_records(
        self, collection: str, rows: list[tuple[str, bytes, datetime | None]]
    ) -> None:
        """Upsert ``rows`` (keys unique, at least one) in one transaction."""

    @abc.abstractmethod
    async def _records(
        self,
        collection: str,
        after: str | None,
        before: str | None,
        prefix: str | None,
        limit: int,
        descending: bool,
    ) -> list[Record]: ...

    @abc.abstractmethod
    async def _purge_records(self, now: datetime | None) -> int: ...

    @abc.abstractmethod
    async def _connect(self) -> None: ...

    @abc.abstractmethod
    async def _disconnect(self) -> None: ...

    @abc.abstractmethod
    async def _schema_version(self) -> int:
        """0 when the schema does not exist yet."""

    @abc.abstractmethod
    async def _migrate(self, from_version: int) -> None: ...

    @abc.abstractmethod
    async def _write(self, rows: list[tuple[Event, bytes]]) -> tuple[list[int], list[bool]]:
        """Insert rows in one transaction, skipping (source, id) already present; return the
        seq of every row (the existing one for duplicates), in order, and whether each row was
        stored now (False for rows present already and for repeats of an earlier row of
        ``rows``)."""

    @abc.abstractmethod
    async def _select(self, query: EventQuery) -> list[tuple[int, bytes]]:
        """Rows matching every filter SQL can apply, type patterns narrowed by their literal
        prefixes (exact types matched exactly), ``seq`` ascending, at most ``limit + 1``."""

    @abc.abstractmethod
    async def _get(self, source: str, event_id: str) -> tuple[int, bytes] | None: ...

    @abc.abstractmethod
    async def _last_seq(self) -> int: ...

    @abc.abstractmethod
    async def _ids_after(self, after: int, limit: int) -> list[tuple[int, str]]: ...

    @abc.abstractmethod
    async def _at(self, seqs: list[int]) -> list[tuple[int, bytes]]:
        """Rows with these seqs, ascending."""

    @abc.abstractmethod
    async def _purge(self, before: datetime) -> int: ...
