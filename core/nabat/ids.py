"""Time-ordered identifiers: UUIDv7 (RFC 9562), monotonic within a process.

Event ids sort by creation time, so the journal's primary key doubles as its time index and a
cursor. Python 3.11 has no ``uuid.uuid7``; this is the RFC's "method 1": 48 bits of Unix
milliseconds, then a 12-bit counter that keeps ids from one process strictly increasing
within the same millisecond, then 62 random bits.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["uuid7", "uuid7_time"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_pool = b""
_pos = 0
_POOL_BYTES = 4096
"""Random bytes are read from the OS a page at a time: one ``getrandom`` call per 400 ids
instead of two per id (ids are made per event and per HTTP request)."""


def _random(n: int) -> bytes:
    """``n`` bytes from the OS's CSPRNG (as RFC 9562 asks); call with ``_lock`` held."""
    global _pool, _pos
    if _pos + n > len(_pool):
        _pool, _pos = os.urandom(_POOL_BYTES), 0
    _pos += n
    return _pool[_pos - n : _pos]


def _forget_pool() -> None:
    global _pool, _pos
    _pool, _pos = b"", 0  # a forked child must not reuse its parent's random bytes


os.register_at_fork(after_in_child=_forget_pool)


def uuid7() -> str:
    """Return a new UUIDv7 as its canonical lowercase string."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(_random(2), "big") & 0x3FF  # leave room to count up
        else:
            # Same millisecond (or the clock stepped back): count up, borrowing the next ms
            # when the 12-bit counter is spent, so ids never go backwards.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
        rand = int.from_bytes(_random(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    h = f"{value:032x}"  # formatted by hand: uuid.UUID(...) costs twice as much
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time(value: str) -> float:
    """Return the Unix time (seconds) embedded in a UUIDv7 string."""
    return (uuid.UUID(value).int >> 80) / 1000.0
