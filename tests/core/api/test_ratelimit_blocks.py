"""The shared rate limit's blocks: a busy key asks the journal about 20 times a second, not
once per request, and spends what it took before it asks again; near the limit it asks for
one request at a time. A journal that counts what it hands out stands in for PostgreSQL's
(the statement itself: tests/core/store/test_records.py; two real hubs:
tests/core/test_multiprocess_races.py)."""

from __future__ import annotations

from nabat.api.ratelimit import RateLimiter


class CountingJournal:
    shared = True

    def __init__(self, allowance: int) -> None:
        self.allowance = allowance
        self.calls: list[int] = []

    async def take_allowance(self, key: str, *, rate: float, burst: int, cost: int = 1):
        self.calls.append(cost)
        if cost > self.allowance:
            return 1.0
        self.allowance -= cost
        return None


async def test_a_busy_token_takes_blocks_and_spends_them_before_asking_again():
    journal = CountingJournal(allowance=10_000)
    limiter = RateLimiter(1000.0, 2000, journal=journal)  # type: ignore[arg-type]
    answers = [await limiter.acquire("tok") for _ in range(1000)]
    assert answers == [None] * 1000
    assert journal.calls == [50] * 20  # a twentieth of a second's worth at a time
    assert journal.allowance == 10_000 - 1000  # nothing taken twice, nothing left unspent


async def test_near_the_limit_it_asks_for_one_request_at_a_time():
    journal = CountingJournal(allowance=3)  # other processes spent the rest
    limiter = RateLimiter(1000.0, 2000, journal=journal)  # type: ignore[arg-type]
    answers = [await limiter.acquire("tok") for _ in range(5)]
    assert answers[:3] == [None] * 3 and all(a is not None for a in answers[3:])
    assert journal.allowance == 0


async def test_a_slow_key_asks_every_time():
    journal = CountingJournal(allowance=100)
    limiter = RateLimiter(0.5, 10, journal=journal)  # type: ignore[arg-type]  # sign-in
    for _ in range(4):
        assert await limiter.acquire("sign-in:10.0.0.1") is None
    assert journal.calls == [1, 1, 1, 1]
