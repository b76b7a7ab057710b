"""The rules engine: match events against ``[[rules]]`` and carry out their actions.

Rules run on a **durable** journal subscription (``rules``): every matching event is handled
at least once, after a restart too, and an action that fails for a moment (a notifier that is
down) is retried with backoff. So every action is idempotent: an alert's identifier and an
incident's id are derived from the rule and the event, a notification's id too.

Loop protection: events produced by rules (source ``/nabat/rules/<name>``) match no rule
unless it says ``from_rules = true``, and a rule that fired for a municipality waits
``cooldown`` seconds before it fires for it again.

:mod:`.matching` holds the pure part (``nabat rules test`` uses only it), :mod:`.actions` what
runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..delivery import DeliveryService
from ..events import Event, site_of
from ..interfaces import DeliveryResult
from ..logs import get_logger
from ..store.delivery import Order, SubscriptionSpec
from .matching import Planned, describe, matches
from .model import Rule

if TYPE_CHECKING:
    from .actions import RuleActions

__all__ = ["Planned", "RuleEngine", "matches"]

log = get_logger("nabat.rules")


class RuleEngine:
    def __init__(self, rules: Sequence[Rule], actions: RuleActions | None = None) -> None:
        """``actions`` None: the engine only plans (``nabat rules test``)."""
        self.rules = list(rules)
        self.actions = actions
        self._fired: dict[tuple[str, str], float] = {}
        self.fired = 0

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(sorted({p for r in self.rules if r.enabled for p in r.when.type}))

    def matching(self, event: Event) -> list[Rule]:
        return [rule for rule in self.rules if matches(rule, event)]

    def plan(self, event: Event) -> list[Planned]:
        """What the rules would do for ``event`` (no side effects; cooldowns ignored)."""
        return [
            describe(rule, action, event) for rule in self.matching(event) for action in rule.then
        ]

    async def subscribe(self, delivery: DeliveryService) -> None:
        """Run on a durable subscription: every matching event at least once, after a restart
        too; a failing action is retried with backoff."""
        if not self.patterns:
            return
        spec = SubscriptionSpec(
            id="rules",
            patterns=self.patterns,
            order=Order.ORDERED,
            max_attempts=20,
            max_age=3600.0,
            timeout=60.0,
        )
        await delivery.add(spec, self.handle)
        log.info("rules.subscribed", rules=len(self.rules), patterns=list(spec.patterns))

    async def handle(self, event: Event) -> DeliveryResult | None:
        """The durable subscription's target: run every matching rule's actions."""
        if self.actions is None:
            raise RuntimeError("this rule engine only plans")
        if site_of(event) is not None:
            return None  # another site's event: that site's rules acted on it
        for rule in self.matching(event):
            key = (rule.name, event.municipality or "")
            last = self._fired.get(key)
            now = time.monotonic()
            if last is not None and now - last < rule.cooldown:
                log.info("rule.cooldown", rule=rule.name, event=event.id, type=event.type)
                continue
            for index, action in enumerate(rule.then):
                await self.actions.run(rule, index, action, event)
            self._fired[key] = now
            self.fired += 1
            log.info(
                "rule.fired",
                rule=rule.name,
                event=event.id,
                type=event.type,
                actions=len(rule.then),
            )
        return None
