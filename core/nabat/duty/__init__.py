"""The duty shift's side of incidents: handling norms with their clocks, SOP checklists and
escalation through notifiers (docs/duty.md)."""

from .model import (
    ACKNOWLEDGED,
    COLLECTION,
    DISPATCHED,
    ESCALATED,
    ESCALATION_STOPPED,
    MISSED,
    OPENED,
    REPORTED,
    SOURCE,
    TICKED,
    Clock,
    ClockName,
    Escalation,
    Handling,
    Notified,
    Step,
)
from .service import DutyError, DutyService, EditedNorms

__all__ = [
    "ACKNOWLEDGED",
    "COLLECTION",
    "DISPATCHED",
    "ESCALATED",
    "ESCALATION_STOPPED",
    "MISSED",
    "OPENED",
    "REPORTED",
    "SOURCE",
    "TICKED",
    "Clock",
    "ClockName",
    "DutyError",
    "DutyService",
    "EditedNorms",
    "Escalation",
    "Handling",
    "Notified",
    "Step",
]
