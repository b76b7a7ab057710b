"""The embedded journal: one SQLite file in WAL mode, ``synchronous=FULL``.

All writes go through one thread with its own connection (SQLite has one writer anyway); reads
use a second connection in another thread, which WAL lets run beside the writer. Neither ever
blocks the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from ..events import Event, EventTypes
from .base import EventQuery, Journal, JournalError, like_prefix

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
}


def _micros(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


class SqliteJournal(Journal):
    kind = "sqlite"

    def __init__(self, path: str | Path, *, types: EventTypes | None = None) -> None:
        super().__init__(types=types)
        self.path = Path(path)
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None

    # -- threads ---------------------------------------------------------------------------
    def _open_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    async def _in(self, pool: ThreadPoolExecutor | None, fn: Any, *args: Any) -> Any:
        if pool is None:
            raise JournalError("the journal is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except sqlite3.Error as exc:
            raise JournalError(f"SQLite: {exc}") from exc

    async def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="journal-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="journal-read")
        self._wconn = await self._in(self._writer, self._open_connection)
        self._rconn = await self._in(self._reader, self._open_connection)

    async def _disconnect(self) -> None:
        for pool, conn in ((self._writer, self._wconn), (self._reader, self._rconn)):
            if pool is not None and conn is not None:
                await self._in(pool, conn.close)
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
            conn.execute("ROLLBACK")
            raise

    async def _migrate(self, from_version: int) -> None:
        await self._in(self._writer, self._migrate_sync, from_version)

    # -- writing ---------------------------------------------------------------------------
    def _write_sync(self, rows: list[tuple[Event, bytes]]) -> list[int]:
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Which (source, id) are stored already? Chunked to stay under SQLite's
            # host-parameter limit.
            keys = [(e.source, e.id) for e, _ in rows]
            known: dict[tuple[str, str], int] = {}
            for start in range(0, len(keys), 400):
                chunk = keys[start : start + 400]
                marks = ",".join("(?,?)" for _ in chunk)
                flat = [v for key in chunk for v in key]
                for source, eid, seq in conn.execute(
                    f"SELECT source, id, seq FROM events WHERE (source, id) IN (VALUES {marks})",
                    flat,
                ):
                    known[(source, eid)] = seq
            fresh: list[tuple[Any, ...]] = []
            for (event, body), key in zip(rows, keys, strict=True):
                if key in known:
                    continue
                known[key] = -1  # a duplicate inside this batch keeps the first
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
                conn.executemany(
                    "INSERT INTO events (id, source, type, subject, time_us, municipality,"
                    " severity, correlationid, body) VALUES (?,?,?,?,?,?,?,?,?)",
                    fresh,
                )
                # One writer, AUTOINCREMENT: the new rows took consecutive numbers.
                for offset, values in enumerate(fresh):
                    known[(values[1], values[0])] = first + offset
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return [known[key] for key in keys]

    async def _write(self, rows: list[tuple[Event, bytes]]) -> list[int]:
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
