"""Shift handover: what the outgoing shift passes on — open incidents (with their clocks),
cameras down, sirens not ready, alerts in progress and the outgoing operator's notes — as one
record the incoming operator accepts in the console.

A handover is made by the outgoing operator (with notes), or by the hub at a shift change on
the roster (a post's shift ends and the next begins): ``sweep`` looks at the roster every
``check_interval``; its id comes from the post and the change's instant, so several hub
processes make one. Records are kept ``KEEP_DAYS``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from ..events import Event, Severity
from ..ids import uuid7
from ..interfaces.incident import IncidentStatus
from ..interfaces.payloads import UnitKind, UnitState
from ..logs import get_logger
from .model import SOURCE
from .roster import Roster

__all__ = ["HANDOVERS", "Handover", "HandoverError", "HandoverService"]

log = get_logger("nabat.duty.handover")
HANDOVERS = "handovers"
KEEP_DAYS = 400
CREATED = "duty.handover.created"
ACCEPTED = "duty.handover.accepted"
_ACTIVE_ALERTS = ("activating", "pending_confirmation")


class HandoverError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class Item(msgspec.Struct, kw_only=True):
    """One thing passed on: an incident, a camera, a siren, an alert."""

    id: str
    name: str
    state: str = ""
    detail: str = ""
    missed: list[str] = []
    """An incident's clocks that ran out and are not done yet."""
    running: list[str] = []
    """An incident's clocks still running."""


class Handover(msgspec.Struct, kw_only=True):
    id: str
    municipality: str
    post: str | None = None
    created_at: datetime
    created_by: str
    """A person (``user:<login> (…)``), or ``hub:roster`` at a shift change."""
    outgoing: list[str] = []
    incoming: list[str] = []
    notes: str = ""
    open_incidents: list[Item] = []
    cameras_down: list[Item] = []
    sirens_not_ready: list[Item] = []
    alerts_in_progress: list[Item] = []
    accepted_at: datetime | None = None
    accepted_by: str | None = None


_decoder = msgspec.json.Decoder(Handover)


class HandoverService:
    def __init__(
        self,
        hub: Any,  # the Hub (its incidents, duty, cameras, devices, alerts): not imported, a cycle
        roster: Roster,
        publish: Callable[[Event], Awaitable[None]],
    ) -> None:
        self.hub = hub
        self.roster = roster
        self.publish = publish

    # -- what is passed on -----------------------------------------------------------------
    async def summary(self, municipality: str) -> dict[str, list[Item]]:
        hub = self.hub
        incidents = []
        for record in await hub.incidents.list(
            municipalities=[municipality], status=IncidentStatus.OPEN, limit=500
        ):
            handling = await hub.duty.get(record.id)
            open_clocks = [c for c in handling.clocks if not c.done_at] if handling else []
            incidents.append(
                Item(
                    id=record.id,
                    name=record.incident.title or record.incident.type or record.id,
                    state=record.severity or "",
                    missed=[c.name.value for c in open_clocks if c.missed_at],
                    running=[c.name.value for c in open_clocks if not c.missed_at],
                )
            )
        from ..cameras.report import bucket

        cameras = []
        names = {rt.id: rt.entry.name or rt.id for rt in hub.units.cameras()}
        places = {rt.id: rt.entry.municipality for rt in hub.units.cameras()}
        for row in await hub.inventory.list():
            names.setdefault(row.id, row.name or row.id)
            places.setdefault(row.id, row.municipality)
        for camera, where in sorted(places.items()):
            if where != municipality:
                continue
            state = hub.camera_states.get(camera)
            summary = bucket(state.state if state else None)
            if summary in ("offline", "degraded"):
                cameras.append(
                    Item(
                        id=camera,
                        name=names[camera],
                        state=summary,
                        detail=state.state.value if state else "",
                    )
                )
        from ..alerts.readiness import latest_results

        results = await latest_results(hub.journal)
        sirens = []
        for rt in hub.units.devices():
            if rt.entry.municipality != municipality:
                continue
            status = hub.supervisor.status(UnitKind.INSTANCE, rt.id)
            technical = results.get(rt.id, {}).get("technical")
            if status is None or status.state is not UnitState.RUNNING:
                state = status.state.value if status else "not started"
                sirens.append(Item(id=rt.id, name=rt.entry.name or rt.id, state=state))
            elif technical is not None and not technical.passed:
                sirens.append(
                    Item(
                        id=rt.id,
                        name=rt.entry.name or rt.id,
                        state="check failed",
                        detail=technical.detail,
                    )
                )
        alerts = []
        for record in await hub.alerts.recent(limit=200):
            if record.phase.value not in _ACTIVE_ALERTS:
                continue
            where = {a for info in record.alert.info for area in info.area for a in _slugs(area)}
            if municipality in where or any(d.municipality == municipality for d in record.devices):
                alerts.append(
                    Item(
                        id=record.id,
                        name=record.alert.info[0].event if record.alert.info else record.id,
                        state=record.phase.value,
                    )
                )
        return {
            "open_incidents": incidents,
            "cameras_down": cameras,
            "sirens_not_ready": sirens,
            "alerts_in_progress": alerts,
        }

    # -- making and accepting --------------------------------------------------------------
    async def create(
        self,
        municipality: str,
        *,
        by: str,
        notes: str = "",
        post: str | None = None,
        id: str | None = None,
        now: datetime | None = None,
    ) -> Handover:
        now = now or datetime.now(UTC)
        if post is not None and self.roster.post(municipality, post) is None:
            known = ", ".join(p.id for p in self.roster.posts([municipality])) or "none"
            raise HandoverError(422, f"{municipality} has no post {post!r} (posts: {known})")
        shifts = await self.roster.shifts(municipalities=[municipality])
        mine = [s for s in shifts if post is None or s.post == post]
        # Outgoing: on shift now (or ending now); incoming: starting within the hour.
        outgoing = sorted({s.login for s in mine if s.start < now <= s.end})
        incoming = sorted({s.login for s in mine if now <= s.start < now + timedelta(hours=1)})
        handover = Handover(
            id=id or _key(now, municipality, uuid7()[-12:]),
            municipality=municipality,
            post=post,
            created_at=now,
            created_by=by,
            outgoing=outgoing,
            incoming=incoming,
            notes=notes,
            **await self.summary(municipality),
        )
        written = await self.hub.journal.put_record(
            HANDOVERS,
            handover.id,
            msgspec.json.encode(handover),
            expires=now + timedelta(days=KEEP_DAYS),
            only_new=True,
        )
        if not written:  # another process made this one first
            found = await self.get(handover.id)
            assert found is not None
            return found
        await self.publish(
            Event(
                id=_derived(handover.id, "created"),
                type=CREATED,
                source=SOURCE,
                subject=handover.id,
                municipality=municipality,
                severity=Severity.INFO,
                data={
                    "id": handover.id,
                    "post": post,
                    "by": by,
                    "open_incidents": len(handover.open_incidents),
                    "cameras_down": len(handover.cameras_down),
                    "sirens_not_ready": len(handover.sirens_not_ready),
                    "alerts_in_progress": len(handover.alerts_in_progress),
                },
            )
        )
        log.info("duty.handover_created", id=handover.id, municipality=municipality, by=by)
        return handover

    async def accept(self, handover_id: str, *, by: str) -> Handover:
        now = datetime.now(UTC)
        known = await self.get(handover_id)
        if known is None:
            raise HandoverError(404, f"no handover {handover_id!r}")
        if known.created_by == by:
            raise HandoverError(409, "the incoming shift accepts a handover, not who made it")

        def take(body: bytes) -> bytes | None:
            found = _decoder.decode(body)
            if found.accepted_at is not None:
                return None
            found.accepted_at, found.accepted_by = now, by
            return msgspec.json.encode(found)

        written = await self.hub.journal.update_record(HANDOVERS, handover_id, take)
        found = await self.get(handover_id)
        if found is None:
            raise HandoverError(404, f"no handover {handover_id!r}")
        if written is None:
            if found.accepted_by != by:
                raise HandoverError(
                    409, f"accepted already by {found.accepted_by} at {found.accepted_at}"
                )
            return found
        await self.publish(
            Event(
                id=_derived(handover_id, "accepted"),
                type=ACCEPTED,
                source=SOURCE,
                subject=handover_id,
                municipality=found.municipality,
                data={"id": handover_id, "by": by},
            )
        )
        return found

    async def get(self, handover_id: str) -> Handover | None:
        stored = await self.hub.journal.get_record(HANDOVERS, handover_id)
        return None if stored is None else _decoder.decode(stored.body)

    async def list(
        self, municipalities: list[str] | None = None, limit: int = 50
    ) -> list[Handover]:
        records = await self.hub.journal.records(HANDOVERS, limit=1000, descending=True)
        found = [_decoder.decode(r.body) for r in records]
        if municipalities is not None:
            found = [h for h in found if h.municipality in municipalities]
        return found[:limit]

    # -- at a shift change -----------------------------------------------------------------
    async def sweep(self, now: datetime | None = None, window: timedelta | None = None) -> int:
        """Handovers for the shift changes of the last ``window`` (default: a minute): a
        shift ending when another of the same post begins (within 15 minutes). The count."""
        now = now or datetime.now(UTC)
        window = window or timedelta(minutes=1)
        made = 0
        shifts = await self.roster.shifts(since=now - window - timedelta(minutes=15))
        for ending in shifts:
            if not (now - window < ending.end <= now):
                continue
            follows = [
                s
                for s in shifts
                if s.municipality == ending.municipality
                and s.post == ending.post
                and abs((s.start - ending.end).total_seconds()) <= 900
                and s.id != ending.id
            ]
            if not follows:
                continue
            handover_id = _key(ending.end, ending.municipality, ending.post)
            if await self.get(handover_id) is None:
                await self.create(
                    ending.municipality,
                    by="hub:roster",
                    post=ending.post,
                    id=handover_id,
                    now=ending.end,
                )
                made += 1
        return made


def _key(at: datetime, municipality: str, tag: str) -> str:
    """Time first, so the journal lists handovers in time order; the same shift change
    gives the same key in every process."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S}Z-{municipality}-{tag}"


def _derived(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "nabat-handover:" + ":".join(parts)))


def _slugs(area: Any) -> list[str]:
    from ..alerts.area import municipalities_of

    return list(municipalities_of([area]))
