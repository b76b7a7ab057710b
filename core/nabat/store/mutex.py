"""A lock every hub process on one journal respects: a short lease record per key.

Several hub processes on one PostgreSQL may act on the same incident at once (a 112 card
through one, an operator's edit through another). A per-process ``asyncio.Lock`` serialises
only its own process; this one takes a record in the journal (``put_record(only_new=True)``,
one atomic statement) that no other process can take while it lives. The lease expires after
``ttl`` seconds, so a process killed while holding it blocks the key for at most that long.

Within a process, waiters queue on a local lock first, so only one of them at a time polls the
journal.
"""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .base import JournalError

if TYPE_CHECKING:
    from .base import Journal

__all__ = ["JournalMutex", "MutexBusy"]

COLLECTION = "locks"
_POLL_FIRST = 0.005
_POLL_MAX = 0.1


class MutexBusy(JournalError):
    """Another process held the key for longer than the caller would wait."""


class JournalMutex:
    def __init__(self, journal: Journal, namespace: str, *, ttl: float = 15.0) -> None:
        self.journal = journal
        self.namespace = namespace
        self.ttl = ttl
        self._local: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _local_lock(self, key: str) -> asyncio.Lock:
        lock = self._local.get(key)
        if lock is None:
            lock = self._local[key] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def hold(self, key: str, *, timeout: float = 30.0) -> AsyncIterator[None]:
        """Hold ``key`` against every process on the journal; :class:`MutexBusy` after
        ``timeout`` seconds of waiting. The work inside must finish well within ``ttl``."""
        name = f"{self.namespace}/{key}"
        async with self._local_lock(key):
            holder = secrets.token_hex(8).encode()  # this hold's own: release only ours
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            pause = _POLL_FIRST
            while not await self.journal.put_record(
                COLLECTION,
                name,
                holder,
                expires=datetime.now(UTC) + timedelta(seconds=self.ttl),
                only_new=True,
            ):
                if loop.time() >= deadline:
                    raise MutexBusy(f"{name} is held by another hub process (waited {timeout:g} s)")
                await asyncio.sleep(pause)
                pause = min(_POLL_MAX, pause * 2)
            try:
                yield
            finally:
                # Given up in one statement that never touches another holder's lease.
                await asyncio.shield(
                    self.journal.put_record(
                        COLLECTION, name, holder, expires=datetime.now(UTC), claim=True
                    )
                )
