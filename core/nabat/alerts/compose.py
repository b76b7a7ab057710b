"""Building the CAP-shaped :class:`~nabat.interfaces.Alert` the hub issues itself (from the
API's JSON, from rules, for readiness checks): one ``info``, one area, sent now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..interfaces.alerting import (
    Alert,
    Area,
    Certainty,
    Geocode,
    Info,
    MsgType,
    Severity,
    Status,
    Urgency,
)
from .area import MUNICIPALITY_GEOCODE

__all__ = ["municipality_area", "new_alert"]


def municipality_area(municipalities: Sequence[str], description: str = "") -> Area:
    """The area of these municipalities (geocodes ``municipality`` = slug)."""
    return Area(
        area_desc=description or ", ".join(municipalities) or "area",
        geocode=[Geocode(value_name=MUNICIPALITY_GEOCODE, value=m) for m in municipalities],
    )


def new_alert(
    *,
    identifier: str,
    sender: str,
    status: Status,
    event: str,
    area: Area,
    urgency: Urgency = Urgency.IMMEDIATE,
    severity: Severity = Severity.SEVERE,
    certainty: Certainty = Certainty.OBSERVED,
    incidents: str | None = None,
    **info: Any,
) -> Alert:
    """An ``Alert`` message sent now (whole seconds, as CAP writes them); ``info`` holds the
    other :class:`~nabat.interfaces.alerting.Info` fields (headline, description…)."""
    return Alert(
        identifier=identifier,
        sender=sender,
        sent=datetime.now(UTC).replace(microsecond=0),
        status=status,
        msg_type=MsgType.ALERT,
        incidents=incidents,
        info=[
            Info(
                event=event,
                urgency=urgency,
                severity=severity,
                certainty=certainty,
                area=[area],
                **info,
            )
        ],
    )
