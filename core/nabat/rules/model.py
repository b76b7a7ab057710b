"""``[[rules]]`` in ``plugins.toml``: when an event matches, what to do.

```toml
[[rules]]
name = "flood-sirens"
when = { type = ["sensor.water.critical"], municipality = ["sochi", "tuapsinsky"],
         severity = ["severe", "extreme"], data = { level_cm = { gt = 300 } } }
then = [
  { alert = { status = "Actual", event = "Наводнение", text = "Внимание! Угроза наводнения." } },
  { notify = "duty-sms", text = "Уровень воды {data[level_cm]} см" },
  { incident = { title = "Подтопление" } },
  { forward = "police-02" },
  { record = { policy = "events", seconds = 300 } },
]
cooldown = 300
```
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from ..subjects import validate_pattern

__all__ = ["AlertAction", "Condition", "IncidentAction", "RecordAction", "Rule", "When"]

Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Text = Annotated[str, msgspec.Meta(max_length=2000)]


class Condition(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A test of one data field; every operator given must hold."""

    eq: Any = None
    ne: Any = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    one_of: list[Any] | None = msgspec.field(default=None, name="in")
    contains: str | None = None
    exists: bool | None = None


class When(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: list[str] = msgspec.field(default_factory=lambda: [">"])
    """NATS patterns on the event type."""
    municipality: list[str] = []
    """Any of these (empty: any, regional events included)."""
    severity: list[str] = []
    data: dict[str, Condition | str | int | float | bool] = {}
    """``field.path`` → a value (equal) or a condition."""

    def __post_init__(self) -> None:
        for pattern in self.type:
            validate_pattern(pattern)


class AlertAction(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    status: Literal["Actual", "Exercise", "Test"]
    event: Text
    municipalities: list[str] = []
    """Where (empty: the triggering event's municipality)."""
    text: Text | None = None
    signal_seconds: Annotated[int, msgspec.Meta(ge=0, le=180)] = 180
    headline: Text | None = None


class IncidentAction(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: Text
    severity: str | None = None


class RecordAction(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Record cameras around the event (``[[recording.policy]]`` of mode ``event``)."""

    policy: Name | None = None
    """The event policy (its pre-roll, post-roll, retention); None: the first one."""
    cameras: list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]] = []
    """Cameras to record; empty: the event's subject (a camera's own event)."""
    seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] | None = None
    """How long after the event (None: the policy's post-roll)."""


_KINDS = ("alert", "notify", "incident", "forward", "record")


class Action(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Exactly one of ``alert``, ``notify``, ``incident``, ``forward``, ``record``."""

    alert: AlertAction | None = None
    notify: Name | None = None
    """A Notifier instance id."""
    recipients: list[str] = []
    title: Text | None = None
    """The notification's title, with the same fields as ``text``."""
    text: Text | None = None
    """Text with ``{type}``, ``{municipality}``, ``{subject}``, ``{data[field]}`` fields."""
    template: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]+$")] | None = None
    """A message-catalog template (``notification.<template>``) rendered in the notifier's
    language with the event's fields, instead of ``title`` and ``text``."""
    incident: IncidentAction | None = None
    forward: Name | None = None
    """A Connector instance id: the event is handed to its ``handle``."""
    record: RecordAction | None = None

    def __post_init__(self) -> None:
        given = [k for k in _KINDS if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"an action is exactly one of {', '.join(_KINDS)}")

    @property
    def kind(self) -> str:
        return next(k for k in _KINDS if getattr(self, k))


class Rule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    when: When
    then: Annotated[list[Action], msgspec.Meta(min_length=1, max_length=20)]
    enabled: bool = True
    cooldown: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    """Seconds after firing for a municipality before the rule fires for it again."""
    from_rules: bool = False
    """Also match events that rules themselves produced (off: no rule loops)."""


_FIELD = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


def check_field(path: str) -> None:
    if not _FIELD.match(path):
        raise ValueError(f"data field {path!r}: dot-separated names")
