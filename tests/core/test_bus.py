"""The bus: NATS wildcards, bounded queues with declared overflow, isolation, order, drain."""

from __future__ import annotations

import asyncio
import logging

import pytest
from nabat.bus import Bus, BusClosed, Overflow
from nabat.events import Event
from nabat.subjects import SubjectError, matches, validate_pattern


def ev(type_: str = "camera.health.offline", n: int = 0) -> Event:
    return Event(type=type_, source="/test", subject=str(n))


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("camera.health.offline", "camera.health.offline", True),
        ("camera.*.offline", "camera.health.offline", True),
        ("camera.*", "camera.health.offline", False),
        ("camera.>", "camera.health.offline", True),
        ("camera.>", "camera", False),
        (">", "anything.at.all", True),
        ("*", "one", True),
        ("*", "one.two", False),
        ("camera.health.*", "camera.health", False),
        ("alert.*.activated", "alert.x.y.activated", False),
    ],
)
def test_nats_wildcard_semantics(pattern, subject, expected):
    assert matches(pattern, subject) is expected


@pytest.mark.parametrize("bad", ["", "a..b", "a.>.b", "a.b*", "a b"])
def test_bad_patterns_are_refused(bad):
    with pytest.raises(SubjectError):
        validate_pattern(bad)


class Collector:
    def __init__(self) -> None:
        self.seen: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.seen.append(event)


async def test_routes_by_pattern_to_every_matching_subscriber():
    bus = Bus()
    health, everything, alerts = Collector(), Collector(), Collector()
    bus.subscribe("camera.health.*", health, name="health")
    bus.subscribe(">", everything, name="all")
    bus.subscribe(["alert.>", "incident.created"], alerts, name="alerts")
    for t in (
        "camera.health.offline",
        "alert.device.failed",
        "incident.created",
        "siren.status.idle",
    ):
        await bus.publish(ev(t))
    await bus.drain()
    assert [e.type for e in health.seen] == ["camera.health.offline"]
    assert len(everything.seen) == 4
    assert [e.type for e in alerts.seen] == ["alert.device.failed", "incident.created"]
    await bus.close()


async def test_order_is_kept_per_subscriber_and_a_slow_one_does_not_hold_back_others():
    bus = Bus(queue_size=10_000)
    fast = Collector()
    slow_seen: list[int] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0.001)
        slow_seen.append(int(event.subject))

    bus.subscribe(">", fast, name="fast")
    bus.subscribe(">", slow, name="slow")
    for n in range(300):
        await bus.publish(ev(n=n))
    # The fast subscriber is done long before the slow one: isolation, not lockstep.
    await bus.subscriptions[0].wait_idle()
    assert [int(e.subject) for e in fast.seen] == list(range(300))
    assert len(slow_seen) < 300
    await bus.drain()
    assert slow_seen == list(range(300))
    await bus.close()


async def test_a_failing_listener_is_logged_and_counted_and_others_unaffected(caplog):
    bus = Bus()
    good = Collector()

    def bad(event: Event) -> None:
        raise RuntimeError("listener bug")

    bus.subscribe(">", bad, name="bad")
    bus.subscribe(">", good, name="good")
    with caplog.at_level(logging.WARNING, logger="nabat.bus"):
        for n in range(5):
            await bus.publish(ev(n=n))
        await bus.drain()
    assert len(good.seen) == 5
    stats = {s.name: s for s in bus.stats()}
    assert stats["bad"].errors == 5 and stats["bad"].delivered == 0
    assert stats["good"].errors == 0 and stats["good"].delivered == 5
    assert any(r.getMessage() == "bus.listener_failed" for r in caplog.records)
    await bus.close()


async def test_a_hung_listener_is_cancelled_by_the_watchdog_and_moves_on():
    bus = Bus()
    handled: list[int] = []
    good = Collector()

    async def sometimes_hangs(event: Event) -> None:
        if event.subject == "1":
            await asyncio.Event().wait()  # never returns
        handled.append(int(event.subject))

    bus.subscribe(">", sometimes_hangs, name="hangs", handler_timeout=0.1)
    bus.subscribe(">", good, name="good")
    for n in range(4):
        await bus.publish(ev(n=n))
    await bus.subscriptions[1].wait_idle()
    assert len(good.seen) == 4  # not held back by the hang
    async with asyncio.timeout(5):
        await bus.subscriptions[0].wait_idle()
    assert handled == [0, 2, 3]
    stats = {s.name: s for s in bus.stats()}
    assert stats["hangs"].timeouts == 1 and stats["hangs"].delivered == 3
    await bus.close()


async def test_wait_overflow_applies_backpressure_then_drops_with_a_count():
    bus = Bus()
    gate = asyncio.Event()
    seen: list[int] = []

    async def blocked(event: Event) -> None:
        await gate.wait()
        seen.append(int(event.subject))

    sub = bus.subscribe(
        ">", blocked, name="blocked", queue_size=2, overflow=Overflow.WAIT, put_timeout=0.05
    )
    await bus.publish(ev(n=0))  # taken by the worker, which blocks on the gate
    await asyncio.sleep(0)
    await bus.publish(ev(n=1))
    await bus.publish(ev(n=2))  # queue now full (2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bus.publish(ev(n=3)) == 0  # waited for room, then dropped
    assert loop.time() - started >= 0.04
    assert sub.stats().dropped == 1
    gate.set()
    await bus.drain()
    assert seen == [0, 1, 2]
    await bus.close()


async def test_wait_overflow_delivers_in_order_when_room_frees_in_time():
    bus = Bus()
    seen: list[int] = []

    async def slowish(event: Event) -> None:
        await asyncio.sleep(0.001)
        seen.append(int(event.subject))

    bus.subscribe(">", slowish, name="slowish", queue_size=4, overflow="wait", put_timeout=5)
    await asyncio.gather(*(bus.publish(ev(n=n)) for n in range(50)))
    await bus.drain()
    assert seen == list(range(50))
    assert bus.stats()[0].dropped == 0
    await bus.close()


async def test_drop_oldest_never_blocks_the_publisher_and_counts_what_it_evicts():
    bus = Bus()
    gate = asyncio.Event()
    seen: list[int] = []

    async def blocked(event: Event) -> None:
        await gate.wait()
        seen.append(int(event.subject))

    sub = bus.subscribe(">", blocked, name="lossy", queue_size=3, overflow=Overflow.DROP_OLDEST)
    await bus.publish(ev(n=0))
    await asyncio.sleep(0)  # worker holds event 0
    for n in range(1, 10):
        assert await bus.publish(ev(n=n)) == 1
    assert sub.stats().dropped == 6
    gate.set()
    await bus.drain()
    assert seen == [0, 7, 8, 9]
    await bus.close()


async def test_accept_filter_runs_before_queueing():
    bus = Bus()
    got = Collector()
    sub = bus.subscribe(">", got, name="krd", accept=lambda e: e.municipality == "krasnodar")
    await bus.publish(Event(type="a.b", source="/s", municipality="sochi"))
    await bus.publish(Event(type="a.b", source="/s", municipality="krasnodar"))
    await bus.drain()
    assert [e.municipality for e in got.seen] == ["krasnodar"]
    assert sub.stats().max_depth <= 1
    await bus.close()


async def test_close_drains_queued_events_then_refuses_new_ones():
    bus = Bus()
    seen: list[int] = []

    async def slowish(event: Event) -> None:
        await asyncio.sleep(0.002)
        seen.append(int(event.subject))

    bus.subscribe(">", slowish, name="s", queue_size=100)
    for n in range(20):
        await bus.publish(ev(n=n))
    lost = await bus.close(timeout=5)
    assert lost == {} and seen == list(range(20))
    with pytest.raises(BusClosed):
        await bus.publish(ev())


async def test_close_reports_what_it_could_not_deliver_in_time():
    bus = Bus()

    async def stuck(event: Event) -> None:
        await asyncio.sleep(3600)

    bus.subscribe(">", stuck, name="stuck", handler_timeout=3600)
    for n in range(5):
        await bus.publish(ev(n=n))
    lost = await bus.close(timeout=0.1)
    assert lost == {"stuck": 5}


async def test_unsubscribed_listener_gets_nothing_new():
    bus = Bus()
    got = Collector()
    sub = bus.subscribe(">", got, name="x")
    await bus.publish(ev(n=1))
    await bus.drain()
    sub.unsubscribe()
    assert await bus.publish(ev(n=2)) == 0
    assert [e.subject for e in got.seen] == ["1"]
    await bus.close()
