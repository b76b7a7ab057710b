"""Incidents: what ``incident.created``, ``incident.updated`` and ``incident.closed`` carry.

An incident is something responders act on — an accident, a fire, a crime — reported by 112, a
rule, a connector or an operator. The event's ``subject`` is the hub's incident id (stable
across updates) and its ``correlationid`` ties the alerts, camera snapshots and forwards of the
incident together. Every field is optional: a first report may know only a caller and an
address; updates carry the whole incident as known then, not a difference.

Emergency services are named by their Russian short numbers: ``01`` fire and rescue, ``02``
police, ``03`` ambulance, ``04`` gas emergency service.
"""

from __future__ import annotations

import enum
import math
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import msgspec

if TYPE_CHECKING:
    from ..events import Event

__all__ = [
    "MAX_VICTIMS",
    "SERVICES",
    "GeoPoint",
    "Incident",
    "IncidentChange",
    "IncidentRecord",
    "IncidentStatus",
    "Incidents",
    "LinkedCamera",
    "incident_of",
]

MAX_VICTIMS = 1000
"""Most victims an incident can name (EIDO carries each as a person)."""

SERVICES: dict[str, str] = {
    "01": "fire and rescue",
    "02": "police",
    "03": "ambulance",
    "04": "gas emergency service",
}


class IncidentStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class GeoPoint(msgspec.Struct, frozen=True):
    """WGS 84 decimal degrees."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat) and -90 <= self.lat <= 90):
            raise ValueError(f"lat {self.lat} is not a latitude (-90…90)")
        if not (math.isfinite(self.lon) and -180 <= self.lon <= 180):
            raise ValueError(f"lon {self.lon} is not a longitude (-180…180)")


class LinkedCamera(msgspec.Struct, frozen=True, kw_only=True):
    """A camera near the incident, linked by the hub with the snapshot it took then."""

    id: str
    distance_m: float
    name: str | None = None
    health: str | None = None
    """The camera's health when it was linked (``ok``, ``offline``…)."""
    snapshot: str | None = None
    """API path of the snapshot kept with the incident; None when none could be taken."""
    snapshot_at: datetime | None = None
    snapshot_error: str | None = None


class Incident(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The payload of ``incident.*`` events."""

    status: IncidentStatus = IncidentStatus.OPEN
    title: str | None = None
    type: str | None = None
    """What happened, as the reporting system names it (``traffic_accident``, ``ДТП``)."""
    description: str | None = None
    reported_at: datetime | None = None
    """When the incident was reported (the 112 call's start)."""
    updated_at: datetime | None = None
    """When the reporting system last changed it: a report older than the one known (a
    retried delivery overtaken by a newer one) is ignored."""
    caller: str | None = None
    """The caller's number: personal data, shown only to those who may read the events."""
    address: str | None = None
    location: GeoPoint | None = None
    victims: Annotated[int, msgspec.Meta(ge=0, le=MAX_VICTIMS)] | None = None
    services: list[str] = []
    """``01``–``04``: the services involved."""
    origin: str | None = None
    """Who reported it: a connector instance (``system112``), ``rule:<name>``, ``api``."""
    external_id: str | None = None
    """The incident's id in the originating system (the 112 card number, the EIDO ``$id``)."""
    cameras: list[LinkedCamera] = []
    cause: dict[str, Any] | None = None
    """The event that made a rule open this incident (``id``, ``type``, ``source``)."""
    rule: str | None = None


def incident_of(event: Event) -> Incident:
    """The incident an ``incident.*`` event carries, typed or as JSON from the journal; an
    ``incident.closed`` event's incident is closed whatever its data says. ValueError (with
    msgspec's reason) when the data is not an incident."""
    data = event.data
    try:
        incident = (
            data
            if isinstance(data, Incident)
            else msgspec.convert(msgspec.to_builtins(data) if data is not None else {}, Incident)
        )
    except (msgspec.ValidationError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    if event.type == "incident.closed" and incident.status is not IncidentStatus.CLOSED:
        incident = msgspec.structs.replace(incident, status=IncidentStatus.CLOSED)
    return incident


class IncidentChange(enum.StrEnum):
    """What a report did to the incident: the ``incident.<change>`` event it published."""

    CREATED = "created"
    UPDATED = "updated"
    CLOSED = "closed"
    UNCHANGED = "unchanged"  # the same as known: nothing published
    STALE = "stale"  # older than the version known (its ``updated_at``): ignored


class IncidentRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An incident as the hub keeps it: the latest report and when it changed."""

    id: str
    incident: Incident
    municipality: str | None = None
    severity: str | None = None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    version: int = 1
    """Raised by every published change (created is 1)."""
    last_event: str | None = None
    """Id of the event that published this version."""
    site: str | None = None
    """At the region: the site whose hub keeps this incident (its id is ``<site>:<id>``)."""


class Incidents(Protocol):
    """The hub's incident records, as plugins see them (``hub.incidents``)."""

    async def report(
        self,
        incident_id: str,
        incident: Incident,
        *,
        source: str,
        municipality: str | None = None,
        severity: Any = None,
        correlationid: str | None = None,
    ) -> tuple[IncidentChange, IncidentRecord]:
        """Record the incident as now known (the whole of it, not a difference) under a stable
        id and publish ``incident.created|updated|closed``, or nothing when unchanged. Links
        the nearest cameras when it has a location. ``source``: the reporter's event source
        (a connector's ``context.source``, so its own incidents are not sent back to it)."""

    async def get(self, incident_id: str) -> IncidentRecord | None:
        """The incident's record, or None."""
