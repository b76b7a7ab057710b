"""The worker threads that open and decode camera streams.

Probing and snapshotting block in FFmpeg (network reads, decoding). asyncio's default
executor has ``min(32, cores + 4)`` threads — six on a 2-core hub — and is shared with
everything else, so a sweep of thousands of cameras would queue there and slow unrelated work.
Camera I/O gets a pool of its own, sized for the sweep's concurrency (FFmpeg releases the GIL
while it waits and decodes).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["in_camera_worker", "set_camera_workers"]

T = TypeVar("T")
_workers = 32
_executor: ThreadPoolExecutor | None = None


def set_camera_workers(count: int) -> None:
    """Size the pool (before the first use, or it is replaced for later calls)."""
    global _workers, _executor
    if count < 1:
        raise ValueError("at least one camera worker")
    _workers = count
    old, _executor = _executor, None
    if old is not None:
        old.shutdown(wait=False)


async def in_camera_worker(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(_workers, thread_name_prefix="camera-io")
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor, call)
