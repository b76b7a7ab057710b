"""The audit log: who did what through the API, for every state-changing call.

Entries go into the journal's record store (collection ``audit``) keyed by a UUIDv7, so key
order is time order and listing newest-first needs no extra index. They are written in small
batches by one background task (every second or 500 entries) rather than one commit per request;
a crash can lose the entries of that last second, never an event or an answer
already given. Stopping the API flushes what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import msgspec

from ..ids import uuid7
from ..logs import get_logger
from ..store import Journal, JournalError

__all__ = ["AuditEntry", "AuditLog"]

COLLECTION = "audit"
_FLUSH_EVERY = 1.0  # seconds; each flush is one durable commit on the journal's writer
log = get_logger("nabat.api.audit")


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One state-changing call."""

    id: str
    time: datetime
    actor: str
    """``token:<id>`` (with ``actor_name``), ``webhook:<plugin>``, ``cli:<user>``."""
    actor_name: str | None = None
    action: str
    """``METHOD /path`` for API calls, a verb for CLI actions (``tokens.create``)."""
    status: int | None = None
    request_id: str | None = None
    remote: str | None = None
    detail: dict[str, str | int | bool | list[str]] | None = None


class AuditLog:
    def __init__(
        self, journal: Journal, *, retention_days: float | None = 365.0, batch: int = 500
    ) -> None:
        self.journal = journal
        self.retention_days = retention_days
        self.batch = batch
        self._queue: list[AuditEntry] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failed = 0

    def record(
        self,
        actor: str,
        action: str,
        *,
        actor_name: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        remote: str | None = None,
        detail: dict[str, str | int | bool | list[str]] | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            id=uuid7(),
            time=datetime.now(UTC),
            actor=actor,
            actor_name=actor_name,
            action=action,
            status=status,
            request_id=request_id,
            remote=remote,
            detail=detail or None,
        )
        self._queue.append(entry)
        if self._task is None:
            # Not running (CLI use): the caller awaits flush() itself.
            return entry
        if len(self._queue) >= self.batch:
            self._wake.set()
        return entry

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="api:audit")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FLUSH_EVERY):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._queue:
            entries, self._queue = self._queue[: self.batch], self._queue[self.batch :]
            expires = (
                None
                if self.retention_days is None
                else datetime.now(UTC) + timedelta(days=self.retention_days)
            )
            try:
                await self.journal.put_records(
                    COLLECTION, [(e.id, msgspec.json.encode(e), expires) for e in entries]
                )
            except Exception as exc:
                # Keep them for the next round: the journal's trouble is usually brief.
                self._queue[:0] = entries
                self.failed += 1
                quiet = isinstance(exc, JournalError) and exc.outage
                (log.debug if quiet else log.error)(
                    "audit.write_failed", entries=len(entries), error=repr(exc)
                )
                if len(self._queue) > 100_000:
                    dropped = len(self._queue) - 100_000
                    del self._queue[:dropped]
                    log.error("audit.entries_dropped", dropped=dropped)
                return
            self.written += len(entries)

    async def entries(
        self, *, before: str | None = None, limit: int = 100
    ) -> tuple[list[AuditEntry], str | None]:
        """Newest first; the second value is the ``before`` for the next page, or None."""
        records = await self.journal.records(
            COLLECTION, before=before, limit=limit + 1, descending=True
        )
        more = len(records) > limit
        records = records[:limit]
        entries = [msgspec.json.decode(r.body, type=AuditEntry) for r in records]
        return entries, (records[-1].key if more and records else None)
