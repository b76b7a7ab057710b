"""The embedded journal: one SQLite file in WAL mode, ``synchronous=FULL``.

All writes go through one thread with its own connection (SQLite has one writer anyway); reads
use a second connection in another thread, which WAL lets run beside the writer. Neither ever
blocks the event loop. Instants are stored as integer microseconds since the epoch (UTC).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from types import EllipsisType
from typing import Any

import msgspec

from ..events import Event, EventTypes
from ..logs import get_logger
from .base import EventQuery, Journal, JournalError, PutMode, Record, like_prefix
from .delivery import DeliveryIssue, IssueState, SubscriptionSpec, SubscriptionState

__all__ = ["SqliteJournal"]

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS nabat_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL,
            source TEXT NOT NULL,
            type TEXT NOT NULL,
            subject TEXT,
            time_us INTEGER NOT NULL,
            municipality TEXT,
            severity TEXT,
            correlationid TEXT,
            body BLOB NOT NULL,
            UNIQUE (source, id)
        )""",
        "CREATE INDEX events_time ON events (time_us)",
        "CREATE INDEX events_type ON events (type, seq)",
        "CREATE INDEX events_municipality ON events (municipality, seq)",
        "CREATE INDEX events_correlation ON events (correlationid) WHERE correlationid IS NOT NULL",
    ],
    2: [
        """CREATE TABLE subscriptions (
            id TEXT PRIMARY KEY,
            spec BLOB NOT NULL,
            cursor INTEGER NOT NULL,
            lease_owner TEXT,
            lease_until_us INTEGER,
            created_us INTEGER NOT NULL
        )""",
        """CREATE TABLE delivery_issues (
            subscription TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            event_id TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            first_failed_us INTEGER NOT NULL,
            next_attempt_us INTEGER,
            last_error TEXT NOT NULL,
            PRIMARY KEY (subscription, seq)
        )""",
        "CREATE INDEX delivery_issues_due"
        " ON delivery_issues (subscription, state, next_attempt_us)",
    ],
    3: [
        # TEXT compares byte-wise (BINARY collation): keys sort in code point order.
        """CREATE TABLE records (
            collection TEXT NOT NULL,
            key TEXT NOT NULL,
            body BLOB NOT NULL,
            created_us INTEGER NOT NULL,
            updated_us INTEGER NOT NULL,
            expires_us INTEGER,
            PRIMARY KEY (collection, key)
        )""",
        "CREATE INDEX records_expires ON records (expires_us) WHERE expires_us IS NOT NULL",
    ],
}

_spec_decoder = msgspec.json.Decoder(SubscriptionSpec)


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def _dt(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


def _micros(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _exact_us(value: datetime) -> int:
    """Microseconds since the epoch without float rounding (records round-trip exactly)."""
    return (value - _EPOCH) // _MICROSECOND


def _exact_dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (code point order), or
    None when there is none. SQLite's LIKE ignores ASCII case, so prefixes are key ranges."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored: skip to the next scalar
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


_RECORD_COLUMNS = "collection, key, body, created_us, updated_us, expires_us"
_LIVE = "(expires_us IS NULL OR expires_us > ?)"
RATE_LIMITS = "rate_limits"
# Insert, or replace body and expiry; ``created`` restarts when the old row had expired
# (it was absent). ``?1``… are numbered: collection, key, body, now, expires.
_UPSERT = (
    "INSERT INTO records (collection, key, body, created_us, updated_us, expires_us)"
    " VALUES (?1, ?2, ?3, ?4, ?4, ?5)"
    " ON CONFLICT (collection, key) DO UPDATE SET body = excluded.body,"
    " updated_us = excluded.updated_us, expires_us = excluded.expires_us,"
    " created_us = CASE WHEN records.expires_us <= ?4 THEN ?4 ELSE records.created_us END"
)
_INSERT_NEW = _UPSERT + " WHERE records.expires_us <= ?4"
_INSERT_CLAIM = _INSERT_NEW + " OR records.body = excluded.body"  # free, or this holder's
_PUT_BY_MODE: dict[PutMode, str] = {"any": _UPSERT, "new": _INSERT_NEW, "claim": _INSERT_CLAIM}
_UPSERT_MANY = (
    "INSERT INTO records (collection, key, body, created_us, updated_us, expires_us) VALUES {}"
    " ON CONFLICT (collection, key) DO UPDATE SET body = excluded.body,"
    " updated_us = excluded.updated_us, expires_us = excluded.expires_us,"
    " created_us = CASE WHEN records.expires_us <= excluded.updated_us"
    " THEN excluded.created_us ELSE records.created_us END"
)
_INSERT_EVENTS = (
    "INSERT INTO events (id, source, type, subject, time_us, municipality, severity,"
    " correlationid, body) VALUES {}"
)
log = get_logger("nabat.store")
_ROWS_PER_STATEMENT = 256
_CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints by the checkpoint thread
_WAL_FOLD_FRAMES = 4096
"""WAL pages (16 MiB at 4 KiB) beyond which the WAL is folded back and truncated in the
writer's turn (writes wait meanwhile), as when writes were refused for want of room."""
_WAL_LIMIT = 16 * 1024 * 1024
"""``journal_size_limit``: a WAL longer than this is truncated to it when it restarts."""
_ROOM_MARGIN = 1024 * 1024
"""Free space kept beyond the WAL's size (see :meth:`SqliteJournal._room_to_write`)."""


class _NoRoom(sqlite3.OperationalError):
    """Refused before SQLite filled the disk: what is left is the WAL checkpoint's."""

    sqlite_errorcode = sqlite3.SQLITE_FULL


@lru_cache(maxsize=64)
def _values_sql(template: str, columns: int, rows: int) -> str:
    row = "(" + ",".join("?" * columns) + ")"
    return template.format(",".join([row] * rows))


def _insert_many(
    conn: sqlite3.Connection, template: str, columns: int, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` with multi-row VALUES statements instead of ``executemany``.

    ``executemany`` steps once per row, and the sqlite3 module releases and re-takes the GIL
    around every step: with the event loop busy in the other thread, each re-take waits its
    turn, so a writer thread spent most of its time waiting for the GIL (py-spy, bench/
    http_ingest.py). One statement per up to 256 rows takes it once. Chunk sizes are powers of
    two so a handful of prepared statements serve every batch size (the statement cache)."""
    start, total = 0, len(rows)
    while start < total:
        size = min(_ROWS_PER_STATEMENT, 1 << ((total - start).bit_length() - 1))
        chunk = rows[start : start + size]
        conn.execute(
            _values_sql(template, columns, size), [value for row in chunk for value in row]
        )
        start += size


def _record(row: tuple[Any, ...]) -> Record:
    collection, key, body, created, updated, expires = row
    return Record(
        collection=collection,
        key=key,
        body=bytes(body),
        created=_exact_dt(created),
        updated=_exact_dt(updated),
        expires=None if expires is None else _exact_dt(expires),
    )


class SqliteJournal(Journal):
    kind = "sqlite"

    def __init__(self, path: str | Path, *, types: EventTypes | None = None) -> None:
        super().__init__(types=types)
        self.path = Path(path)
        self.health.where = str(self.path)
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._short_of_room = False
        self._wal = self.path.with_name(self.path.name + "-wal")

    # -- threads ---------------------------------------------------------------------------
    def _open_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        return conn

    def _room_to_write(self, fn: Any, *args: Any) -> Any:
        """Run a write unless it would take the room the WAL checkpoint needs. Checkpointing
        copies the WAL's pages into the database, which grows by up to the WAL's size: a disk
        the WAL filled can then be checkpointed never, and the journal never recovered
        by itself (writes kept the WAL growing faster than space came back). So a write is
        refused, as SQLite refuses one on a full disk (507), while less than the WAL's size
        and a margin is free; the checkpoint thread then folds the WAL back and truncates it,
        and writes resume."""
        try:
            disk = os.statvfs(self.path.parent)
            free = disk.f_bavail * disk.f_frsize
            wal = self._wal.stat().st_size if self._wal.exists() else 0
        except OSError:
            return fn(*args)  # cannot tell: SQLite's own error says when the disk is full
        if free < wal + _ROOM_MARGIN:
            self._short_of_room = True
            raise _NoRoom(
                f"database or disk is full ({free // 1024} KiB free, kept for the WAL's "
                f"{wal // 1024} KiB to be checkpointed)"
            )
        return fn(*args)

    async def _in(self, pool: ThreadPoolExecutor | None, fn: Any, *args: Any) -> Any:
        if pool is None:
            raise JournalError("the journal is not open")
        write = pool is self._writer
        loop = asyncio.get_running_loop()
        try:
            if write and self._wconn is not None:
                result = await loop.run_in_executor(pool, self._room_to_write, fn, *args)
            else:
                result = await loop.run_in_executor(pool, fn, *args)
        except sqlite3.Error as exc:
            error = JournalError(f"SQLite: {exc} ({self.path})")
            error.disk_full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            if self.is_outage(exc):
                error.outage = True
                self.health.failed(str(error), write=write)
            raise error from exc
        self.health.succeeded(write=write)
        return result

    def is_outage(self, exc: BaseException) -> bool:
        # Disk full, I/O errors, a file that cannot be opened or stays locked; not a
        # constraint or a statement of ours that SQLite refused.
        return isinstance(exc, sqlite3.OperationalError | OSError)

    async def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="journal-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="journal-read")
        self._wconn = await self._in(self._writer, self._open_connection)
        self._rconn = await self._in(self._reader, self._open_connection)
        # WAL checkpoints off the append path: SQLite runs them inside whichever commit
        # crosses wal_autocheckpoint, and that commit (and every append queued behind it)
        # then waits for pages to be copied and the database file synced — the p99 spikes
        # of bench/http_ingest.py. A thread of its own checkpoints every second instead
        # (PASSIVE: never blocks the writer); the raised threshold is only a backstop.
        await self._in(self._writer, self._wconn.execute, "PRAGMA wal_autocheckpoint=20000")
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="journal-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        conn = self._open_connection()
        try:
            while not self._stop_checkpoints.wait(_CHECKPOINT_EVERY):
                try:
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # busy or I/O trouble: the backstop still holds
                    log.warning("journal.checkpoint_failed", error=str(exc))
                    frames = _WAL_FOLD_FRAMES + 1 if "full" in str(exc) else 0
                if frames > _WAL_FOLD_FRAMES or self._short_of_room:
                    self._fold_wal(frames)
        finally:
            conn.close()

    def _fold_wal(self, frames: int) -> None:
        """Checkpoint the whole WAL and truncate it, in the writer's turn. A passive
        checkpoint never waits for the writer, so under steady writes the WAL can only grow;
        on a disk that filled, each page then takes room twice (WAL and database) and the
        journal never got its space back. Writes queue behind this for its few hundred
        milliseconds: the price of recovering."""
        writer, wconn = self._writer, self._wconn
        if writer is None or wconn is None:
            return

        def fold() -> tuple[int, int, int]:
            # A reader's snapshot holds it up: wait a second for it, not the writer's ten.
            wconn.execute("PRAGMA busy_timeout=1000")
            try:
                return wconn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                wconn.execute("PRAGMA busy_timeout=10000")

        try:
            busy, left, _ = writer.submit(fold).result(timeout=60)
        except Exception as exc:  # still no room, or shutting down: the next round tries again
            log.warning("journal.wal_fold_failed", frames=frames, error=str(exc) or repr(exc))
            return
        self._short_of_room = False
        log.info("journal.wal_folded", frames=frames, busy=bool(busy) or None, left=left)

    async def _disconnect(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            self._stop_checkpoints.set()
            await asyncio.get_running_loop().run_in_executor(None, checkpointer.join, 10)
        for pool, conn in ((self._writer, self._wconn), (self._reader, self._rconn)):
            if pool is not None and conn is not None:  # never refused for room
                await asyncio.get_running_loop().run_in_executor(pool, conn.close)
            if pool is not None:
                pool.shutdown(wait=True)
        self._writer = self._reader = None
        self._wconn = self._rconn = None

    # -- schema ----------------------------------------------------------------------------
    def _version_sync(self) -> int:
        assert self._wconn is not None
        exists = self._wconn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='nabat_meta'"
        ).fetchone()
        if not exists:
            return 0
        row = self._wconn.execute(
            "SELECT value FROM nabat_meta WHERE key='schema_version'"
        ).fetchone()
        return int(row[0]) if row else 0

    async def _schema_version(self) -> int:
        return await self._in(self._writer, self._version_sync)

    def _migrate_sync(self, from_version: int) -> None:
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for version in range(from_version + 1, self.SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO nabat_meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(version),),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # not after a full disk: SQLite rolled back already
                conn.execute("ROLLBACK")
            raise

    async def _migrate(self, from_version: int) -> None:
        await self._in(self._writer, self._migrate_sync, from_version)

    # -- writing ---------------------------------------------------------------------------
    def _write_sync(self, rows: list[tuple[Event, bytes]]) -> tuple[list[int], list[bool]]:
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Which (source, id) are stored already? Chunked to stay under SQLite's
            # host-parameter limit. A join, not ``(source, id) IN (VALUES …)``: SQLite plans
            # the latter as a scan of the whole (source, id) index, the join as one index
            # search per row.
            keys = [(e.source, e.id) for e, _ in rows]
            known: dict[tuple[str, str], int] = {}
            for start in range(0, len(keys), 400):
                chunk = keys[start : start + 400]
                marks = ",".join("(?,?)" for _ in chunk)
                flat = [v for key in chunk for v in key]
                for source, eid, seq in conn.execute(
                    f"SELECT e.source, e.id, e.seq FROM (VALUES {marks}) AS k"
                    " JOIN events AS e ON e.source = k.column1 AND e.id = k.column2",
                    flat,
                ):
                    known[(source, eid)] = seq
            fresh: list[tuple[Any, ...]] = []
            new: list[bool] = []
            for (event, body), key in zip(rows, keys, strict=True):
                if key in known:
                    new.append(False)
                    continue
                known[key] = -1  # a duplicate inside this batch keeps the first
                new.append(True)
                fresh.append(
                    (
                        event.id,
                        event.source,
                        event.type,
                        event.subject,
                        _micros(event.time),
                        event.municipality,
                        event.severity,
                        event.correlationid,
                        body,
                    )
                )
            if fresh:
                row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
                first = (row[0] if row else 0) + 1
                _insert_many(conn, _INSERT_EVENTS, 9, fresh)
                # One writer, AUTOINCREMENT: the new rows took consecutive numbers.
                for offset, values in enumerate(fresh):
                    known[(values[1], values[0])] = first + offset
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # not after a full disk: SQLite rolled back already
                conn.execute("ROLLBACK")
            raise
        return [known[key] for key in keys], new

    async def _write(self, rows: list[tuple[Event, bytes]]) -> tuple[list[int], list[bool]]:
        return await self._in(self._writer, self._write_sync, rows)

    # -- reading ---------------------------------------------------------------------------
    def _select_sync(self, query: EventQuery) -> list[tuple[int, bytes]]:
        assert self._rconn is not None
        where: list[str] = []
        args: list[Any] = []
        if query.after is not None:
            where.append("seq > ?")
            args.append(query.after)
        if query.since is not None:
            where.append("time_us >= ?")
            args.append(_micros(query.since))
        if query.until is not None:
            where.append("time_us < ?")
            args.append(_micros(query.until))
        if query.subject is not None:
            where.append("subject = ?")
            args.append(query.subject)
        if query.correlationid is not None:
            where.append("correlationid = ?")
            args.append(query.correlationid)
        if query.municipalities:
            where.append(f"municipality IN ({','.join('?' for _ in query.municipalities)})")
            args.extend(query.municipalities)
        narrowing = query.type_filters()
        if narrowing is not None:
            exact, prefixes = narrowing
            parts = []
            if exact:
                parts.append(f"type IN ({','.join('?' for _ in exact)})")
                args.extend(exact)
            for prefix in prefixes:
                parts.append("type LIKE ? ESCAPE '\\'")
                args.append(like_prefix(prefix))
            where.append("(" + " OR ".join(parts) + ")")
        sql = "SELECT seq, body FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq LIMIT ?"
        args.append(query.limit + 1)
        return self._rconn.execute(sql, args).fetchall()

    async def _select(self, query: EventQuery) -> list[tuple[int, bytes]]:
        return await self._in(self._reader, self._select_sync, query)

    async def _get(self, source: str, event_id: str) -> tuple[int, bytes] | None:
        def get() -> tuple[int, bytes] | None:
            assert self._rconn is not None
            return self._rconn.execute(
                "SELECT seq, body FROM events WHERE source = ? AND id = ?", (source, event_id)
            ).fetchone()

        return await self._in(self._reader, get)

    async def _last_seq(self) -> int:
        def last() -> int:
            assert self._rconn is not None
            row = self._rconn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name='events'"
            ).fetchone()
            return row[0] if row else 0

        return await self._in(self._reader, last)

    async def _purge(self, before: datetime) -> int:
        def purge() -> int:
            assert self._wconn is not None
            cur = self._wconn.execute("DELETE FROM events WHERE time_us < ?", (_micros(before),))
            return cur.rowcount

        return await self._in(self._writer, purge)

    async def _ids_after(self, after: int, limit: int) -> list[tuple[int, str]]:
        def ids() -> list[tuple[int, str]]:
            assert self._rconn is not None
            return self._rconn.execute(
                "SELECT seq, id FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()

        return await self._in(self._reader, ids)

    async def _at(self, seqs: list[int]) -> list[tuple[int, bytes]]:
        def at() -> list[tuple[int, bytes]]:
            assert self._rconn is not None
            rows: list[tuple[int, bytes]] = []
            for start in range(0, len(seqs), 500):
                chunk = seqs[start : start + 500]
                marks = ",".join("?" for _ in chunk)
                rows += self._rconn.execute(
                    f"SELECT seq, body FROM events WHERE seq IN ({marks})", chunk
                ).fetchall()
            return sorted(rows)

        return await self._in(self._reader, at)

    # -- durable delivery state ------------------------------------------------------------
    async def _w(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(conn, *args)`` in one write transaction on the writer thread."""

        def run() -> Any:
            conn = self._wconn
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
                conn.execute("COMMIT")
                return result
            except BaseException:
                # SQLite has rolled back already after some errors (a full disk): a second
                # ROLLBACK would fail and hide the reason.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return await self._in(self._writer, run)

    async def _r(self, fn: Any, *args: Any) -> Any:
        def run() -> Any:
            assert self._rconn is not None
            return fn(self._rconn, *args)

        return await self._in(self._reader, run)

    @staticmethod
    def _state(row: tuple[Any, ...]) -> SubscriptionState:
        spec, cursor, owner, until, created = row
        return SubscriptionState(
            spec=_spec_decoder.decode(spec),
            cursor=cursor,
            lease_owner=owner,
            lease_until=_dt(until),
            created_at=_dt(created),  # type: ignore[arg-type]
        )

    _STATE_COLUMNS = "spec, cursor, lease_owner, lease_until_us, created_us"

    async def save_subscription(self, spec: SubscriptionSpec) -> SubscriptionState:
        def save(conn: sqlite3.Connection) -> SubscriptionState:
            body = msgspec.json.encode(spec)
            updated = conn.execute(
                "UPDATE subscriptions SET spec = ? WHERE id = ?", (body, spec.id)
            ).rowcount
            if not updated:
                row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
                cursor = 0 if spec.start_at_beginning or not row else row[0]
                conn.execute(
                    "INSERT INTO subscriptions (id, spec, cursor, created_us) VALUES (?,?,?,?)",
                    (spec.id, body, cursor, _now_us()),
                )
            row = conn.execute(
                f"SELECT {self._STATE_COLUMNS} FROM subscriptions WHERE id = ?", (spec.id,)
            ).fetchone()
            return self._state(row)

        return await self._w(save)

    async def subscription(self, subscription_id: str) -> SubscriptionState | None:
        def get(conn: sqlite3.Connection) -> SubscriptionState | None:
            row = conn.execute(
                f"SELECT {self._STATE_COLUMNS} FROM subscriptions WHERE id = ?",
                (subscription_id,),
            ).fetchone()
            return None if row is None else self._state(row)

        return await self._r(get)

    async def subscriptions(self) -> list[SubscriptionState]:
        def all_(conn: sqlite3.Connection) -> list[SubscriptionState]:
            rows = conn.execute(
                f"SELECT {self._STATE_COLUMNS} FROM subscriptions ORDER BY id"
            ).fetchall()
            return [self._state(r) for r in rows]

        return await self._r(all_)

    async def delete_subscription(self, subscription_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return bool(
                conn.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,)).rowcount
            )

        return await self._w(delete)

    async def acquire_lease(self, subscription_id: str, owner: str, ttl: float) -> bool:
        def acquire(conn: sqlite3.Connection) -> bool:
            now = _now_us()
            return bool(
                conn.execute(
                    "UPDATE subscriptions SET lease_owner = ?, lease_until_us = ? WHERE id = ?"
                    " AND (lease_owner IS NULL OR lease_owner = ? OR lease_until_us < ?)",
                    (owner, now + int(ttl * 1_000_000), subscription_id, owner, now),
                ).rowcount
            )

        return await self._w(acquire)

    async def release_lease(self, subscription_id: str, owner: str) -> None:
        def release(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE subscriptions SET lease_owner = NULL, lease_until_us = NULL"
                " WHERE id = ? AND lease_owner = ?",
                (subscription_id, owner),
            )

        await self._w(release)

    async def advance_cursor(self, subscription_id: str, owner: str, seq: int) -> bool:
        def advance(conn: sqlite3.Connection) -> bool:
            return bool(
                conn.execute(
                    "UPDATE subscriptions SET cursor = MAX(cursor, ?) WHERE id = ?"
                    " AND lease_owner = ? AND lease_until_us >= ?",
                    (seq, subscription_id, owner, _now_us()),
                ).rowcount
            )

        return await self._w(advance)

    @staticmethod
    def _issue(row: tuple[Any, ...]) -> DeliveryIssue:
        sub, seq, event_id, state, attempts, first, nxt, error = row
        return DeliveryIssue(
            subscription=sub,
            seq=seq,
            event_id=event_id,
            state=IssueState(state),
            attempts=attempts,
            first_failed_at=_dt(first),  # type: ignore[arg-type]
            next_attempt_at=_dt(nxt),
            last_error=error,
        )

    _ISSUE_COLUMNS = (
        "subscription, seq, event_id, state, attempts, first_failed_us, next_attempt_us, last_error"
    )

    async def record_failure(
        self,
        subscription_id: str,
        seq: int,
        event_id: str,
        error: str,
        next_attempt_at: datetime | None,
        dead: bool,
    ) -> DeliveryIssue:
        def record(conn: sqlite3.Connection) -> DeliveryIssue:
            state = IssueState.DEAD if dead else IssueState.RETRY
            nxt = None if dead or next_attempt_at is None else _micros(next_attempt_at)
            conn.execute(
                "INSERT INTO delivery_issues (subscription, seq, event_id, state, attempts,"
                " first_failed_us, next_attempt_us, last_error) VALUES (?,?,?,?,1,?,?,?)"
                " ON CONFLICT (subscription, seq) DO UPDATE SET attempts = attempts + 1,"
                " state = excluded.state, next_attempt_us = excluded.next_attempt_us,"
                " last_error = excluded.last_error",
                (subscription_id, seq, event_id, state.value, _now_us(), nxt, error[:2000]),
            )
            row = conn.execute(
                f"SELECT {self._ISSUE_COLUMNS} FROM delivery_issues"
                " WHERE subscription = ? AND seq = ?",
                (subscription_id, seq),
            ).fetchone()
            return self._issue(row)

        return await self._w(record)

    async def clear_failure(self, subscription_id: str, seq: int) -> None:
        def clear(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM delivery_issues WHERE subscription = ? AND seq = ?",
                (subscription_id, seq),
            )

        await self._w(clear)

    async def issues(
        self,
        subscription_id: str | None = None,
        state: IssueState | None = None,
        *,
        due_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[DeliveryIssue]:
        def list_(conn: sqlite3.Connection) -> list[DeliveryIssue]:
            where, args = [], []
            if subscription_id is not None:
                where.append("subscription = ?")
                args.append(subscription_id)
            if state is not None:
                where.append("state = ?")
                args.append(state.value)
            if due_before is not None:
                where.append("state = 'retry' AND next_attempt_us <= ?")
                args.append(int(due_before.timestamp() * 1e6))
            sql = f"SELECT {self._ISSUE_COLUMNS} FROM delivery_issues"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY subscription, seq LIMIT ?"
            args.append(limit)
            return [self._issue(r) for r in conn.execute(sql, args).fetchall()]

        return await self._r(list_)

    def _dead_filter(self, subscription_id: str, seqs: Any) -> tuple[str, list[Any]]:
        sql = "subscription = ? AND state = 'dead'"
        args: list[Any] = [subscription_id]
        if seqs is not None:
            sql += f" AND seq IN ({','.join('?' for _ in seqs)})"
            args += list(seqs)
        return sql, args

    async def revive_dead(self, subscription_id: str, seqs: Any = None) -> int:
        where, args = self._dead_filter(subscription_id, seqs)

        def revive(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE delivery_issues SET state = 'retry', attempts = 0,"
                f" first_failed_us = ?, next_attempt_us = ? WHERE {where}",
                [_now_us(), _now_us(), *args],
            ).rowcount

        return await self._w(revive)

    async def discard_dead(self, subscription_id: str, seqs: Any = None) -> int:
        where, args = self._dead_filter(subscription_id, seqs)

        def discard(conn: sqlite3.Connection) -> int:
            return conn.execute(f"DELETE FROM delivery_issues WHERE {where}", args).rowcount

        return await self._w(discard)

    # -- records ---------------------------------------------------------------------------
    async def _put_record(
        self,
        collection: str,
        key: str,
        body: bytes,
        expires: datetime | None,
        mode: PutMode,
    ) -> bool:
        until = None if expires is None else _exact_us(expires)
        sql = _PUT_BY_MODE[mode]

        def put(conn: sqlite3.Connection) -> bool:
            # One statement under the write lock (BEGIN IMMEDIATE): check and write are atomic.
            return conn.execute(sql, (collection, key, body, _now_us(), until)).rowcount > 0

        return await self._w(put)

    async def _swap_record(
        self,
        collection: str,
        key: str,
        expected: bytes,
        body: bytes,
        expires: datetime | EllipsisType | None,
    ) -> bool:
        keep = expires is ...
        until = None if keep or expires is None else _micros(expires)  # type: ignore[arg-type]

        def swap(conn: sqlite3.Connection) -> bool:
            now = _now_us()
            return (
                conn.execute(
                    "UPDATE records SET body = ?, updated_us = ?,"
                    " expires_us = CASE WHEN ? THEN expires_us ELSE ? END"
                    f" WHERE collection = ? AND key = ? AND body = ? AND {_LIVE}",
                    (body, now, keep, until, collection, key, expected, now),
                ).rowcount
                > 0
            )

        return await self._w(swap)

    async def _take_allowance(self, key: str, interval: float, window: float) -> float | None:
        def take(conn: sqlite3.Connection) -> float | None:
            now_us = _now_us()
            now = now_us / 1_000_000
            row = conn.execute(
                f"SELECT body FROM records WHERE collection = ? AND key = ? AND {_LIVE}",
                (RATE_LIMITS, key, now_us),
            ).fetchone()
            due = max(float(row[0]) if row else 0.0, now) + interval
            if due - now > window:
                return due - now - window
            conn.execute(_UPSERT, (RATE_LIMITS, key, repr(due).encode(), now_us, int(due * 1e6)))
            return None

        return await self._w(take)

    async def _put_records(
        self, collection: str, rows: list[tuple[str, bytes, datetime | None]]
    ) -> None:
        exact = [(key, body, None if exp is None else _exact_us(exp)) for key, body, exp in rows]

        def put(conn: sqlite3.Connection) -> None:
            now = _now_us()
            _insert_many(
                conn,
                _UPSERT_MANY,
                6,
                [(collection, key, body, now, now, until) for key, body, until in exact],
            )

        await self._w(put)

    async def get_record(self, collection: str, key: str) -> Record | None:
        def get(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records"
                f" WHERE collection = ? AND key = ? AND {_LIVE}",
                (collection, key, _now_us()),
            ).fetchone()
            return None if row is None else _record(row)

        return await self._r(get)

    async def _records(
        self,
        collection: str,
        after: str | None,
        before: str | None,
        prefix: str | None,
        limit: int,
        descending: bool,
    ) -> list[Record]:
        where = ["collection = ?", _LIVE]
        args: list[Any] = [collection, _now_us()]
        if after is not None:
            where.append("key > ?")
            args.append(after)
        if before is not None:
            where.append("key < ?")
            args.append(before)
        if prefix:
            where.append("key >= ?")
            args.append(prefix)
            end = _prefix_end(prefix)
            if end is not None:
                where.append("key < ?")
                args.append(end)
        sql = (
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE {' AND '.join(where)}"
            f" ORDER BY key {'DESC' if descending else 'ASC'} LIMIT ?"
        )
        args.append(limit)

        def list_(conn: sqlite3.Connection) -> list[Record]:
            return [_record(row) for row in conn.execute(sql, args).fetchall()]

        return await self._r(list_)

    async def delete_record(self, collection: str, key: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            # Two statements in one write transaction (no RETURNING: SQLite 3.40 gets it
            # wrong on some tables, and older releases lack it).
            live = conn.execute(
                f"SELECT 1 FROM records WHERE collection = ? AND key = ? AND {_LIVE}",
                (collection, key, _now_us()),
            ).fetchone()
            conn.execute("DELETE FROM records WHERE collection = ? AND key = ?", (collection, key))
            return live is not None

        return await self._w(delete)

    async def _purge_records(self, now: datetime | None) -> int:

        def purge(conn: sqlite3.Connection) -> int:
            at = _now_us() if now is None else _exact_us(now)
            return conn.execute("DELETE FROM records WHERE expires_us <= ?", (at,)).rowcount

        return await self._w(purge)
