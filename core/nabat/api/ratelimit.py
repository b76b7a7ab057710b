"""Rate limits: a token bucket per key, refilled continuously.

A client over its limit gets 429 with ``Retry-After`` (whole seconds until one request's worth
has refilled). On a journal several hub processes share (PostgreSQL behind a balancer) a key's
limit holds for all of them together: after the process's own bucket, requests take from the
journal's (one atomic statement, :meth:`nabat.store.Journal.take_allowance`), so N processes
do not let a token, a console or a sign-in address through N times its rate. A busy key takes
a block of requests at a time (a twentieth of a second's worth) and spends it here, so a
token sending 1,000 requests/s costs the database some 20 statements a second per process,
not 1,000; N processes may then let through up to N blocks more than the limit at once. The
own bucket goes first and refuses alone, without asking the journal, when this process alone
is over. A journal that cannot answer lets the request through (logged): a limit meant to stop
runaway clients must not take the API down with the database.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from ..logs import get_logger
from ..store import JournalError

if TYPE_CHECKING:
    from ..store import Journal

__all__ = ["RateLimiter"]

log = get_logger("nabat.api.ratelimit")
BLOCK_S = 0.05
"""A busy key takes this many seconds' worth of its rate from the journal at a time."""


class RateLimiter:
    def __init__(
        self, rate: float, burst: int, *, journal: Journal | None = None, max_keys: int = 100_000
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.journal = journal if journal is not None and journal.shared else None
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._credit: dict[str, int] = {}  # key -> requests taken from the journal, unspent

    async def acquire(
        self, key: str, *, rate: float | None = None, burst: int | None = None
    ) -> float | None:
        """Take one request from ``key``'s bucket. None when allowed; otherwise the seconds
        to wait before the next request would be."""
        rate = rate or self.rate
        burst = burst or self.burst
        wait = self._local(key, rate, burst)
        if wait is not None or self.journal is None:
            return wait
        credit = self._credit.get(key, 0)
        if credit > 0:
            self._credit[key] = credit - 1
            return None
        block = max(1, min(burst, int(rate * BLOCK_S)))
        try:
            if block > 1:
                wait = await self.journal.take_allowance(key, rate=rate, burst=burst, cost=block)
                if wait is None:
                    if len(self._credit) >= self.max_keys:
                        self._credit.clear()  # bounded memory; only ever lets fewer through
                    self._credit[key] = block - 1
                    return None
                # Not a whole block left: one request at a time, as exact as the limit.
            return await self.journal.take_allowance(key, rate=rate, burst=burst)
        except JournalError as exc:
            quiet = exc.outage  # the journal's health told of the outage once
            (log.debug if quiet else log.warning)("ratelimit.unshared", key=key, error=str(exc))
            return None

    def _local(self, key: str, rate: float, burst: int) -> float | None:
        capacity = float(burst)
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
