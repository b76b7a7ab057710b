"""Durable delivery end to end on each journal: order, retries, dead letters, restarts, leases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from nabat import delivery as delivery_module
from nabat.delivery import DeliveryService, NotReady
from nabat.events import Event
from nabat.interfaces import DeliveryResult, DeliveryStatus, TransientError
from nabat.store import EventQuery
from nabat.store.delivery import IssueState, Order, SubscriptionSpec
from nabat.testing import eventually

FAST = dict(backoff_initial=0.01, backoff_max=0.05, timeout=2.0)


class Receiver:
    """A delivery target whose failures the test scripts; it keeps what it received."""

    def __init__(self) -> None:
        self.received: list[str] = []  # subjects, in arrival order, duplicates included
        self.fail: dict[str, int] = {}  # subject -> failures left
        self.reject: set[str] = set()
        self.down = False
        self.not_ready = False
        self.in_flight = 0
        self.max_in_flight = 0
        self.attempts: dict[str, int] = {}
        self._changed = asyncio.Condition()

    async def __call__(self, event: Event) -> DeliveryResult | None:
        subject = event.subject or ""
        if self.not_ready:
            raise NotReady
        self.attempts[subject] = self.attempts.get(subject, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.002)  # a network round trip, so parallel calls overlap
            if self.down:
                raise TransientError("connection refused")
            if self.fail.get(subject, 0) > 0:
                self.fail[subject] -= 1
                return DeliveryResult(
                    status=DeliveryStatus.RETRY, at=datetime.now(UTC), detail="HTTP 503"
                )
            if subject in self.reject:
                return DeliveryResult(
                    status=DeliveryStatus.REJECTED, at=datetime.now(UTC), detail="HTTP 400"
                )
            self.received.append(subject)
            return None
        finally:
            self.in_flight -= 1
            async with self._changed:
                self._changed.notify_all()

    async def wait_until(self, predicate, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)


def events(n: int, start: int = 0) -> list[Event]:
    return [
        Event(type="incident.created", source="/t", subject=f"e{i}")
        for i in range(start, start + n)
    ]


async def publish(journal, service, batch: list[Event]) -> None:
    await journal.append(batch)
    service.notify()


async def cursor_passes_the_end(journal, subscription: str, what: str) -> None:
    """Wait until the subscription's cursor has passed every event in the journal."""
    last = await journal.last_seq()

    async def passed() -> bool:
        return (await journal.subscription(subscription)).cursor >= last

    await eventually(passed, what=what)


async def test_ordered_delivery_waits_for_a_failing_event_and_keeps_order(make_journal):
    journal = await make_journal()
    receiver = Receiver()
    receiver.fail["e2"] = 3
    service = DeliveryService(journal, "hub-a", lease_ttl=5, poll=0.05)
    await service.add(SubscriptionSpec(id="ordered", patterns=("incident.>",), **FAST), receiver)
    await publish(journal, service, events(6))
    await receiver.wait_until(lambda: len(receiver.received) == 6)
    assert receiver.received == ["e0", "e1", "e2", "e3", "e4", "e5"]
    assert receiver.attempts["e2"] == 4

    async def cleared() -> bool:
        return await journal.issues("ordered") == []

    await eventually(cleared, what="the retry row to be cleared on success")
    await service.stop()


async def test_parallel_delivery_respects_concurrency_and_retries_beside_newer_events(make_journal):
    journal = await make_journal()
    receiver = Receiver()
    receiver.fail["e1"] = 2
    service = DeliveryService(journal, "hub-a", lease_ttl=5, poll=0.05)
    spec = SubscriptionSpec(
        id="par", patterns=("incident.>",), order=Order.PARALLEL, concurrency=3, **FAST
    )
    await service.add(spec, receiver)
    await publish(journal, service, events(30))
    await receiver.wait_until(lambda: len(set(receiver.received)) == 30)
    assert receiver.max_in_flight <= 3 and receiver.max_in_flight > 1
    assert receiver.received.index("e1") > receiver.received.index("e2")  # not held back
    await service.stop()


async def test_dead_letters_after_max_attempts_or_rejection_then_revive(make_journal):
    journal = await make_journal()
    receiver = Receiver()
    receiver.fail["e1"] = 100
    receiver.reject.add("e3")
    service = DeliveryService(journal, "hub-a", lease_ttl=5, poll=0.05)
    spec = SubscriptionSpec(id="dl", patterns=("incident.>",), max_attempts=3, **FAST)
    dispatcher = await service.add(spec, receiver)
    await publish(journal, service, events(5))
    await receiver.wait_until(lambda: len(receiver.received) == 3)
    assert receiver.received == ["e0", "e2", "e4"]  # ordered, but dead letters let it move on
    dead = await journal.issues("dl", IssueState.DEAD)
    assert [(d.attempts, d.last_error) for d in dead] == [
        (3, "HTTP 503"),
        (1, "rejected: HTTP 400"),
    ]
    assert dispatcher.stats.dead == 2
    # An operator fixes the receiver and retries the dead letters.
    receiver.fail.clear()
    receiver.reject.clear()
    assert await journal.revive_dead("dl") == 2
    service.notify()
    await receiver.wait_until(lambda: len(receiver.received) == 5)
    assert receiver.received[3:] == ["e1", "e3"]

    async def cleared() -> bool:
        return await journal.issues("dl") == []

    await eventually(cleared, what="revived letters to be cleared")
    await service.stop()


async def test_parallel_revived_dead_letters_are_delivered(make_journal):
    journal = await make_journal()
    receiver = Receiver()
    receiver.reject.add("e1")
    service = DeliveryService(journal, "hub-a", lease_ttl=5, poll=0.05)
    spec = SubscriptionSpec(id="p", patterns=("incident.>",), order=Order.PARALLEL, **FAST)
    await service.add(spec, receiver)
    await publish(journal, service, events(3))
    await receiver.wait_until(lambda: len(receiver.received) == 2)
    await receiver.wait_until(lambda: receiver.attempts.get("e1") == 1)

    async def dead_recorded() -> bool:
        return bool(await journal.issues("p", IssueState.DEAD))

    await eventually(dead_recorded, what="the dead letter")
    receiver.reject.clear()
    assert await journal.revive_dead("p") == 1
    service.notify()
    await receiver.wait_until(lambda: "e1" in receiver.received)

    async def cleared() -> bool:
        return await journal.issues("p") == []

    await eventually(cleared, what="the retry row to be cleared")
    await service.stop()


async def test_receiver_down_and_hub_restarted_meanwhile_loses_nothing(make_journal):
    journal = await make_journal()
    receiver = Receiver()
    receiver.down = True
    spec = SubscriptionSpec(id="agency", patterns=("incident.>",), max_attempts=None, **FAST)
    service = DeliveryService(journal, "hub-a", lease_ttl=5, poll=0.05)
    await service.add(spec, receiver)
    await publish(journal, service, events(10))
    await receiver.wait_until(lambda: receiver.attempts.get("e0", 0) >= 3)
    await service.stop()
    await journal.close()

    # The hub restarts (new process: new owner) while the receiver is still down, then it
    # comes back: everything arrives, in order.
    journal = await make_journal()
    service = DeliveryService(journal, "hub-a-restarted", lease_ttl=5, poll=0.05)
    await service.add(spec, receiver)
    await publish(journal, service, events(5, start=10))
    await receiver.wait_until(lambda: receiver.attempts.get("e0", 0) >= 4)
    receiver.down = False
    await receiver.wait_until(lambda: len(receiver.received) == 15)
    assert receiver.received == [f"e{i}" for i in range(15)]
    await service.stop()


async def test_only_the_lease_holder_delivers_and_a_dead_holder_is_replaced(make_journal):
    journal = await make_journal()
    receiver = Receiver()
    spec = SubscriptionSpec(id="shared", patterns=("incident.>",), **FAST)
    a = DeliveryService(journal, "hub-a", lease_ttl=0.5, poll=0.05)
    b = DeliveryService(journal, "hub-b", lease_ttl=0.5, poll=0.05)
    await a.add(spec, receiver)

    async def a_holds() -> bool:
        return (await journal.subscription("shared")).lease_owner == "hub-a"

    await eventually(a_holds, what="hub-a's lease")
    second = await b.add(spec, receiver)
    await publish(journal, a, events(5))
    await receiver.wait_until(lambda: len(receiver.received) == 5)
    assert not second.stats.holding_lease and second.stats.delivered == 0
    # hub-a dies without releasing its lease (its task is simply gone).
    a._tasks["shared"].cancel()
    await publish(journal, b, events(5, start=5))
    await receiver.wait_until(lambda: len(set(receiver.received)) == 10, timeout=10)
    assert second.stats.delivered >= 5
    assert (await journal.subscription("shared")).lease_owner == "hub-b"
    await b.stop()


async def test_a_parallel_round_that_outlasts_the_lease_keeps_it_and_delivers_once(make_journal):
    """A receiver that answers one event only after longer than the lease's TTL holds the
    whole round; the lease is renewed meanwhile, so the cursor moves past the page and no
    event of it is delivered twice (before, the move was refused and the page sent again)."""
    journal = await make_journal()
    receiver = Receiver()
    slow = asyncio.Event()

    async def one_slow(event: Event) -> DeliveryResult | None:
        if event.subject == "e3" and not slow.is_set():
            slow.set()
            await asyncio.sleep(1.5)  # within the delivery timeout, past the 0.6 s lease
        return await receiver(event)

    service = DeliveryService(journal, "hub-a", lease_ttl=0.6, poll=0.05)
    spec = SubscriptionSpec(
        id="slow", patterns=("incident.>",), order=Order.PARALLEL, concurrency=4, **FAST
    )
    await service.add(spec, one_slow)
    await publish(journal, service, events(10))
    await receiver.wait_until(lambda: len(set(receiver.received)) == 10)
    await publish(journal, service, events(1, start=10))
    await cursor_passes_the_end(journal, "slow", "the cursor past every event")
    assert sorted(receiver.received) == sorted(f"e{i}" for i in range(11))  # each once
    await service.stop()


async def test_a_receiver_that_hangs_on_one_event_holds_the_cursor_not_the_events_after_it(
    make_journal,
):
    """Parallel delivery reads on while one attempt waits for its answer: the events after
    it (more than a page) reach the receiver meanwhile, the cursor stays before the hung
    event (a crash then redelivers, never loses it), and once it is answered the cursor
    passes everything, each event delivered once. Before, a page waited for its slowest
    attempt, so nothing after the hung event moved until the attempt's timeout (30 s here)."""
    journal = await make_journal()
    receiver = Receiver()
    answer = asyncio.Event()

    async def hangs_on_e3(event: Event) -> DeliveryResult | None:
        if event.subject == "e3" and not answer.is_set():
            await answer.wait()
        return await receiver(event)

    service = DeliveryService(journal, "hub-a", lease_ttl=5, poll=0.05)
    spec = SubscriptionSpec(
        id="hang",
        patterns=("incident.>",),
        order=Order.PARALLEL,
        concurrency=2,  # a page is 16 events, the window 64
        **{**FAST, "timeout": 30.0},
    )
    await service.add(spec, hangs_on_e3)
    await publish(journal, service, events(40))
    others = {f"e{i}" for i in range(40)} - {"e3"}
    await receiver.wait_until(lambda: set(receiver.received) == others, timeout=5)
    hung_seq = next(
        s.seq for s in (await journal.query(EventQuery(limit=40))).events if s.event.subject == "e3"
    )
    assert (await journal.subscription("hang")).cursor < hung_seq
    answer.set()
    await cursor_passes_the_end(journal, "hang", "the cursor past every event once e3 was answered")
    assert sorted(receiver.received) == sorted(f"e{i}" for i in range(40))  # each once
    await service.stop()


async def test_a_stop_that_must_cancel_a_hung_delivery_still_gives_the_lease_up(
    make_journal, monkeypatch
):
    """A hub stopping while its target hangs (within the delivery's 30 s timeout) cancels
    that delivery after STOP_TIMEOUT_S; it gives its lease up all the same, so the next
    process delivers at once, not after the lease's TTL (30 s: waiting it out would fail)."""
    monkeypatch.setattr(delivery_module, "STOP_TIMEOUT_S", 0.2)
    journal = await make_journal()
    spec = SubscriptionSpec(id="hung", patterns=("incident.>",), **{**FAST, "timeout": 30.0})
    hung = asyncio.Event()

    async def hanging(event: Event) -> None:
        hung.set()
        await asyncio.Event().wait()  # a receiver that never answers

    a = DeliveryService(journal, "hub-a", lease_ttl=30, poll=0.05)
    await a.add(spec, hanging)
    await publish(journal, a, events(1))
    await asyncio.wait_for(hung.wait(), 10)
    async with asyncio.timeout(5):
        await a.stop()
    assert (await journal.subscription("hung")).lease_owner is None
    receiver = Receiver()
    b = DeliveryService(journal, "hub-b", lease_ttl=30, poll=0.05)
    await b.add(spec, receiver)
    await receiver.wait_until(lambda: receiver.received == ["e0"], timeout=5)
    await b.stop()


async def test_a_target_that_is_not_ready_is_not_charged_attempts(make_journal):
    journal = await make_journal()
    receiver = Receiver()
    receiver.not_ready = True
    service = DeliveryService(journal, "hub-a", lease_ttl=5, poll=0.05)
    dispatcher = await service.add(
        SubscriptionSpec(id="nr", patterns=("incident.>",), max_attempts=1, **FAST), receiver
    )
    await publish(journal, service, events(2))
    await asyncio.sleep(0.2)  # time passes while the target is not ready; nothing may die
    assert dispatcher.stats.failed_attempts == 0 and await journal.issues("nr") == []
    receiver.not_ready = False
    service.notify()
    await receiver.wait_until(lambda: len(receiver.received) == 2)
    await service.stop()


@pytest.mark.parametrize("order", [Order.ORDERED, Order.PARALLEL])
async def test_filters_by_pattern_and_municipality(make_journal, order):
    journal = await make_journal()
    receiver = Receiver()
    service = DeliveryService(journal, "hub-a", lease_ttl=5, poll=0.05)
    spec = SubscriptionSpec(
        id="sochi", patterns=("incident.*",), municipalities=("sochi",), order=order, **FAST
    )
    await service.add(spec, receiver)
    batch = [
        Event(type="incident.created", source="/t", subject="yes-1", municipality="sochi"),
        Event(type="incident.created", source="/t", subject="no-muni", municipality="krasnodar"),
        Event(type="alert.issued", source="/t", subject="no-type", municipality="sochi"),
        Event(type="incident.closed", source="/t", subject="yes-2", municipality="sochi"),
    ]
    await publish(journal, service, batch)
    await receiver.wait_until(lambda: len(receiver.received) == 2)
    assert sorted(receiver.received) == ["yes-1", "yes-2"]
    await service.stop()
