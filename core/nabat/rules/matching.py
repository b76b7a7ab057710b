"""Matching events against ``[[rules]]``: pure functions, no side effects.

:func:`matches` decides whether an event satisfies a rule's ``when``; :func:`describe` says what
an action would do (``nabat rules test``); :func:`render` fills an action's text from the event;
:func:`stable_id` derives an action's idempotency key from the rule and the event, so a
redelivered event repeats nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from ..events import Event
from ..notifications.model import NOTIFICATION_SOURCE
from ..subjects import matches as subject_matches
from .model import Action, Condition, Rule

__all__ = [
    "RULE_SOURCE",
    "Planned",
    "describe",
    "matches",
    "render",
    "stable_id",
    "template_fields",
]

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
    # Rules' own events, and the notifications they asked for, match only rules that say so:
    # a rule notifying on notification.* would otherwise feed itself.
    if event.source.startswith((RULE_SOURCE, NOTIFICATION_SOURCE)) and not rule.from_rules:
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


def template_fields(event: Event) -> dict[str, str]:
    """An event's fields for a catalog template: ``type``, ``municipality``, ``subject``,
    ``time`` and the top-level scalar ``data`` fields, all as text."""
    fields = {
        "type": event.type,
        "municipality": event.municipality or "",
        "subject": event.subject or "",
        "time": event.time.isoformat(timespec="seconds"),
    }
    data = msgspec.to_builtins(event.data) if event.data is not None else {}
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and isinstance(value, str | int | float | bool):
                fields.setdefault(key, str(value))
    return fields


def stable_id(rule: str, event: Event, index: int) -> str:
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"nabat-rule:{rule}:{event.source}:{event.id}:{index}")
    )


def describe(rule: Rule, action: Action, event: Event) -> Planned:
    """What ``action`` of ``rule`` would do for ``event``."""
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
