"""Process-wide settings `nabat run` applies before it starts the hub.

Kept apart from :class:`nabat.hub.Hub` so that embedding a hub (tests, a host application)
never changes the interpreter or the allocator behind the host's back.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

from .config import HubSettings
from .logs import get_logger

__all__ = ["apply_runtime_settings", "limit_malloc_arenas"]

log = get_logger("nabat.runtime")

_M_ARENA_MAX = -8  # glibc's <malloc.h>


def apply_runtime_settings(hub: HubSettings) -> None:
    # The GIL hand-over interval: see HubSettings.switch_interval (bench/http_ingest.py).
    sys.setswitchinterval(hub.switch_interval)
    limit_malloc_arenas(hub.malloc_arenas)


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at ``count``, here and in the processes started from here;
    True when the cap was set.

    Nothing is done for 0, off glibc (musl, macOS: no such arenas), or when the operator set
    ``MALLOC_ARENA_MAX`` (glibc read it at start-up and it stands). glibc fixes its limit when
    the ninth arena is made, so this runs before the hub starts its threads.
    """
    if count <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(_M_ARENA_MAX, count) != 1:
        log.warning("runtime.malloc_arenas_refused", arenas=count)
        return False
    # Processes the hub starts (video workers) read it at their start, as glibc does.
    os.environ["MALLOC_ARENA_MAX"] = str(count)
    log.info("runtime.malloc_arenas", arenas=count)
    return True
