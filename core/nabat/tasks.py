"""A set of background tasks that are kept until done and cancelled together.

asyncio keeps only a weak reference to a task: one nobody holds may be collected mid-run. The
hub, its instances, incidents and alerts each start tasks they must be able to stop at
shutdown; :class:`TaskSet` is that bookkeeping, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["TaskSet"]

T = TypeVar("T")


class TaskSet:
    def __init__(self, name: str = "") -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Run ``coro`` in the background; the task is held until it is done."""
        task = asyncio.get_running_loop().create_task(coro, name=name or self.name or None)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every task (the caller's own excepted) and wait for them to end."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
