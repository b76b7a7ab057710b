"""Synthetic happenings: 112 incidents and siren exercises across the region.

An incident happens a few hundred metres from one of the region's cameras (so the hub links the
nearest cameras and takes their snapshots, as it would for a real 112 card) and is closed after
``incident_lasts`` seconds; which ones are still open is kept in the plugin's data directory, so
a restarted demo closes what the last run left open."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from nabat.events import Event, Severity
from nabat.interfaces import (
    MUNICIPALITY_GEOCODE,
    Alert,
    AlertDevice,
    Area,
    Camera,
    CapSeverity,
    Certainty,
    Geocode,
    GeoPoint,
    HubAPI,
    Incident,
    IncidentStatus,
    Info,
    MsgType,
    Status,
    Urgency,
    WarningMessage,
)

from .siren import SimulatedSiren

SOURCE = "/nabat/plugins/simulator"

# (incident type, Russian description, services to dispatch, severity)
INCIDENTS = [
    ("road_accident", "ДТП с пострадавшими", ["02", "03"], Severity.SEVERE),
    ("fire", "Возгорание в жилом доме", ["01", "03"], Severity.SEVERE),
    ("flooding", "Подтопление придомовой территории", ["01"], Severity.MODERATE),
    ("gas_smell", "Запах газа в подъезде", ["04"], Severity.MODERATE),
    ("public_order", "Нарушение общественного порядка", ["02"], Severity.MINOR),
]


_OPEN = msgspec.json.Decoder(dict[str, datetime])


class Scenario:
    def __init__(
        self,
        hub: HubAPI,
        municipalities: list[str],
        seed: int | None,
        *,
        incident_lasts: float = 300.0,
        state_dir: Path | None = None,
    ) -> None:
        self.hub = hub
        self.municipalities = municipalities
        self.rng = random.Random(seed)
        self.sequence = 0
        self.incident_lasts = incident_lasts
        self._state = state_dir / "open-incidents.json" if state_dir else None
        self._open: dict[str, datetime] | None = None  # incident id -> when it closes

    def _municipality(self) -> str:
        return self.rng.choice(self.municipalities)

    def _opened(self) -> dict[str, datetime]:
        if self._open is None:
            self._open = {}
            if self._state is not None and self._state.exists():
                try:
                    self._open = _OPEN.decode(self._state.read_bytes())
                except (OSError, msgspec.DecodeError):
                    self._open = {}  # a damaged file: those incidents stay for an operator
        return self._open

    def _save(self) -> None:
        if self._state is None:
            return
        self._state.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._state.with_suffix(".tmp")
        temporary.write_bytes(msgspec.json.encode(self._opened()))
        temporary.replace(self._state)

    def _place(self, municipality: str) -> tuple[GeoPoint | None, str | None]:
        """A point 50-400 m from one of the municipality's cameras, and an address by it."""
        near = [
            c
            for c in self.hub.instances(Camera)
            if c.context.municipality == municipality and c.context.location is not None
        ]
        if not near:
            return None, None
        camera = self.rng.choice(sorted(near, key=lambda c: c.context.instance_id))
        where = camera.context.location
        assert where is not None
        metres, bearing = self.rng.uniform(50, 400), self.rng.uniform(0, 2 * math.pi)
        lat = where.lat + metres * math.cos(bearing) / 111_320
        lon = where.lon + metres * math.sin(bearing) / (111_320 * math.cos(math.radians(where.lat)))
        address = f"{camera.context.name}, д. {self.rng.randint(1, 150)}"
        return GeoPoint(round(lat, 6), round(lon, 6)), address

    async def incident(self) -> None:
        """Report a synthetic 112 incident (the hub links the nearest cameras), and close the
        ones whose time is up."""
        await self.close_due()
        if not self.municipalities:
            return
        self.sequence += 1
        kind, text, services, severity = self.rng.choice(INCIDENTS)
        municipality = self._municipality()
        now = datetime.now(UTC)
        card = f"SIM-{now:%y%m%d-%H%M%S}-{self.sequence}"
        location, address = self._place(municipality)
        incident = Incident(
            title=text,
            type=kind,
            description=f"{text} (учебная карточка симулятора)",
            reported_at=now.replace(microsecond=0),
            caller=f"+7918{self.rng.randrange(10**7):07d}",
            address=address,
            location=location,
            victims=self.rng.choice([0, 0, 0, 1, 2]),
            services=services,
            origin="simulator",
            external_id=card,
        )
        self._opened()[card] = now + timedelta(seconds=self.incident_lasts)
        self._save()
        await self.hub.incidents.report(
            card,
            incident,
            source=SOURCE,
            municipality=municipality,
            severity=severity,
            correlationid=card,
        )

    async def close_due(self) -> None:
        """Close the simulator's incidents whose time is up (unless an operator did)."""
        opened = self._opened()
        now = datetime.now(UTC)
        due = [card for card, until in opened.items() if until <= now]
        for card in due:
            record = await self.hub.incidents.get(card)
            if record is not None and record.incident.status is not IncidentStatus.CLOSED:
                closed = msgspec.structs.replace(
                    record.incident, status=IncidentStatus.CLOSED, updated_at=now
                )
                await self.hub.incidents.report(
                    card,
                    closed,
                    source=SOURCE,
                    municipality=record.municipality,
                    correlationid=card,
                )
            opened.pop(card, None)  # two runs of the job may close the same card at once
        if due:
            self._save()

    async def exercise(self) -> None:
        """Run a siren exercise (status Exercise) in one municipality that has simulated sirens.

        Only the simulator's own sirens: a demo must never sound a real one, whatever else
        the configuration enables.
        """
        sirens = [s for s in self.hub.instances(AlertDevice) if isinstance(s, SimulatedSiren)]
        if not sirens:
            return
        municipality = self.rng.choice(sorted({s.context.municipality or "" for s in sirens}))
        targets = [s for s in sirens if (s.context.municipality or "") == municipality]
        self.sequence += 1
        now = datetime.now(UTC)
        alert = Alert(
            identifier=f"urn:nabat:simulator:exercise:{self.sequence}",
            sender="simulator@nabat.local",
            sent=now.replace(microsecond=0),
            status=Status.EXERCISE,
            msg_type=MsgType.ALERT,
            info=[
                Info(
                    event="Учебная тревога",
                    urgency=Urgency.IMMEDIATE,
                    severity=CapSeverity.MINOR,
                    certainty=Certainty.POSSIBLE,
                    headline="Плановая проверка системы оповещения",
                    area=[
                        Area(
                            area_desc=municipality or "region",
                            geocode=[Geocode(value_name=MUNICIPALITY_GEOCODE, value=municipality)],
                        )
                    ],
                )
            ],
        )
        common = {
            "source": SOURCE,
            "municipality": municipality or None,
            "correlationid": alert.identifier,
        }
        await self.hub.publish(
            Event(
                type="alert.issued",
                subject=alert.identifier,
                severity=Severity.INFO,
                data=alert,
                **common,
            )
        )
        message = WarningMessage(signal_seconds=30, text="Внимание! Проводится учебная тревога.")

        async def one(device: AlertDevice) -> None:
            ctx = device.context
            try:
                async with asyncio.timeout(10):
                    result = await device.activate(alert, message)
                outcome, data = (
                    result.outcome.value,
                    {"device": ctx.instance_id, **msgspec.to_builtins(result)},
                )
            except Exception as exc:
                outcome, data = (
                    "unreachable",
                    {
                        "device": ctx.instance_id,
                        "alert_identifier": alert.identifier,
                        "detail": repr(exc),
                    },
                )
            await self.hub.publish(
                Event(
                    type=f"alert.device.{outcome}",
                    subject=ctx.instance_id,
                    severity=Severity.INFO if outcome == "activated" else Severity.SEVERE,
                    data=data,
                    **common,
                )
            )

        await asyncio.gather(*(one(d) for d in targets))
