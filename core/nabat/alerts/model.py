"""The stored state of an alert and of each device it was sent to."""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from ..interfaces.alerting import Alert, WarningMessage

__all__ = ["AlertPhase", "AlertRecord", "DeviceOutcome", "DeviceResult", "SiteResult", "SiteState"]


class AlertPhase(enum.StrEnum):
    PENDING_CONFIRMATION = "pending_confirmation"  # two-person rule: waiting for a second user
    ACTIVATING = "activating"
    COMPLETED = "completed"  # every device answered (or gave up)
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # not confirmed in time
    REJECTED = "rejected"  # the second user refused


class DeviceOutcome(enum.StrEnum):
    PENDING = "pending"
    ACTIVATED = "activated"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    CANCELLED = "cancelled"


class DeviceResult(msgspec.Struct, kw_only=True):
    device: str
    name: str = ""
    municipality: str | None = None
    outcome: DeviceOutcome = DeviceOutcome.PENDING
    attempts: int = 0
    detail: str = ""
    at: datetime | None = None
    """When the outcome was reached."""


class SiteState(enum.StrEnum):
    """Where an alert stands at one remote site (``docs/federation.md``)."""

    UNSENT = "unsent"  # the region's NATS did not take the command yet: retried
    QUEUED = "queued"  # in the site's command stream; the site has not answered (cut off?)
    ACCEPTED = "accepted"  # the site took it: its devices' outcomes follow
    COMPLETED = "completed"  # every device of the site answered
    EXPIRED = "expired"  # not delivered (or not acted on) by its deadline: never sounded
    REFUSED = "refused"  # the site refused it (detail says why)
    CANCELLED = "cancelled"  # cancelled at the region before the site took it


class SiteResult(msgspec.Struct, kw_only=True):
    """An alert at one remote site: the command sent, the site's answer, its devices."""

    alert: str
    site: str
    command: str
    """The command's id."""
    state: SiteState
    deadline: datetime
    """Past it, the site does not act on the command: it expires instead."""
    created: datetime
    sent_at: datetime | None = None
    answered_at: datetime | None = None
    reachable: bool | None = None
    """Whether the site answered the region's last link check when the command was sent."""
    detail: str = ""
    devices: list[DeviceResult] = []
    """The site's devices, as its ``alert.device.*`` events tell."""
    cancel: str | None = None
    """The id of the cancel command sent after it, if any."""


class AlertRecord(msgspec.Struct, kw_only=True):
    id: str
    """The CAP identifier."""
    phase: AlertPhase
    alert: Alert
    message: WarningMessage
    created: datetime
    created_by: str
    """Who issued it: ``token:<id>`` (name), ``cli:<user>``…"""
    confirmed_by: str | None = None
    confirm_by: datetime | None = None
    """Two-person rule: the deadline for a second user's confirmation."""
    cancelled_by: str | None = None
    updated_by: str | None = None
    """The id of the alert that updated this one (CAP ``Update``)."""
    devices: list[DeviceResult] = []
    finished: datetime | None = None
    sites: dict[str, list[str]] = {}
    """Remote sites the alert was sent to (the region), each with the municipalities it
    covers there (the caller's reach)."""
    remote: list[SiteResult] = []
    """Each remote site's result: filled when the record is read, not stored with it."""

    def counts(self) -> dict[str, int]:
        out = {o.value: 0 for o in DeviceOutcome}
        for d in self.devices:
            out[d.outcome.value] += 1
        return out
