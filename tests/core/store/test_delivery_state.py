"""The durable-delivery state contract: subscriptions, leases, fenced cursors, retry and dead
rows — one suite for every journal implementation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from nabat.events import Event
from nabat.store.delivery import IssueState, Order, SubscriptionSpec


def spec(**over) -> SubscriptionSpec:
    fields = dict(id="webhook:police-02", patterns=("incident.>",), order=Order.ORDERED)
    fields.update(over)
    return SubscriptionSpec(**fields)


async def test_a_new_subscription_starts_at_the_end_or_the_beginning(make_journal):
    journal = await make_journal()
    seqs = await journal.append([Event(type="incident.created", source="/t") for _ in range(3)])
    live = await journal.save_subscription(spec())
    assert live.cursor == seqs[-1]
    replay = await journal.save_subscription(spec(id="replay", start_at_beginning=True))
    assert replay.cursor == 0
    # Saving again updates the spec and keeps the cursor.
    changed = await journal.save_subscription(spec(patterns=("incident.>", "alert.>")))
    assert changed.cursor == seqs[-1] and changed.spec.patterns == ("incident.>", "alert.>")
    assert [s.spec.id for s in await journal.subscriptions()] == ["replay", "webhook:police-02"]
    assert (await journal.subscription("replay")).spec.start_at_beginning
    assert await journal.subscription("nope") is None


async def test_leases_are_exclusive_until_they_expire(make_journal):
    journal = await make_journal()
    await journal.save_subscription(spec())
    assert await journal.acquire_lease("webhook:police-02", "hub-a", ttl=0.3)
    assert await journal.acquire_lease("webhook:police-02", "hub-a", ttl=0.3)  # renewal
    assert not await journal.acquire_lease("webhook:police-02", "hub-b", ttl=0.3)
    await asyncio.sleep(0.4)  # let the lease run out: the behaviour under test is expiry
    assert await journal.acquire_lease("webhook:police-02", "hub-b", ttl=5)
    state = await journal.subscription("webhook:police-02")
    assert state.lease_owner == "hub-b" and state.lease_until > datetime.now(UTC)
    await journal.release_lease("webhook:police-02", "hub-a")  # not the owner: no effect
    assert (await journal.subscription("webhook:police-02")).lease_owner == "hub-b"
    await journal.release_lease("webhook:police-02", "hub-b")
    assert await journal.acquire_lease("webhook:police-02", "hub-a", ttl=5)


async def test_cursor_moves_only_forward_and_only_for_the_lease_holder(make_journal):
    journal = await make_journal()
    await journal.save_subscription(spec(start_at_beginning=True))
    assert not await journal.advance_cursor("webhook:police-02", "hub-a", 5)  # no lease
    assert await journal.acquire_lease("webhook:police-02", "hub-a", ttl=5)
    assert await journal.advance_cursor("webhook:police-02", "hub-a", 5)
    assert await journal.advance_cursor("webhook:police-02", "hub-a", 3)  # ignored, not back
    assert (await journal.subscription("webhook:police-02")).cursor == 5
    assert not await journal.advance_cursor("webhook:police-02", "hub-b", 9)
    assert (await journal.subscription("webhook:police-02")).cursor == 5


async def test_failures_count_up_then_die_and_can_be_revived_or_discarded(make_journal):
    journal = await make_journal()
    await journal.save_subscription(spec())
    soon = datetime.now(UTC) + timedelta(seconds=30)
    first = await journal.record_failure("webhook:police-02", 7, "ev-7", "HTTP 503", soon, False)
    assert (first.attempts, first.state, first.last_error) == (1, IssueState.RETRY, "HTTP 503")
    second = await journal.record_failure("webhook:police-02", 7, "ev-7", "timeout", soon, False)
    assert second.attempts == 2 and second.first_failed_at == first.first_failed_at
    await journal.record_failure("webhook:police-02", 9, "ev-9", "HTTP 500", soon, False)
    dead = await journal.record_failure("webhook:police-02", 7, "ev-7", "HTTP 410", None, True)
    assert dead.state == IssueState.DEAD and dead.attempts == 3 and dead.next_attempt_at is None

    assert [i.seq for i in await journal.issues("webhook:police-02", IssueState.DEAD)] == [7]
    assert [i.seq for i in await journal.issues(state=IssueState.RETRY)] == [9]
    assert await journal.issues("webhook:police-02", due_before=datetime.now(UTC)) == []
    due = await journal.issues(due_before=soon + timedelta(seconds=1))
    assert [i.seq for i in due] == [9]

    assert await journal.revive_dead("webhook:police-02", [7]) == 1
    revived = (await journal.issues("webhook:police-02", due_before=datetime.now(UTC)))[0]
    assert (revived.seq, revived.state, revived.attempts) == (7, IssueState.RETRY, 0)
    await journal.clear_failure("webhook:police-02", 7)
    await journal.record_failure("webhook:police-02", 11, "ev-11", "HTTP 400", None, True)
    await journal.record_failure("webhook:police-02", 12, "ev-12", "HTTP 400", None, True)
    assert await journal.discard_dead("webhook:police-02") == 2
    assert [i.seq for i in await journal.issues("webhook:police-02")] == [9]


async def test_deleting_a_subscription_removes_its_rows(make_journal):
    journal = await make_journal()
    await journal.save_subscription(spec())
    await journal.record_failure("webhook:police-02", 1, "e", "x", None, True)
    assert await journal.delete_subscription("webhook:police-02")
    assert await journal.issues("webhook:police-02") == []
    assert not await journal.delete_subscription("webhook:police-02")


async def test_events_at_returns_the_requested_events(make_journal):
    journal = await make_journal()
    seqs = await journal.append([Event(type="a.b", source="/t", subject=str(n)) for n in range(5)])
    found = await journal.events_at([seqs[3], seqs[1], 999_999])
    assert [s.event.subject for s in found] == ["1", "3"]


def test_specs_are_validated():
    with pytest.raises(ValueError):
        SubscriptionSpec(id="x", patterns=())
    with pytest.raises(ValueError):
        SubscriptionSpec(id="x", patterns=("a..b",))
