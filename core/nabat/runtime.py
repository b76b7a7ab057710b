"""Process-wide settings `nabat run` applies before it starts the hub.

Kept apart from :class:`nabat.hub.Hub` so that embedding a hub (tests, a host application)
never changes the interpreter or the allocator behind the host's back.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
import threading
from collections.abc import Callable

from .config import HubSettings
from .logs import get_logger

__all__ = ["apply_runtime_settings", "limit_malloc_arenas", "malloc_usage", "start_heap_trimmer"]

log = get_logger("nabat.runtime")

_M_ARENA_MAX = -8  # glibc's <malloc.h>


def apply_runtime_settings(hub: HubSettings) -> None:
    # The GIL hand-over interval: see HubSettings.switch_interval (bench/http_ingest.py).
    sys.setswitchinterval(hub.switch_interval)
    limit_malloc_arenas(hub.malloc_arenas)
    if hub.malloc_trim_interval > 0:
        start_heap_trimmer(hub.malloc_trim_interval)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def start_heap_trimmer(interval: float) -> threading.Event | None:
    """Give glibc's free heap pages back to the OS every ``interval`` seconds, from a daemon
    thread; returns the event that stops it, or None off glibc.

    ``malloc_trim`` runs without the GIL (ctypes releases it) and holds each arena's lock for
    the walk: about 10 ms to release 80 MB, well under 1 ms when little was freed since.
    """
    libc = _glibc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            trim(0)

    threading.Thread(target=run, name="malloc-trim", daemon=True).start()
    log.info("runtime.malloc_trim", every_s=interval)
    return stop


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at ``count``, here and in the processes started from here;
    True when the cap was set.

    Nothing is done for 0, off glibc (musl, macOS: no such arenas), or when the operator set
    the limit (``MALLOC_ARENA_MAX``, or ``glibc.malloc.arena_max`` in ``GLIBC_TUNABLES``:
    glibc read it at start-up and it stands). Called before the hub starts its threads, so
    no arena beyond the cap exists yet.
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if count <= 0 or "MALLOC_ARENA_MAX" in os.environ or "glibc.malloc.arena_max" in tunables:
        return False
    mallopt = getattr(_glibc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mallopt(_M_ARENA_MAX, count)  # glibc accepts any count > 0 (returns 1)
    # Every process started from here (camera and video workers, FFmpeg) reads it at its
    # start, as glibc does; they get no trimmer of their own.
    os.environ["MALLOC_ARENA_MAX"] = str(count)
    log.info("runtime.malloc_arenas", arenas=count)
    return True


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    function = getattr(_glibc(), "mallinfo2", None)  # glibc 2.33+
    if function is None:
        return None
    function.argtypes = ()
    function.restype = _MallInfo2
    return function


def malloc_usage() -> tuple[int, int] | None:
    """glibc's heap as (bytes in use, bytes free), or None off glibc or before 2.33.

    What tells a leak from an allocator keeping what was freed when RSS rises: in use grows
    with a leak, the free part with fragmentation (resident, or given back by malloc_trim:
    mallinfo2 does not tell them apart). Python's small objects live in its own
    arenas (``sys.getallocatedblocks``), not here. Walks the free lists: ~1 ms on a
    fragmented heap, so for a scrape, not a hot path.
    """
    function = _mallinfo2()
    if function is None:
        return None
    info = function()
    return info.uordblks + info.hblkhd, info.fordblks
