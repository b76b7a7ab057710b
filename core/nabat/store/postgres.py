"""The production journal: PostgreSQL through asyncpg, shareable by several hub processes.

All tables live in one schema (``nabat`` unless told otherwise), created and migrated by the
hub. Commits are durable before they are acknowledged: the journal never turns
``synchronous_commit`` off, and turns it back on for its own transactions if the server's
default is ``off``.

**How ``seq`` stays a safe cursor with several writers.** A reader that has seen ``seq <= n``
must never later find a newly committed row with ``seq <= n``. A PostgreSQL ``SEQUENCE`` does
not give that: numbers are handed out at insert time, but transactions commit in any order, so
a reader can see 11 committed while 10 is still in flight. Here every batch instead runs::

    BEGIN; SELECT pg_advisory_xact_lock(<key of this schema>);
    UPDATE nabat_sequence SET last_seq = last_seq + n RETURNING last_seq;  -- take n numbers
    COPY events FROM STDIN;                        -- the rows, numbered by the client
    COMMIT;

The advisory lock serialises the writing transactions of every process on this schema, and
PostgreSQL makes a transaction visible before it releases its locks, so batches become visible
in the order of their numbers. Numbers come from a counter row (``nabat_sequence``, like
SQLite's ``sqlite_sequence``) rather than from ``max(seq)``, so they are never reused after
:meth:`~nabat.store.Journal.purge` empties the table's tail. Serialising costs little: the
journal group-commits, so one lock round covers a whole batch (up to 2,000 events).

The same can be done in one statement, its own transaction (``_WRITE_SMALL``: lock, take
numbers, INSERT from arrays): one round trip instead of five. It is used for batches under
``_ONE_STATEMENT_MAX`` rows (a lone append commits in half the time) and whenever another
batch of this process is being written: the journal keeps two batches in flight
(``_commits_in_flight``), the second waiting at the server for the write lock, and its single
statement then runs the moment the first commits, without waiting for this process to answer
round trips. Alone, a large batch goes by COPY, whose cost per row is lower. The statement
takes the write lock before it writes (the INSERT reads the counter's new value, which the
UPDATE produces only after joining the lock's row) and holds it to its commit. READ COMMITTED
updates the newest committed version of the counter row, so the statement's snapshot (taken
before it waited for the lock) cannot make it reuse a number.

**Idempotency.** In the common case no row of a batch is stored yet. When one is, the
``(source, id)`` unique constraint aborts the COPY (or the single statement); the batch is
rolled back and redone as one statement that looks every row up and inserts only the new ones
(``_WRITE``), and later batches start that way until one meets no duplicate (a producer
replaying its backlog). The write lock is taken in a statement of its own because in READ
COMMITTED each statement reads a snapshot taken when it starts: the lookup must start after
the previous holder has committed.

**Durable delivery state** (schema version 2, :mod:`nabat.store.delivery`). Every operation
is one statement, atomic on its own. Leases and fenced cursor moves compare against the
*database's* clock (``clock_timestamp()``), never a hub process's, so processes whose clocks
disagree still agree on who holds a lease. A lease is taken by a single conditional
``UPDATE``: when two processes race, the row lock makes the second re-check the condition
against the first one's committed lease, and it fails.

**Records** (schema version 3): one statement each, instants from the database's clock
(``now()``, the statement's start). ``put_record(only_new=True)`` is a single
``INSERT … ON CONFLICT DO UPDATE … WHERE <the stored row has expired>``: of two concurrent puts
of one key the second waits on the first's row, re-checks the condition against the committed
row and writes nothing. ``collection`` and ``key`` use the "C" collation: keys sort byte-wise,
as in SQLite, and the primary key's index serves ``LIKE 'prefix%'``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from types import EllipsisType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec

from ..events import Event, EventTypes
from ..masking import MASK, is_secret_key, mask_url
from .base import (
    EventQuery,
    Journal,
    JournalError,
    PutMode,
    Record,
    SchemaTooNew,
    like_prefix,
    log,
)
from .delivery import DeliveryIssue, IssueState, SubscriptionSpec, SubscriptionState

__all__ = ["PostgresJournal"]


# Errors a database operation can raise: server errors, client/protocol errors (connection
# closed…), network errors and timeouts.
def _reads(action: str) -> bool:
    """Whether a statement only reads (its success does not show a full disk has room)."""
    return action.startswith(("reading", "listing"))


_DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

# ``{s}`` is the quoted schema. ``id``, ``source`` and ``type`` are machine identifiers: the
# "C" collation compares them byte-wise (fast unique checks) and lets the (type, seq) index
# serve ``LIKE 'prefix%'``.
_MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE IF NOT EXISTS {s}.nabat_meta (key text PRIMARY KEY, value text NOT NULL)",
        "CREATE TABLE {s}.nabat_sequence (name text PRIMARY KEY, last_seq bigint NOT NULL)",
        "INSERT INTO {s}.nabat_sequence (name, last_seq) VALUES ('events', 0)",
        """CREATE TABLE {s}.events (
            seq bigint PRIMARY KEY,
            id text COLLATE "C" NOT NULL,
            source text COLLATE "C" NOT NULL,
            type text COLLATE "C" NOT NULL,
            subject text,
            time timestamptz NOT NULL,
            municipality text,
            severity text,
            correlationid text,
            body bytea NOT NULL,
            UNIQUE (source, id)
        )""",
        "CREATE INDEX events_time ON {s}.events (time)",
        "CREATE INDEX events_type ON {s}.events (type, seq)",
        "CREATE INDEX events_municipality ON {s}.events (municipality, seq)",
        "CREATE INDEX events_correlation ON {s}.events (correlationid)"
        " WHERE correlationid IS NOT NULL",
    ],
    2: [
        # ``spec`` is the JSON of a SubscriptionSpec (jsonb: readable and queryable by hand).
        """CREATE TABLE {s}.subscriptions (
            id text COLLATE "C" PRIMARY KEY,
            spec jsonb NOT NULL,
            cursor bigint NOT NULL,
            lease_owner text,
            lease_until timestamptz,
            created_at timestamptz NOT NULL
        )""",
        """CREATE TABLE {s}.delivery_issues (
            subscription text COLLATE "C" NOT NULL
                REFERENCES {s}.subscriptions (id) ON DELETE CASCADE,
            seq bigint NOT NULL,
            event_id text NOT NULL,
            state text NOT NULL CHECK (state IN ('retry', 'dead')),
            attempts integer NOT NULL,
            first_failed_at timestamptz NOT NULL,
            next_attempt_at timestamptz,
            last_error text NOT NULL,
            PRIMARY KEY (subscription, seq)
        )""",
        "CREATE INDEX delivery_issues_due"
        " ON {s}.delivery_issues (subscription, state, next_attempt_at)",
    ],
    3: [
        """CREATE TABLE {s}.records (
            collection text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            body bytea NOT NULL,
            created timestamptz NOT NULL,
            updated timestamptz NOT NULL,
            expires timestamptz,
            PRIMARY KEY (collection, key)
        )""",
        "CREATE INDEX records_expires ON {s}.records (expires) WHERE expires IS NOT NULL",
    ],
}

_MAX_ERROR = 2000  # characters of ``last_error`` kept
_spec_decoder = msgspec.json.Decoder(SubscriptionSpec)
_STATE_COLUMNS = "spec::text, cursor, lease_owner, lease_until, created_at"
_ISSUE_COLUMNS = (
    "subscription, seq, event_id, state, attempts, first_failed_at, next_attempt_at, last_error"
)
_RECORD_COLUMNS = "collection, key, body, created, updated, expires"
_LIVE = "(expires IS NULL OR expires > now())"
# GCRA in one statement: the next allowed time (seconds since the epoch, the body as text)
# moves on by $2 from now at the latest, unless that lies more than $3 ahead: then no row.
_DUE = (
    "GREATEST(CASE WHEN r.expires <= now() THEN 0"
    " ELSE convert_from(r.body, 'UTF8')::float8 END + $2,"
    " convert_from(EXCLUDED.body, 'UTF8')::float8)"
)
_TAKE = (
    "INSERT INTO {s}.records AS r (collection, key, body, created, updated, expires)"
    " SELECT 'rate_limits', $1, convert_to(n.due::text, 'UTF8'), now(), now(), to_timestamp(n.due)"
    " FROM (SELECT extract(epoch FROM now())::float8 + $2 AS due) AS n"
    " ON CONFLICT (collection, key) DO UPDATE SET"
    f" body = convert_to(({_DUE})::text, 'UTF8'), updated = now(), expires = to_timestamp({_DUE})"
    f" WHERE {_DUE} - extract(epoch FROM now())::float8 <= $3"
    " RETURNING 1"
)
_OVER = (
    "SELECT convert_from(body, 'UTF8')::float8 - extract(epoch FROM now())::float8"
    " FROM {s}.records WHERE collection = 'rate_limits' AND key = $1"
)
# Insert, or replace body and expiry; ``created`` restarts when the stored row had expired
# (it was absent). ``_PUT_NEW`` writes only over an expired row.
_UPSERT_SET = (
    " ON CONFLICT (collection, key) DO UPDATE SET body = EXCLUDED.body,"
    " updated = EXCLUDED.updated, expires = EXCLUDED.expires,"
    " created = CASE WHEN r.expires <= EXCLUDED.created THEN EXCLUDED.created ELSE r.created END"
)
_PUT = (
    "INSERT INTO {s}.records AS r (collection, key, body, created, updated, expires)"
    " VALUES ($1, $2, $3, now(), now(), $4)" + _UPSERT_SET
)
_PUT_NEW = _PUT + " WHERE r.expires <= now()"
_PUT_CLAIM = _PUT_NEW + " OR r.body = EXCLUDED.body"  # free, or already this holder's
# Keys unique and sorted (client-side): one statement may not update a row twice, and a fixed
# order keeps concurrent batches from deadlocking.
_PUT_MANY = (
    "INSERT INTO {s}.records AS r (collection, key, body, created, updated, expires)"
    " SELECT $1, t.key, t.body, now(), now(), t.expires"
    " FROM unnest($2::text[], $3::bytea[], $4::timestamptz[]) AS t(key, body, expires)"
    + _UPSERT_SET
)

# One statement per batch, run while holding the schema's write lock. Input rows are unique by
# (source, id) already (the client keeps the first of in-batch duplicates). Returns
# (ord, seq, existed) for every input row: the stored seq for rows already present (existed),
# a new one for the others.
# Data-modifying CTEs run exactly once whether or not the final SELECT reads them.
_WRITE = """
WITH input AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
        $6::text[], $7::text[], $8::text[], $9::bytea[]
    ) WITH ORDINALITY AS t(id, source, type, subject, time, municipality, severity,
                           correlationid, body, ord)
),
looked AS (
    -- A correlated lookup per input row: always the (source, id) index, whatever the
    -- planner's statistics say about the table's size (a join may pick a full scan).
    SELECT i.*, (SELECT e.seq FROM {s}.events e WHERE e.source = i.source AND e.id = i.id)
        AS old_seq
    FROM input i
),
fresh AS (
    SELECT looked.*, row_number() OVER (ORDER BY ord) AS n FROM looked WHERE old_seq IS NULL
),
bump AS (
    UPDATE {s}.nabat_sequence SET last_seq = last_seq + (SELECT count(*) FROM fresh)
    WHERE name = 'events'
    RETURNING last_seq - (SELECT count(*) FROM fresh) AS base
),
inserted AS (
    INSERT INTO {s}.events (seq, id, source, type, subject, time, municipality, severity,
                            correlationid, body)
    SELECT bump.base + fresh.n, fresh.id, fresh.source, fresh.type, fresh.subject, fresh.time,
           fresh.municipality, fresh.severity, fresh.correlationid, fresh.body
    FROM fresh CROSS JOIN bump
)
SELECT ord, old_seq, true FROM looked WHERE old_seq IS NOT NULL
UNION ALL
SELECT fresh.ord, bump.base + fresh.n, false FROM fresh CROSS JOIN bump
"""

# A small batch of new rows in one statement, run in its own transaction (see the module
# docstring). ``lock`` is evaluated before ``bump`` can produce its row, and ``inserted`` reads
# ``bump``: nothing is written before the write lock is held. Returns the base of the numbers
# taken (the rows get base + 1 … base + n, in order).
_WRITE_SMALL = """
WITH lock AS (SELECT pg_advisory_xact_lock({lock}) AS held),
bump AS (
    UPDATE {s}.nabat_sequence SET last_seq = last_seq + $10 FROM lock
    WHERE name = 'events'
    RETURNING last_seq - $10 AS base
),
inserted AS (
    INSERT INTO {s}.events (seq, id, source, type, subject, time, municipality, severity,
                            correlationid, body)
    SELECT bump.base + t.ord, t.id, t.source, t.type, t.subject, t.time, t.municipality,
           t.severity, t.correlationid, t.body
    FROM bump CROSS JOIN unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
        $6::text[], $7::text[], $8::text[], $9::bytea[]
    ) WITH ORDINALITY AS t(id, source, type, subject, time, municipality, severity,
                           correlationid, body, ord)
)
SELECT base FROM bump
"""
# A batch written alone goes by ``_WRITE_SMALL`` (one round trip) below this many rows and by
# COPY in a transaction (five round trips, lower cost per row) from it on: the two were even at
# about 100 rows on the bench/journal.py machine. A batch written while another one is in
# flight always goes by ``_WRITE_SMALL`` (measured 20-30 % faster there at 100-1,000 rows).
_ONE_STATEMENT_MAX = 100

_BUMP = (
    "UPDATE {s}.nabat_sequence SET last_seq = last_seq + $1 WHERE name = 'events'"
    " RETURNING last_seq"
)
_COPY_COLUMNS = [
    "seq",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "municipality",
    "severity",
    "correlationid",
    "body",
]


_AUTHORITY_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:\s]*:)[^/@\s]*@", re.IGNORECASE)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _aware(value: datetime) -> datetime:
    """A naive datetime means local time, as for the SQLite journal (``datetime.timestamp``)."""
    return value if value.tzinfo is not None else value.astimezone()


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL characters (error messages quoting binary bodies)."""
    return value.replace("\x00", "\ufffd")


def _rowcount(status: str) -> int:
    """The row count of a command status (``UPDATE 1``, ``DELETE 3``)."""
    return int(status.split()[-1])


def _state(row: Any) -> SubscriptionState:
    spec, cursor, owner, until, created = row
    return SubscriptionState(
        spec=_spec_decoder.decode(spec),
        cursor=cursor,
        lease_owner=owner,
        lease_until=until,  # asyncpg returns timestamptz as aware UTC datetimes
        created_at=created,
    )


def _issue(row: Any) -> DeliveryIssue:
    sub, seq, event_id, state, attempts, first, nxt, error = row
    return DeliveryIssue(
        subscription=sub,
        seq=seq,
        event_id=event_id,
        state=IssueState(state),
        attempts=attempts,
        first_failed_at=first,
        next_attempt_at=nxt,
        last_error=error,
    )


def _record(row: Any) -> Record:
    collection, key, body, created, updated, expires = row
    return Record(
        collection=collection,
        key=key,
        body=body,
        created=created,
        updated=updated,
        expires=expires,
    )


def _lock_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``purpose`` on ``schema``."""
    digest = hashlib.blake2b(f"nabat.journal.{purpose}:{schema}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _secret_param(key: str) -> bool:
    return is_secret_key(key) or "password" in key.lower()  # also libpq's ``sslpassword``


def describe_dsn(dsn: str) -> str:
    """The DSN without secrets: the password in the authority and secret-looking query
    parameters (``?password=…``) become ``***``."""
    try:
        try:
            masked = mask_url(dsn)
        except ValueError:  # several hosts (``h1:5432,h2:5432``) are no URL to urllib
            masked = _AUTHORITY_PASSWORD.sub(rf"\g<1>{MASK}@", dsn)
        parts = urlsplit(masked)
        query = urlencode(
            [(k, MASK if _secret_param(k) else v) for k, v in parse_qsl(parts.query)], safe="*/"
        )
        return urlunsplit(parts._replace(query=query))
    except ValueError:
        return "<unparsable DSN>"


def _secrets_of(dsn: str) -> list[str]:
    try:
        parts = urlsplit(dsn)
        found = [parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query) if _secret_param(k)]
    except ValueError:
        return []
    return [s for s in found if s]


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset: the journal sets no session state (no SET, LISTEN, cursors or session
    locks), so a released connection needs no reset query — saving a round trip per use.
    asyncpg still rolls back an open transaction before calling this."""


class PostgresJournal(Journal):
    kind = "postgres"
    shared = True
    # The write lock queues a second batch at the server while one commits (see
    # Journal._flush_loop and the module docstring): PostgreSQL writes one batch while this
    # process answers the producers of the other. 100 producers appending one event each:
    # about +15-25 % events/s (bench/journal.py).
    _commits_in_flight = 2
    _split_from = 64

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "nabat",
        types: EventTypes | None = None,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(types=types)
        if not schema or "\x00" in schema or len(schema.encode()) > 63:
            raise ValueError(f"invalid PostgreSQL schema name {schema!r} (1-63 bytes, no NUL)")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._dsn = dsn  # holds the password: never log it, use self.where
        self.schema = schema
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.where = f"{describe_dsn(dsn)}, schema {quote_ident(schema)}"
        self.health.where = self.where
        self._secrets = _secrets_of(dsn)
        self._pool: asyncpg.Pool | None = None
        self._lax: asyncpg.Pool | None = None
        self._lax_lock = asyncio.Lock()
        s = quote_ident(schema)
        self._s = s
        self._migrate_lock = _lock_key("migrate", schema)
        self._write_lock = _lock_key("write", schema)
        self._begin_write = f"BEGIN; SELECT pg_advisory_xact_lock({self._write_lock})"
        self._write_sql = _WRITE.format(s=s)
        self._bump_sql = _BUMP.format(s=s)
        self._write_small_sql = _WRITE_SMALL.format(s=s, lock=self._write_lock)
        self._put_sql_by_mode: dict[PutMode, str] = {
            "any": _PUT.format(s=s),
            "new": _PUT_NEW.format(s=s),
            "claim": _PUT_CLAIM.format(s=s),
        }
        self._put_many_sql = _PUT_MANY.format(s=s)
        # After a batch met rows stored already (a producer replaying), look rows up first
        # until a batch has none; otherwise try the plain COPY first.
        self._expect_duplicates = False
        self._writing = 0  # batches being written now (see _write_fast)

    # -- errors ----------------------------------------------------------------------------
    def _error(self, action: str, exc: BaseException) -> JournalError:
        reason = str(exc) or "no detail"
        for secret in self._secrets:
            reason = reason.replace(secret, MASK)
        error = JournalError(
            f"PostgreSQL: {action} failed ({self.where}): {type(exc).__name__}: {reason}"
        )
        error.disk_full = getattr(exc, "sqlstate", None) == "53100"
        if self.is_outage(exc):
            error.outage = True
            self.health.failed(str(error), write=not _reads(action))
        return error

    def is_outage(self, exc: BaseException) -> bool:
        if isinstance(exc, asyncpg.PostgresError):
            # Connection exceptions, operator intervention (shutdown, crash recovery),
            # insufficient resources (disk full, too many connections), system errors.
            return (getattr(exc, "sqlstate", "") or "")[:2] in ("08", "57", "53", "58", "XX")
        return True  # refused connections, timeouts, a connection lost mid-statement

    def dsn(self) -> str:
        """The connection URL with its password, for PostgreSQL's own tools (``nabat db
        backup``): never for a log."""
        return self._dsn

    def _pool_or_fail(self) -> asyncpg.Pool:
        if self._pool is None:
            raise JournalError("the journal is not open")
        return self._pool

    async def _run(self, action: str, method: str, sql: str, *args: Any) -> Any:
        pool = self._pool_or_fail()
        try:
            result = await getattr(pool, method)(sql, *args)
        except _DB_ERRORS as exc:
            raise self._error(action, exc) from exc
        self.health.succeeded(write=not _reads(action))
        return result

    # -- lifecycle -------------------------------------------------------------------------
    async def _connect(self) -> None:
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self.pool_size,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                reset=_keep_session,
                server_settings={"application_name": "nabat"},
            )
        except _DB_ERRORS as exc:
            raise self._error("connecting", exc) from exc
        except ValueError as exc:  # asyncpg's verdict on a malformed DSN
            raise self._error("parsing the DSN", exc) from None
        self._pool = pool
        durability = await self._run("reading settings", "fetchval", "SHOW synchronous_commit")
        if durability == "off":
            # Acknowledged means durable: override the server's default for our own commits.
            log.warning("journal.synchronous_commit_off", kind=self.kind, where=self.where)
            self._begin_write = (
                "BEGIN; SET LOCAL synchronous_commit = on; "
                f"SELECT pg_advisory_xact_lock({self._write_lock})"
            )

    async def _disconnect(self) -> None:
        for pool in (self._pool, self._lax):
            if pool is None:
                continue
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (TimeoutError, *_DB_ERRORS):
                pool.terminate()
        self._pool = self._lax = None

    # -- schema ----------------------------------------------------------------------------
    async def _version_on(self, conn: asyncpg.Connection) -> int:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{self._s}.nabat_meta")
        if not exists:
            return 0
        value = await conn.fetchval(
            f"SELECT value FROM {self._s}.nabat_meta WHERE key = 'schema_version'"
        )
        return int(value) if value is not None else 0

    async def _schema_version(self) -> int:
        pool = self._pool_or_fail()
        try:
            async with pool.acquire() as conn:
                return await self._version_on(conn)
        except _DB_ERRORS as exc:
            raise self._error("reading the schema version", exc) from exc

    async def _migrate(self, from_version: int) -> None:
        pool = self._pool_or_fail()
        try:
            async with pool.acquire() as conn, conn.transaction():
                # Another hub process may be migrating the same schema right now: take turns,
                # then look again at what the winner left.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", self._migrate_lock)
                has_schema = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", self.schema
                )
                if not has_schema:
                    await conn.execute(f"CREATE SCHEMA {self._s}")
                found = await self._version_on(conn)
                if found > self.SCHEMA_VERSION:
                    raise SchemaTooNew(found, self.SCHEMA_VERSION)
                for version in range(found + 1, self.SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[version]:
                        await conn.execute(statement.format(s=self._s))
                    await conn.execute(
                        f"INSERT INTO {self._s}.nabat_meta (key, value)"
                        " VALUES ('schema_version', $1)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        str(version),
                    )
        except _DB_ERRORS as exc:
            raise self._error(f"migrating the schema from version {from_version}", exc) from exc

    # -- writing ---------------------------------------------------------------------------
    async def _write(self, rows: list[tuple[Event, bytes]]) -> tuple[list[int], list[bool]]:
        keys = [(e.source, e.id) for e, _ in rows]
        first: dict[tuple[str, str], int] = {}  # (source, id) -> index among unique rows
        unique: list[tuple[Any, ...]] = []
        repeats: list[int] = []  # positions of rows repeating an earlier row of this batch
        for position, ((event, body), key) in enumerate(zip(rows, keys, strict=True)):
            if key in first:
                repeats.append(position)  # a duplicate inside this batch keeps the first
                continue
            first[key] = len(unique)
            unique.append(
                (
                    event.id,
                    event.source,
                    event.type,
                    event.subject,
                    event.time,  # always timezone-aware (Event checks)
                    event.municipality,
                    None if event.severity is None else str(event.severity),
                    event.correlationid,
                    body,
                )
            )
        pool = self._pool_or_fail()
        self._writing += 1
        try:
            async with pool.acquire() as conn:
                seqs = None
                if not self._expect_duplicates:
                    seqs = await self._write_fast(conn, unique)
                if seqs is None:
                    seqs, new = await self._write_checked(conn, unique)
                    self._expect_duplicates = not all(new)
                else:
                    new = [True] * len(unique)
        except _DB_ERRORS as exc:
            raise self._error(f"appending {len(rows)} events", exc) from exc
        finally:
            self._writing -= 1
        self.health.succeeded()
        if not repeats:  # the common case: the unique rows are the rows
            return seqs, new
        new = [new[first[key]] for key in keys]
        for position in repeats:
            new[position] = False
        return [seqs[first[key]] for key in keys], new

    async def _in_write_transaction(self, conn: asyncpg.Connection, work: Any) -> Any:
        """Run ``work(conn)`` inside BEGIN + the schema's write lock … COMMIT."""
        try:
            await conn.execute(self._begin_write)
            result = await work(conn)
            # If COMMIT fails the outcome is unknown; the producer may retry safely because
            # appends are idempotent.
            await conn.execute("COMMIT")
        except BaseException:
            if not conn.is_closed():
                try:
                    await conn.execute("ROLLBACK")
                except BaseException:
                    conn.terminate()
            raise
        return result

    async def _write_fast(
        self, conn: asyncpg.Connection, unique: list[tuple[Any, ...]]
    ) -> list[int] | None:
        """The common case, no row stored yet: take numbers and insert the rows, by one
        statement (small batch, or another batch in flight) or by COPY (a large batch
        alone). None when some (source, id) was stored already: the unique constraint
        aborted the transaction, nothing was written."""
        # The one-statement form commits with the session's settings: when the journal has
        # to turn synchronous_commit back on (``SET LOCAL`` in ``_begin_write``), use COPY.
        one_statement = len(unique) < _ONE_STATEMENT_MAX or self._writing > 1
        if one_statement and "synchronous_commit" not in self._begin_write:
            columns = [list(column) for column in zip(*unique, strict=True)]
            try:
                base = await conn.fetchval(self._write_small_sql, *columns, len(unique))
            except asyncpg.UniqueViolationError:
                return None
            return list(range(base + 1, base + len(unique) + 1))

        async def work(conn: asyncpg.Connection) -> list[int]:
            last = await conn.fetchval(self._bump_sql, len(unique))
            base = last - len(unique)
            await conn.copy_records_to_table(
                "events",
                schema_name=self.schema,
                columns=_COPY_COLUMNS,
                records=[(base + n, *row) for n, row in enumerate(unique, 1)],
            )
            return list(range(base + 1, last + 1))

        try:
            return await self._in_write_transaction(conn, work)
        except asyncpg.UniqueViolationError:
            return None

    async def _write_checked(
        self, conn: asyncpg.Connection, unique: list[tuple[Any, ...]]
    ) -> tuple[list[int], list[bool]]:
        """Look every (source, id) up and insert only the new ones, in one statement; return
        the seqs and whether each row was stored now (False: it was there already)."""
        columns = [list(column) for column in zip(*unique, strict=True)]
        result = await self._in_write_transaction(
            conn, lambda conn: conn.fetch(self._write_sql, *columns)
        )
        seqs = [0] * len(unique)
        new = [True] * len(unique)
        for ord_, seq, existed in result:
            seqs[ord_ - 1] = seq
            new[ord_ - 1] = not existed
        return seqs, new

    # -- reading ---------------------------------------------------------------------------
    async def _select(self, query: EventQuery) -> list[tuple[int, bytes]]:
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if query.after is not None:
            where.append(f"seq > {arg(query.after)}")
        if query.since is not None:
            where.append(f"time >= {arg(_aware(query.since))}")
        if query.until is not None:
            where.append(f"time < {arg(_aware(query.until))}")
        if query.subject is not None:
            where.append(f"subject = {arg(query.subject)}")
        if query.correlationid is not None:
            where.append(f"correlationid = {arg(query.correlationid)}")
        if query.municipalities:
            where.append(f"municipality = ANY({arg(list(query.municipalities))}::text[])")
        narrowing = query.type_filters()
        if narrowing is not None:
            exact, prefixes = narrowing
            parts = []
            if exact:
                parts.append(f"type = ANY({arg(exact)}::text[])")
            for prefix in prefixes:
                parts.append(f"type LIKE {arg(like_prefix(prefix))} ESCAPE '\\'")
            where.append("(" + " OR ".join(parts) + ")")
        sql = f"SELECT seq, body FROM {self._s}.events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY seq LIMIT {arg(query.limit + 1)}"
        rows = await self._run("reading events", "fetch", sql, *args)
        return [(seq, body) for seq, body in rows]

    async def _get(self, source: str, event_id: str) -> tuple[int, bytes] | None:
        row = await self._run(
            "reading an event",
            "fetchrow",
            f"SELECT seq, body FROM {self._s}.events WHERE source = $1 AND id = $2",
            source,
            event_id,
        )
        return None if row is None else (row[0], row[1])

    async def _last_seq(self) -> int:
        value = await self._run(
            "reading the last sequence number",
            "fetchval",
            f"SELECT last_seq FROM {self._s}.nabat_sequence WHERE name = 'events'",
        )
        return value or 0

    async def _purge(self, before: datetime) -> int:
        status = await self._run(
            "purging old events",
            "execute",
            f"DELETE FROM {self._s}.events WHERE time < $1",
            _aware(before),
        )
        return _rowcount(status)

    async def _ids_after(self, after: int, limit: int) -> list[tuple[int, str]]:
        rows = await self._run(
            "reading event ids",
            "fetch",
            f"SELECT seq, id FROM {self._s}.events WHERE seq > $1 ORDER BY seq LIMIT $2",
            after,
            limit,
        )
        return [(seq, event_id) for seq, event_id in rows]

    async def _at(self, seqs: list[int]) -> list[tuple[int, bytes]]:
        if not seqs:
            return []
        rows = await self._run(
            "reading events by sequence number",
            "fetch",
            f"SELECT seq, body FROM {self._s}.events WHERE seq = ANY($1::bigint[]) ORDER BY seq",
            seqs,
        )
        return [(seq, body) for seq, body in rows]

    # -- durable delivery state ------------------------------------------------------------
    async def save_subscription(self, spec: SubscriptionSpec) -> SubscriptionState:
        # One statement: a new subscription starts at the last *committed* seq (the counter
        # row is bumped in the same transaction as the rows it numbers), an existing one keeps
        # its cursor, lease and creation time.
        row = await self._run(
            f"saving subscription {spec.id!r}",
            "fetchrow",
            f"INSERT INTO {self._s}.subscriptions AS sub (id, spec, cursor, created_at)"
            " SELECT $1, $2::jsonb,"
            " CASE WHEN $3 THEN 0 ELSE coalesce(("
            f"  SELECT last_seq FROM {self._s}.nabat_sequence WHERE name = 'events'), 0) END,"
            " clock_timestamp()"
            " ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec"
            f" RETURNING {_STATE_COLUMNS}",
            spec.id,
            msgspec.json.encode(spec).decode(),
            spec.start_at_beginning,
        )
        return _state(row)

    async def subscription(self, subscription_id: str) -> SubscriptionState | None:
        row = await self._run(
            f"reading subscription {subscription_id!r}",
            "fetchrow",
            f"SELECT {_STATE_COLUMNS} FROM {self._s}.subscriptions WHERE id = $1",
            subscription_id,
        )
        return None if row is None else _state(row)

    async def subscriptions(self) -> list[SubscriptionState]:
        rows = await self._run(
            "reading subscriptions",
            "fetch",
            f"SELECT {_STATE_COLUMNS} FROM {self._s}.subscriptions ORDER BY id",
        )
        return [_state(row) for row in rows]

    async def delete_subscription(self, subscription_id: str) -> bool:
        status = await self._run(
            f"deleting subscription {subscription_id!r}",
            "execute",
            f"DELETE FROM {self._s}.subscriptions WHERE id = $1",  # issues: ON DELETE CASCADE
            subscription_id,
        )
        return _rowcount(status) > 0

    async def acquire_lease(self, subscription_id: str, owner: str, ttl: float) -> bool:
        status = await self._run(
            f"taking the lease on subscription {subscription_id!r}",
            "execute",
            f"UPDATE {self._s}.subscriptions"
            " SET lease_owner = $2, lease_until = clock_timestamp() + make_interval(secs => $3)"
            " WHERE id = $1"
            " AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < clock_timestamp())",
            subscription_id,
            owner,
            float(ttl),
        )
        return _rowcount(status) > 0

    async def release_lease(self, subscription_id: str, owner: str) -> None:
        await self._run(
            f"releasing the lease on subscription {subscription_id!r}",
            "execute",
            f"UPDATE {self._s}.subscriptions SET lease_owner = NULL, lease_until = NULL"
            " WHERE id = $1 AND lease_owner = $2",
            subscription_id,
            owner,
        )

    async def advance_cursor(self, subscription_id: str, owner: str, seq: int) -> bool:
        status = await self._run(
            f"moving the cursor of subscription {subscription_id!r}",
            "execute",
            f"UPDATE {self._s}.subscriptions SET cursor = GREATEST(cursor, $3)"
            " WHERE id = $1 AND lease_owner = $2 AND lease_until >= clock_timestamp()",
            subscription_id,
            owner,
            seq,
        )
        return _rowcount(status) > 0

    async def record_failure(
        self,
        subscription_id: str,
        seq: int,
        event_id: str,
        error: str,
        next_attempt_at: datetime | None,
        dead: bool,
    ) -> DeliveryIssue:
        state = IssueState.DEAD if dead else IssueState.RETRY
        next_at = None if dead or next_attempt_at is None else _aware(next_attempt_at)
        row = await self._run(
            f"recording a failed delivery for subscription {subscription_id!r}",
            "fetchrow",
            f"INSERT INTO {self._s}.delivery_issues AS d (subscription, seq, event_id, state,"
            " attempts, first_failed_at, next_attempt_at, last_error)"
            " VALUES ($1, $2, $3, $4, 1, clock_timestamp(), $5, $6)"
            " ON CONFLICT (subscription, seq) DO UPDATE SET attempts = d.attempts + 1,"
            " state = EXCLUDED.state, next_attempt_at = EXCLUDED.next_attempt_at,"
            " last_error = EXCLUDED.last_error"
            f" RETURNING {_ISSUE_COLUMNS}",
            subscription_id,
            seq,
            event_id,
            state.value,
            next_at,
            _text(error[:_MAX_ERROR]),
        )
        return _issue(row)

    async def clear_failure(self, subscription_id: str, seq: int) -> None:
        await self._run(
            f"clearing a failed delivery for subscription {subscription_id!r}",
            "execute",
            f"DELETE FROM {self._s}.delivery_issues WHERE subscription = $1 AND seq = $2",
            subscription_id,
            seq,
        )

    async def issues(
        self,
        subscription_id: str | None = None,
        state: IssueState | None = None,
        *,
        due_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[DeliveryIssue]:
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if subscription_id is not None:
            where.append(f"subscription = {arg(subscription_id)}")
        if state is not None:
            where.append(f"state = {arg(IssueState(state).value)}")
        if due_before is not None:
            where.append(f"state = 'retry' AND next_attempt_at <= {arg(_aware(due_before))}")
        sql = f"SELECT {_ISSUE_COLUMNS} FROM {self._s}.delivery_issues"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY subscription, seq LIMIT {arg(limit)}"
        rows = await self._run("reading delivery issues", "fetch", sql, *args)
        return [_issue(row) for row in rows]

    def _dead_filter(
        self, subscription_id: str, seqs: Sequence[int] | None
    ) -> tuple[str, list[Any]]:
        sql = "subscription = $1 AND state = 'dead'"
        args: list[Any] = [subscription_id]
        if seqs is not None:
            sql += " AND seq = ANY($2::bigint[])"
            args.append(list(seqs))
        return sql, args

    async def revive_dead(self, subscription_id: str, seqs: Sequence[int] | None = None) -> int:
        where, args = self._dead_filter(subscription_id, seqs)
        # now(): one instant for both columns, the start of this (one-statement) transaction.
        status = await self._run(
            f"reviving dead letters of subscription {subscription_id!r}",
            "execute",
            f"UPDATE {self._s}.delivery_issues SET state = 'retry', attempts = 0,"
            f" first_failed_at = now(), next_attempt_at = now() WHERE {where}",
            *args,
        )
        return _rowcount(status)

    async def discard_dead(self, subscription_id: str, seqs: Sequence[int] | None = None) -> int:
        where, args = self._dead_filter(subscription_id, seqs)
        status = await self._run(
            f"discarding dead letters of subscription {subscription_id!r}",
            "execute",
            f"DELETE FROM {self._s}.delivery_issues WHERE {where}",
            *args,
        )
        return _rowcount(status)

    # -- records ---------------------------------------------------------------------------
    async def _put_record(
        self,
        collection: str,
        key: str,
        body: bytes,
        expires: datetime | None,
        mode: PutMode,
    ) -> bool:
        status = await self._run(
            f"writing record {key!r} of {collection!r}",
            "execute",
            self._put_sql_by_mode[mode],
            collection,
            key,
            body,
            expires,
        )
        return _rowcount(status) > 0

    async def _lax_pool(self) -> asyncpg.Pool:
        """Connections whose commits do not wait for the disk: for rate limits, which every
        request of a token changes in one row. Waiting for the WAL to be flushed there would
        hold the row's lock a millisecond or more per request, capping a busy token far
        below its limit; a limit's last moments lost in a database crash cost nothing."""
        if self._lax is None:
            async with self._lax_lock:
                if self._lax is None:
                    self._lax = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=2,
                        timeout=self.connect_timeout,
                        server_settings={
                            "application_name": "nabat",
                            "synchronous_commit": "off",
                        },
                    )
        return self._lax

    async def _take_allowance(self, key: str, interval: float, window: float) -> float | None:
        action = f"taking from rate limit {key!r}"
        try:
            pool = await self._lax_pool()
            allowed = await pool.fetchval(_TAKE.format(s=self._s), key, interval, window)
            ahead = None if allowed else await pool.fetchval(_OVER.format(s=self._s), key)
        except _DB_ERRORS as exc:
            raise self._error(action, exc) from exc
        self.health.succeeded()
        if allowed:
            return None
        return max(0.001, (ahead or 0.0) + interval - window)

    async def _swap_record(
        self,
        collection: str,
        key: str,
        expected: bytes,
        body: bytes,
        expires: datetime | EllipsisType | None,
    ) -> bool:
        keep = expires is ...
        status = await self._run(
            f"changing record {key!r} of {collection!r}",
            "execute",
            f"UPDATE {self._s}.records SET body = $3, updated = now(),"
            " expires = CASE WHEN $5 THEN expires ELSE $6 END"
            f" WHERE collection = $1 AND key = $2 AND body = $4 AND {_LIVE}",
            collection,
            key,
            body,
            expected,
            keep,
            None if keep else expires,
        )
        return _rowcount(status) > 0

    async def _put_records(
        self, collection: str, rows: list[tuple[str, bytes, datetime | None]]
    ) -> None:
        ordered = sorted(rows, key=lambda row: row[0])  # see _PUT_MANY: a fixed lock order
        await self._run(
            f"writing {len(ordered)} records of {collection!r}",
            "execute",
            self._put_many_sql,
            collection,
            [key for key, _, _ in ordered],
            [body for _, body, _ in ordered],
            [expires for _, _, expires in ordered],
        )

    async def get_record(self, collection: str, key: str) -> Record | None:
        row = await self._run(
            f"reading record {key!r} of {collection!r}",
            "fetchrow",
            f"SELECT {_RECORD_COLUMNS} FROM {self._s}.records"
            f" WHERE collection = $1 AND key = $2 AND {_LIVE}",
            collection,
            key,
        )
        return None if row is None else _record(row)

    async def _records(
        self,
        collection: str,
        after: str | None,
        before: str | None,
        prefix: str | None,
        limit: int,
        descending: bool,
    ) -> list[Record]:
        args: list[Any] = [collection]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        where = ["collection = $1", _LIVE]
        if after is not None:
            where.append(f"key > {arg(after)}")
        if before is not None:
            where.append(f"key < {arg(before)}")
        if prefix:
            where.append(f"key LIKE {arg(like_prefix(prefix))} ESCAPE '\\'")
        sql = (
            f"SELECT {_RECORD_COLUMNS} FROM {self._s}.records WHERE {' AND '.join(where)}"
            f" ORDER BY key {'DESC' if descending else 'ASC'} LIMIT {arg(limit)}"
        )
        rows = await self._run(f"listing records of {collection!r}", "fetch", sql, *args)
        return [_record(row) for row in rows]

    async def delete_record(self, collection: str, key: str) -> bool:
        live = await self._run(
            f"deleting record {key!r} of {collection!r}",
            "fetchval",
            f"DELETE FROM {self._s}.records WHERE collection = $1 AND key = $2 RETURNING {_LIVE}",
            collection,
            key,
        )
        return bool(live)

    async def _purge_records(self, now: datetime | None) -> int:
        if now is None:
            sql = f"DELETE FROM {self._s}.records WHERE expires <= now()"
            args: tuple[Any, ...] = ()
        else:
            sql = f"DELETE FROM {self._s}.records WHERE expires <= $1"
            args = (now,)
        status = await self._run("purging expired records", "execute", sql, *args)
        return _rowcount(status)
