"""The incident service: one record per incident, kept from its ``incident.*`` events.

Connectors (112, police) and the API **report** an incident — the whole of it as known now —
under a stable id; the service decides whether that created, updated or closed it (or changed
nothing: no event), publishes ``incident.<change>`` and keeps the record. Events published by
others (rules, ``POST /api/v1/events``) are **observed** through a durable subscription, so the
records hold every incident, after a restart too.

An incident with a location gets the nearest running-or-not cameras of the inventory (within
``[incidents] camera_radius``, at most ``cameras``) at once, in the first event, so a duty
operator sees which cameras look at the place without waiting; their snapshots are taken in the
background and published as an ``incident.updated`` a few seconds later. The snapshots are kept
with the incident (journal records), not fetched live: they show the scene as it was.

Records of closed incidents and their snapshots expire after ``retention_days``; the events stay
in the journal for as long as it keeps events.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from ..delivery import DeliveryService
from ..events import Event, Severity, site_of
from ..geo import distance_km
from ..interfaces import DeliveryResult, DeliveryStatus
from ..interfaces.incident import (
    GeoPoint,
    Incident,
    IncidentChange,
    IncidentRecord,
    IncidentStatus,
    LinkedCamera,
    incident_of,
)
from ..interfaces.payloads import UnitState
from ..logs import get_logger
from ..store.delivery import Order, SubscriptionSpec
from ..store.mutex import JournalMutex
from ..tasks import TaskSet

if TYPE_CHECKING:
    from ..cameras.snapshots import SnapshotService
    from ..cameras.states import CameraStates
    from ..config.model import IncidentSettings
    from ..instances import Instances
    from ..regions import Region
    from ..store import Journal
    from ..store.base import Record

__all__ = ["COLLECTION", "SNAPSHOTS", "SOURCE", "IncidentService"]

log = get_logger("nabat.incidents")

COLLECTION = "incidents"
SNAPSHOTS = "incident_snapshots"
SOURCE = "/nabat/incidents"
TYPES = tuple(f"incident.{c}" for c in ("created", "updated", "closed"))
_SAME_PLACE_M = 50.0
"""A location moved less than this keeps its linked cameras."""
SNAPSHOT_RETRIES = (16.0, 32.0)
"""Seconds before asking a failed camera again (longer than the snapshot cache remembers a
failure)."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(IncidentRecord)


def snapshot_path(incident_id: str, camera_id: str) -> str:
    """Where the API serves a snapshot kept with an incident."""
    return f"/api/v1/incidents/{incident_id}/cameras/{camera_id}/snapshot.jpg"


def _metres(a: GeoPoint, b: GeoPoint) -> float:
    return distance_km(a.lat, a.lon, b.lat, b.lon) * 1000.0


class IncidentService:
    def __init__(
        self,
        settings: IncidentSettings,
        *,
        region: Region,
        journal: Journal,
        publish: Callable[[Event], Awaitable[None]],
        instances: Instances,
        camera_states: CameraStates,
        snapshots: SnapshotService,
    ) -> None:
        self.settings = settings
        self.region = region
        self.journal = journal
        self.publish = publish
        self.instances = instances
        self.camera_states = camera_states
        self.snapshots = snapshots
        # One incident is changed by one report at a time, in every hub process on the
        # journal: two processes reading version n would each write n + 1 and lose a change.
        self._mutex = JournalMutex(journal, "incidents")
        self._tasks = TaskSet("incident-snapshots")

    # -- reading ---------------------------------------------------------------------------
    async def get(self, incident_id: str) -> IncidentRecord | None:
        stored = await self.journal.get_record(COLLECTION, incident_id)
        return _decoder.decode(stored.body) if stored is not None else None

    async def list(
        self,
        *,
        municipalities: Collection[str] | None = None,
        status: IncidentStatus | None = None,
        limit: int = 100,
    ) -> list[IncidentRecord]:
        """Incidents, the most recently changed first. ``municipalities`` None: all."""
        found: list[IncidentRecord] = []
        async for stored in self.journal.all_records(COLLECTION):
            record = _decoder.decode(stored.body)
            if municipalities is not None and record.municipality not in municipalities:
                continue
            if status is not None and record.incident.status is not status:
                continue
            found.append(record)
        found.sort(key=lambda r: (r.updated_at, r.id), reverse=True)
        return found[:limit]

    async def snapshot(self, incident_id: str, camera_id: str) -> Record | None:
        """The JPEG kept for a linked camera (``body``; taken at ``created``)."""
        return await self.journal.get_record(SNAPSHOTS, f"{incident_id}/{camera_id}")

    # -- reporting -------------------------------------------------------------------------
    def municipality_at(self, point: GeoPoint) -> str | None:
        return self.region.municipality_at(point.lat, point.lon)

    async def close_incident(
        self, incident_id: str, *, source: str
    ) -> tuple[IncidentChange, IncidentRecord] | None:
        """Close an incident as it stands (read and written under its lock); None when there
        is no such incident."""
        async with self._mutex.hold(incident_id):
            current = await self.get(incident_id)
            if current is None:
                return None
            closed = msgspec.structs.replace(current.incident, status=IncidentStatus.CLOSED)
            return await self._apply(
                incident_id,
                closed,
                current,
                source=source,
                municipality=current.municipality,
                severity=Severity(current.severity) if current.severity else None,
                correlationid=None,
            )

    async def report(
        self,
        incident_id: str,
        incident: Incident,
        *,
        source: str,
        municipality: str | None = None,
        severity: Severity | None = None,
        correlationid: str | None = None,
    ) -> tuple[IncidentChange, IncidentRecord]:
        """Record the incident as now known and publish what changed (``incident.created``,
        ``.updated``, ``.closed``); nothing when it is the same as known. ``source`` is the
        reporter's event source (a connector's own source: its incidents are not sent back to
        it). The municipality defaults to the one the location lies in."""
        async with self._mutex.hold(incident_id):
            current = await self.get(incident_id)
            return await self._apply(
                incident_id,
                incident,
                current,
                source=source,
                municipality=municipality,
                severity=severity,
                correlationid=correlationid,
            )

    async def _apply(
        self,
        incident_id: str,
        incident: Incident,
        current: IncidentRecord | None,
        *,
        source: str,
        municipality: str | None,
        severity: Severity | None,
        correlationid: str | None,
    ) -> tuple[IncidentChange, IncidentRecord]:
        if municipality is None and incident.location is not None:
            municipality = self.municipality_at(incident.location)
        if municipality is not None and municipality not in self.region:
            raise ValueError(f"unknown municipality {municipality!r} in this region")
        if current is not None:
            municipality = municipality or current.municipality
            severity = severity or (Severity(current.severity) if current.severity else None)
        known = current.incident.updated_at if current else None
        if known is not None and incident.updated_at is not None and incident.updated_at < known:
            return IncidentChange.STALE, current  # type: ignore[return-value]
        incident, fresh = self._with_cameras(incident, current)
        if current is None:
            change = IncidentChange.CREATED
        elif (
            current.incident == incident
            and current.municipality == municipality
            and current.severity == (severity.value if severity else None)
        ):
            return IncidentChange.UNCHANGED, current
        elif incident.status is IncidentStatus.CLOSED and current.closed_at is None:
            change = IncidentChange.CLOSED
        else:
            change = IncidentChange.UPDATED
        event = Event(
            type=f"incident.{change}",
            source=source,
            subject=incident_id,
            municipality=municipality,
            severity=severity,
            correlationid=correlationid or incident_id,
            data=incident,
        )
        record = self._next(current, incident_id, incident, municipality, severity, event)
        # Published first: the journal is the truth. Should the record's write fail, the
        # durable observer rebuilds it from this event.
        await self.publish(event)
        await self._save(record, current)
        log.info(
            "incident.reported",
            incident=incident_id,
            change=str(change),
            municipality=municipality,
            cameras=len(incident.cameras),
        )
        if fresh:
            self._tasks.spawn(self._take_snapshots(incident_id, [c.id for c in incident.cameras]))
        return change, record

    def _next(
        self,
        current: IncidentRecord | None,
        incident_id: str,
        incident: Incident,
        municipality: str | None,
        severity: Severity | str | None,
        event: Event,
    ) -> IncidentRecord:
        now = event.time
        closed = incident.status is IncidentStatus.CLOSED
        return IncidentRecord(
            id=incident_id,
            incident=incident,
            municipality=municipality,
            severity=str(severity) if severity else None,
            created_at=current.created_at if current else now,
            updated_at=now,
            closed_at=(current.closed_at if current and current.closed_at else now)
            if closed
            else None,
            version=current.version + 1 if current else 1,
            last_event=event.id,
        )

    def _with_cameras(
        self, incident: Incident, current: IncidentRecord | None
    ) -> tuple[Incident, bool]:
        """The incident with its linked cameras, and whether they were just linked (their
        snapshots are still to be taken). Cameras stay linked while the place stays."""
        if incident.cameras or incident.location is None or self.settings.cameras == 0:
            return incident, False
        before = current.incident if current else None
        if (
            before is not None
            and before.cameras
            and before.location is not None
            and _metres(before.location, incident.location) < _SAME_PLACE_M
        ):
            return msgspec.structs.replace(incident, cameras=before.cameras), False
        nearest = self.nearest_cameras(incident.location)
        return msgspec.structs.replace(incident, cameras=nearest), bool(nearest)

    def nearest_cameras(self, point: GeoPoint) -> list[LinkedCamera]:
        """Inventory cameras within ``camera_radius`` of the point, nearest first."""
        radius = self.settings.camera_radius
        # A cheap box first: 10,000 haversines per incident are not needed.
        dlat = radius / 111_000.0
        dlon = dlat / max(0.01, math.cos(math.radians(point.lat)))
        found: list[tuple[float, str, str | None]] = []
        for rt in self.instances.cameras():
            lat, lon = rt.entry.lat, rt.entry.lon
            if lat is None or lon is None:
                continue
            if abs(lat - point.lat) > dlat or abs(lon - point.lon) > dlon:
                continue
            metres = distance_km(point.lat, point.lon, lat, lon) * 1000.0
            if metres <= radius:
                found.append((metres, rt.id, rt.entry.name))
        found.sort()
        return [
            LinkedCamera(
                id=camera_id,
                name=name,
                distance_m=round(metres, 1),
                health=str(found.state) if (found := self.camera_states.get(camera_id)) else None,
            )
            for metres, camera_id, name in found[: self.settings.cameras]
        ]

    # -- snapshots -------------------------------------------------------------------------
    async def _take_snapshots(self, incident_id: str, camera_ids: list[str]) -> None:
        """Take the linked cameras' snapshots and publish them; a camera that fails is asked
        again twice (after the snapshot cache forgets the failure), so a moment's glitch does
        not leave the incident without its nearest picture."""
        try:
            wanted = list(camera_ids)
            for attempt in range(len(SNAPSHOT_RETRIES) + 1):
                if attempt:
                    await asyncio.sleep(SNAPSHOT_RETRIES[attempt - 1])
                taken = await asyncio.gather(*(self._snapshot(incident_id, c) for c in wanted))
                results = dict(zip(wanted, taken, strict=True))
                if not await self._apply_snapshots(
                    incident_id, results, final=attempt == len(SNAPSHOT_RETRIES)
                ):
                    return
                wanted = [c for c, r in results.items() if "snapshot" not in r]
                if not wanted:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the incident itself is recorded; only pictures are missing
            log.error("incident.snapshots_failed", incident=incident_id, error=repr(exc))

    async def _apply_snapshots(
        self, incident_id: str, results: dict[str, dict[str, Any]], *, final: bool
    ) -> bool:
        """Publish what a round of snapshots gave (a failure only once it is final); False
        when the incident is gone or its cameras were linked anew meanwhile."""
        async with self._mutex.hold(incident_id):
            current = await self.get(incident_id)
            if current is None or not {c.id for c in current.incident.cameras} >= set(results):
                return False
            shown = {
                camera: found for camera, found in results.items() if "snapshot" in found or final
            }
            cameras = [
                msgspec.structs.replace(c, snapshot_error=None, **shown[c.id])
                if c.id in shown
                else c
                for c in current.incident.cameras
            ]
            if cameras != current.incident.cameras:
                await self._apply(
                    incident_id,
                    msgspec.structs.replace(current.incident, cameras=cameras),
                    current,
                    source=SOURCE,
                    municipality=current.municipality,
                    severity=Severity(current.severity) if current.severity else None,
                    correlationid=None,
                )
            return True

    async def _snapshot(self, incident_id: str, camera_id: str) -> dict[str, Any]:
        rt = self.instances.get(camera_id)
        status = self.instances.status(camera_id) if rt is not None else None
        state = "removed" if rt is None else status.state if status else "not started"
        if rt is None or rt.driver is None or state != UnitState.RUNNING:
            return {"snapshot_error": f"camera not running ({state})"}
        try:
            async with asyncio.timeout(self.settings.snapshot_timeout):
                picture = await self.snapshots.get(camera_id, rt.driver, max_age=5.0)  # type: ignore[arg-type]
        except TimeoutError:
            return {"snapshot_error": f"no snapshot within {self.settings.snapshot_timeout:g} s"}
        except Exception as exc:
            return {"snapshot_error": (str(exc) or type(exc).__name__)[:300]}
        current = await self.get(incident_id)
        await self.journal.put_record(
            SNAPSHOTS, f"{incident_id}/{camera_id}", picture.content, expires=self._expiry(current)
        )
        return {"snapshot": snapshot_path(incident_id, camera_id), "snapshot_at": picture.taken_at}

    def _expiry(self, record: IncidentRecord | None) -> datetime | None:
        """An open incident and its snapshots are kept; a closed one's go after
        ``retention_days``."""
        if record is None or record.closed_at is None:
            return None
        return record.closed_at + timedelta(days=self.settings.retention_days)

    async def _save(self, record: IncidentRecord, before: IncidentRecord | None) -> None:
        expires = self._expiry(record)
        await self.journal.put_record(
            COLLECTION, record.id, _encoder.encode(record), expires=expires
        )
        if before is not None and (before.closed_at is None) != (record.closed_at is None):
            # Closed (or reopened): its snapshots now go (or stay) with it.
            for camera in record.incident.cameras:
                key = f"{record.id}/{camera.id}"
                kept = await self.journal.get_record(SNAPSHOTS, key)
                if kept is not None:
                    await self.journal.put_record(SNAPSHOTS, key, kept.body, expires=expires)

    # -- observing others' events ----------------------------------------------------------
    async def observe(self, event: Event) -> DeliveryResult | None:
        """Durable subscription target: keep the record of incidents reported by events
        published elsewhere (rules, the events API, another hub process)."""
        if event.type not in TYPES or site_of(event) is not None:
            return None  # another site's incidents are that site's records (next: shown here)
        incident_id = event.subject or event.id
        try:
            data = incident_of(event)
        except ValueError as exc:
            log.warning("incident.unreadable", event=event.id, type=event.type, error=str(exc))
            return DeliveryResult(
                status=DeliveryStatus.REJECTED, at=datetime.now(UTC), detail=str(exc)[:200]
            )
        async with self._mutex.hold(incident_id):
            current = await self.get(incident_id)
            if current is not None and (
                current.last_event == event.id or event.time < current.updated_at
            ):
                return None  # ours, already applied, or older than what we know
            municipality = event.municipality
            if current is not None:
                if municipality and current.municipality and municipality != current.municipality:
                    # Another municipality's event must not take over (or wipe) this incident.
                    log.warning(
                        "incident.foreign_update",
                        incident=incident_id,
                        event=event.id,
                        municipality=municipality,
                        incident_municipality=current.municipality,
                    )
                    return DeliveryResult(
                        status=DeliveryStatus.REJECTED,
                        at=datetime.now(UTC),
                        detail=f"incident {incident_id} belongs to {current.municipality}",
                    )
                municipality = current.municipality
                data = self._carried(data, current.incident)
            if municipality is None and data.location is not None:
                municipality = self.municipality_at(data.location)
            record = self._next(current, incident_id, data, municipality, event.severity, event)
            await self._save(record, current)
            if data.location is not None and not data.cameras and self.settings.cameras > 0:
                # Linking cameras is a change worth an event of our own (an update).
                await self._apply(
                    incident_id,
                    data,
                    record,
                    source=SOURCE,
                    municipality=municipality,
                    severity=event.severity,
                    correlationid=event.correlationid,
                )
        return None

    @staticmethod
    def _carried(data: Incident, before: Incident) -> Incident:
        """What an update by event keeps of the incident: who reported it first, and the
        cameras (with the snapshots taken then) while the place is the same."""
        keep: dict[str, Any] = {}
        if data.origin is None and before.origin is not None:
            keep["origin"] = before.origin
        if data.external_id is None and before.external_id is not None:
            keep["external_id"] = before.external_id
        same_place = data.location == before.location or (
            data.location is not None
            and before.location is not None
            and _metres(data.location, before.location) < _SAME_PLACE_M
        )
        if not data.cameras and before.cameras and same_place:
            keep["cameras"] = before.cameras
        return msgspec.structs.replace(data, **keep) if keep else data

    async def close(self) -> None:
        await self._tasks.cancel_all()

    async def subscribe(self, delivery: DeliveryService) -> None:
        """Incidents reported by events (rules, the API, other processes) are recorded too."""
        spec = SubscriptionSpec(
            id="incidents",
            patterns=TYPES,
            order=Order.ORDERED,
            max_attempts=20,
            max_age=86_400.0,
            timeout=60.0,
        )
        await delivery.add(spec, self.observe)
