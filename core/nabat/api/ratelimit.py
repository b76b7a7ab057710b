"""Per-token rate limits: a token bucket each, refilled continuously.

A client over its limit gets 429 with ``Retry-After`` (whole seconds until one request's worth
has refilled). Buckets live in this process: with several hub processes behind a balancer a
token may get up to N times its rate, which is what a limit meant to stop runaway clients (not
to meter them) can accept.
"""

from __future__ import annotations

import math
import time

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def acquire(
        self, key: str, *, rate: float | None = None, burst: int | None = None
    ) -> float | None:
        """Take one request from ``key``'s bucket. None when allowed; otherwise the seconds
        to wait before the next request would be."""
        rate = rate or self.rate
        capacity = float(burst or self.burst)
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._buckets.clear()  # bounded memory; a reset only ever lets more through
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
