"""How an incident is being handled against its norm: the record the duty service keeps per
incident (journal collection ``incident_handling``) and the events it publishes."""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

COLLECTION = "incident_handling"
SOURCE = "/nabat/duty"

OPENED = "duty.incident.opened"
"""A norm applies to a new incident: its clocks run."""
ACKNOWLEDGED = "duty.incident.acknowledged"
DISPATCHED = "duty.incident.dispatched"
REPORTED = "duty.incident.reported"
TICKED = "duty.checklist.ticked"
MISSED = "duty.norm.missed"
ESCALATED = "duty.escalation.notified"
ESCALATION_STOPPED = "duty.escalation.stopped"


class ClockName(enum.StrEnum):
    ACKNOWLEDGE = "acknowledge"
    """A person in the ЕДДС takes the incident."""
    DISPATCH = "dispatch"
    """It is passed to the services (ДДС 01–04)."""
    REPORT = "report"
    """The first report on it goes out."""


class Clock(msgspec.Struct, kw_only=True):
    """One norm's clock: due by ``due``; stopped when done, marked when missed."""

    name: ClockName
    due: datetime
    done_at: datetime | None = None
    done_by: str | None = None
    detail: str = ""
    """What was done (the services it was passed to, the report's text)."""
    missed_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.done_at is None


class Step(msgspec.Struct, kw_only=True):
    """An SOP checklist step and who ticked it when."""

    text: str
    done_at: datetime | None = None
    done_by: str | None = None


class Notified(msgspec.Struct, kw_only=True):
    """An escalation step taken: who was told, through which notifier, and the request."""

    step: int
    name: str
    at: datetime
    notifier: str
    recipients: list[str]
    request: str


class Escalation(msgspec.Struct, kw_only=True):
    """Up the chain, step after step, until someone acknowledges."""

    chain: str
    reason: ClockName
    """The clock whose miss started it."""
    started_at: datetime
    next_step: int = 0
    next_at: datetime | None = None
    """When the next step is due; None when the chain is done or stopped."""
    notified: list[Notified] = []
    stopped_at: datetime | None = None
    stopped_by: str | None = None


class Handling(msgspec.Struct, kw_only=True):
    """An incident's handling: its norm's clocks, its checklist, its escalation."""

    incident: str
    norm: str
    municipality: str | None = None
    title: str | None = None
    opened_at: datetime
    clocks: list[Clock]
    checklist: list[Step] = []
    escalations: list[Escalation] = []
    closed_at: datetime | None = None
    version: int = 1

    def clock(self, name: ClockName) -> Clock | None:
        return next((c for c in self.clocks if c.name is name), None)

    @property
    def escalation(self) -> Escalation | None:
        """The escalation under way, if any."""
        last = self.escalations[-1] if self.escalations else None
        return last if last is not None and last.stopped_at is None else None
