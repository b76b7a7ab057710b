"""Shapes of durable delivery state, kept in the journal's database.

A durable subscription reads the journal with a cursor. Everything at or below its ``cursor``
has been delivered, dead-lettered or parked for retry; a crash before the cursor moves means
redelivery, never loss (at-least-once, the event id being the idempotency key).

Only one hub process delivers a subscription at a time: it holds the subscription's *lease*
(owner + expiry), renews it while it works, and every cursor move is fenced by it. A process
that dies stops renewing, and another takes the subscription over when the lease expires.
Events that failed are parked as ``retry`` rows with their next attempt time; after
``max_attempts`` failures or ``max_age`` seconds since the first one they become ``dead``
letters that an operator can list, retry or discard.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import msgspec

from ..subjects import validate_pattern

__all__ = ["DeliveryIssue", "IssueState", "Order", "SubscriptionSpec", "SubscriptionState"]


class Order(enum.StrEnum):
    ORDERED = "ordered"
    """One event at a time, in journal order; a failing event holds back the ones after it
    until it is delivered or dead-lettered."""
    PARALLEL = "parallel"
    """Up to ``concurrency`` at a time; a failing event is retried beside newer ones."""


class SubscriptionSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a durable subscription receives and how hard the hub tries."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    patterns: tuple[str, ...]
    municipalities: tuple[str, ...] = ()
    order: Order = Order.ORDERED
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 4
    """Deliveries in flight at once (parallel only; ordered is always 1)."""
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] | None = 20
    max_age: Annotated[float, msgspec.Meta(gt=0)] | None = 86_400.0
    """Seconds after the first failure at which an event is dead-lettered."""
    backoff_initial: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    backoff_max: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Limit on one delivery attempt."""
    start_at_beginning: bool = False
    """A new subscription starts at the journal's end (False) or replays everything (True)."""

    def __post_init__(self) -> None:
        if not self.patterns:
            raise ValueError("a subscription needs at least one pattern")
        for pattern in self.patterns:
            validate_pattern(pattern)


class SubscriptionState(msgspec.Struct, frozen=True, kw_only=True):
    spec: SubscriptionSpec
    cursor: int
    lease_owner: str | None = None
    lease_until: datetime | None = None
    created_at: datetime


class IssueState(enum.StrEnum):
    RETRY = "retry"
    DEAD = "dead"


class DeliveryIssue(msgspec.Struct, frozen=True, kw_only=True):
    """An event a subscription could not deliver (yet)."""

    subscription: str
    seq: int
    event_id: str
    state: IssueState
    attempts: int
    first_failed_at: datetime
    next_attempt_at: datetime | None
    last_error: str
