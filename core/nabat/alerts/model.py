"""The stored state of an alert and of each device it was sent to."""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from ..interfaces.alerting import Alert, WarningMessage

__all__ = ["AlertPhase", "AlertRecord", "DeviceOutcome", "DeviceResult"]


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

    def counts(self) -> dict[str, int]:
        out = {o.value: 0 for o in DeviceOutcome}
        for d in self.devices:
            out[d.outcome.value] += 1
        return out
