"""Synthetic happenings: 112 incident cards and siren exercises across the region."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import msgspec
from nabat.events import Event, Severity
from nabat.interfaces import (
    Alert,
    AlertDevice,
    Area,
    CapSeverity,
    Certainty,
    Geocode,
    HubAPI,
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


class Scenario:
    def __init__(self, hub: HubAPI, municipalities: list[str], seed: int | None) -> None:
        self.hub = hub
        self.municipalities = municipalities
        self.rng = random.Random(seed)
        self.sequence = 0

    def _municipality(self) -> str:
        return self.rng.choice(self.municipalities)

    async def incident(self) -> None:
        """Publish a synthetic 112 incident card."""
        if not self.municipalities:
            return
        self.sequence += 1
        kind, text, services, severity = self.rng.choice(INCIDENTS)
        municipality = self._municipality()
        card = {
            "card": f"SIM-{self.sequence:06d}",
            "incident_type": kind,
            "description": text,
            "services": services,
            "victims": self.rng.choice([0, 0, 0, 1, 2]),
            "caller": f"+7918{self.rng.randrange(10**7):07d}",
            "received_at": datetime.now(UTC).isoformat(),
        }
        await self.hub.publish(
            Event(
                type="incident.created",
                source=SOURCE,
                subject=card["card"],
                municipality=municipality,
                severity=severity,
                correlationid=card["card"],
                data=card,
            )
        )

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
                            geocode=[Geocode(value_name="municipality", value=municipality)],
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
