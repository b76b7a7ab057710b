"""The rules engine: match events against ``[[rules]]`` and carry out their actions.

Rules run on a **durable** journal subscription (``rules``): every matching event is handled
at least once, after a restart too, and an action that fails for a moment (a notifier that is
down) is retried with backoff. So every action is idempotent: an alert's identifier and an
incident's id are derived from the rule and the event, a notification's id too.

Loop protection: events produced by rules (source ``/nabat/rules/<name>``) match no rule
unless it says ``from_rules = true``, and a rule that fired for a municipality waits
``cooldown`` seconds before it fires for it again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ..events import Event, Severity
from ..interfaces import Connector, DeliveryResult, DeliveryStatus, Notification, Notifier
from ..logs import get_logger
from ..subjects import matches as subject_matches
from .model import Action, Condition, Rule

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["Planned", "RuleEngine", "matches"]

log = get_logger("nabat.rules")
RULE_SOURCE = "/nabat/rules/"
_MISSING = object()


def _field(data: Any, path: str) -> Any:
    value = data
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def _holds(value: Any, test: Condition | str | int | float | bool) -> bool:
    if not isinstance(test, Condition):
        return value is not _MISSING and value == test
    if test.exists is not None and (value is not _MISSING) != test.exists:
        return False
    if value is _MISSING:
        return test.exists is False
    checks = [
        (test.eq, lambda v: value == v),
        (test.ne, lambda v: value != v),
        (test.one_of, lambda v: value in v),
        (test.contains, lambda v: isinstance(value, str) and v.casefold() in value.casefold()),
    ]
    for expected, holds in checks:
        if expected is not None and not holds(expected):
            return False
    for bound, holds in (
        (test.gt, lambda b: value > b),
        (test.ge, lambda b: value >= b),
        (test.lt, lambda b: value < b),
        (test.le, lambda b: value <= b),
    ):
        if bound is not None:
            if not isinstance(value, int | float) or isinstance(value, bool) or not holds(bound):
                return False
    return True


def matches(rule: Rule, event: Event) -> bool:
    """Whether ``event`` satisfies the rule's ``when`` (cooldown aside)."""
    if not rule.enabled:
        return False
    if event.source.startswith(RULE_SOURCE) and not rule.from_rules:
        return False
    when = rule.when
    if not any(subject_matches(p, event.type) for p in when.type):
        return False
    if when.municipality and event.municipality not in when.municipality:
        return False
    if when.severity and (event.severity or "") not in when.severity:
        return False
    if not when.data:
        return True
    data = event.data if isinstance(event.data, dict | None) else msgspec.to_builtins(event.data)
    return all(_holds(_field(data, path), test) for path, test in when.data.items())


@dataclass(frozen=True)
class Planned:
    rule: str
    action: str
    target: str
    detail: str


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(text: str | None, event: Event, default: str) -> str:
    if not text:
        return default
    data = msgspec.to_builtins(event.data) if event.data is not None else {}
    fields = _Fields(
        type=event.type,
        municipality=event.municipality or "",
        subject=event.subject or "",
        source=event.source,
        data=data if isinstance(data, dict) else {},
    )
    try:
        return text.format_map(fields)
    except (KeyError, IndexError, ValueError, AttributeError):
        return text  # a template that does not fit this event: the text as written


def _stable_id(rule: str, event: Event, index: int) -> str:
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"nabat-rule:{rule}:{event.source}:{event.id}:{index}")
    )


class RuleEngine:
    def __init__(self, hub: Hub | None, rules: Sequence[Rule]) -> None:
        self.hub = hub
        self.rules = list(rules)
        self._fired: dict[tuple[str, str], float] = {}
        self.fired = 0

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(sorted({p for r in self.rules if r.enabled for p in r.when.type}))

    def matching(self, event: Event) -> list[Rule]:
        return [rule for rule in self.rules if matches(rule, event)]

    def plan(self, event: Event) -> list[Planned]:
        """What the rules would do for ``event`` (no side effects; cooldowns ignored)."""
        out = []
        for rule in self.matching(event):
            for action in rule.then:
                out.append(self._describe(rule, action, event))
        return out

    def _describe(self, rule: Rule, action: Action, event: Event) -> Planned:
        kind = action.kind
        if action.alert is not None:
            where = action.alert.municipalities or [event.municipality or "?"]
            target = ",".join(where)
            detail = f"{action.alert.status} alert «{action.alert.event}»"
        elif action.notify is not None:
            target = action.notify
            detail = render(action.text, event, f"{event.type} {event.subject or ''}".strip())
        elif action.incident is not None:
            target = event.municipality or "region"
            detail = f"incident «{render(action.incident.title, event, action.incident.title)}»"
        else:
            target = action.forward or ""
            detail = f"hand {event.type} to the connector"
        return Planned(rule=rule.name, action=kind, target=target, detail=detail)

    # -- running -----------------------------------------------------------------------------
    async def handle(self, event: Event) -> DeliveryResult | None:
        """The durable subscription's target: run every matching rule's actions."""
        for rule in self.matching(event):
            key = (rule.name, event.municipality or "")
            last = self._fired.get(key)
            now = time.monotonic()
            if last is not None and now - last < rule.cooldown:
                log.info("rule.cooldown", rule=rule.name, event=event.id, type=event.type)
                continue
            for index, action in enumerate(rule.then):
                await self._run(rule, index, action, event)
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

    async def _run(self, rule: Rule, index: int, action: Action, event: Event) -> None:
        hub = self.hub
        assert hub is not None
        source = f"{RULE_SOURCE}{rule.name}"
        correlation = event.correlationid or event.id
        if action.alert is not None:
            await self._alert(rule, index, action, event)
        elif action.notify is not None:
            driver = hub.instance(action.notify)
            if not isinstance(driver, Notifier):
                raise TypeError(f"rule {rule.name}: {action.notify} is not a notifier")
            result = await driver.send(
                Notification(
                    id=_stable_id(rule.name, event, index),
                    recipients=list(action.recipients),
                    title=f"{rule.name}: {event.type}",
                    body=render(action.text, event, f"{event.type} {event.subject or ''}".strip()),
                    severity=event.severity or Severity.INFO,
                    event=event,
                )
            )
            if result.status is DeliveryStatus.RETRY:
                from ..interfaces import TransientError

                raise TransientError(f"notifier {action.notify}: {result.detail or 'retry'}")
        elif action.incident is not None:
            incident_id = _stable_id(rule.name, event, index)
            await hub.publish_many(
                [
                    Event(
                        id=incident_id,
                        type="incident.created",
                        source=source,
                        subject=incident_id,
                        municipality=event.municipality,
                        correlationid=correlation,
                        severity=action.incident.severity or event.severity or Severity.MODERATE,
                        data={
                            "title": render(action.incident.title, event, action.incident.title),
                            "cause": {"id": event.id, "type": event.type, "source": event.source},
                            "rule": rule.name,
                            "origin": f"rule:{rule.name}",
                        },
                    )
                ]
            )
        elif action.forward is not None:
            driver = hub.instance(action.forward)
            if not isinstance(driver, Connector):
                raise TypeError(f"rule {rule.name}: {action.forward} is not a connector")
            await driver.handle(event)

    async def _alert(self, rule: Rule, index: int, action: Action, event: Event) -> None:
        from ..alerts import AlertError
        from ..alerts.compose import municipality_area, new_alert
        from ..interfaces.alerting import (
            Status,
            WarningMessage,
        )

        hub = self.hub
        assert hub is not None and action.alert is not None
        spec = action.alert
        where = spec.municipalities or ([event.municipality] if event.municipality else [])
        if not where:
            log.warning("rule.alert_without_area", rule=rule.name, event=event.id)
            return
        alert = new_alert(
            identifier=f"rule-{rule.name}-{_stable_id(rule.name, event, index)[:18]}",
            sender=hub.alerts.sender,
            status=Status(spec.status),
            event=spec.event,
            area=municipality_area(where),
            incidents=event.correlationid or event.id,
            headline=spec.headline,
            description=render(spec.text, event, spec.event),
        )
        message = WarningMessage(
            signal_seconds=spec.signal_seconds, text=render(spec.text, event, spec.event)
        )
        try:
            await hub.alerts.issue(alert, message, by=f"rule:{rule.name}")
        except AlertError as exc:
            if exc.status == 409:
                return  # issued already for this event (a redelivery)
            log.warning("rule.alert_refused", rule=rule.name, event=event.id, reason=str(exc))
