"""Readiness of warning devices: known before the day a siren is needed.

Two checks, each on its own schedule (``[readiness]``, crontab in the hub's local time):

* **technical** (silent; default daily at 09:00): a status poll and a silent self-test of every
  warning device. Passed when the device answers, is not in fault, has mains or enough battery,
  no tamper, and its self-test passes.
* **comprehensive** (audible; default the first Wednesday of March and October at 10:43, as the
  population is told): an alert with status ``Test`` to every device — the sirens sound — and
  each device's activation outcome is its result.

Each device's latest result per kind is kept in the journal (records ``readiness``) and
published (``siren.readiness.passed|failed``, then ``siren.readiness.completed`` with the
counts). ``nabat report sirens`` and ``GET /api/v1/reports/sirens`` show, per municipality, how
many devices are ready. A device that stops answering its status polls is reported by the
``watch`` as ``siren.status.offline`` within ``device_interval``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import msgspec

from ..events import Event, Severity
from ..i18n import Messages
from ..ids import uuid7
from ..interfaces import Job
from ..interfaces.alerting import (
    AlertDevice,
    DeviceState,
    Status,
    WarningMessage,
)
from ..interfaces.alerting import Severity as CapSeverity
from ..logs import get_logger
from ..regions import Region
from ..store import Journal
from .compose import municipality_area, new_alert
from .service import AlertError

if TYPE_CHECKING:
    from ..config.model import ReadinessSettings
    from ..instances import Instances
    from .service import AlertService

__all__ = ["COLLECTION", "CheckResult", "ReadinessRow", "ReadinessService", "sirens_report"]

COLLECTION = "readiness"
Kind = Literal["technical", "comprehensive"]
log = get_logger("nabat.readiness")
_encoder = msgspec.json.Encoder()


class CheckResult(msgspec.Struct, kw_only=True):
    """One device's result of one check."""

    device: str
    kind: str
    passed: bool
    at: datetime
    detail: str = ""
    municipality: str | None = None
    check: str = ""
    """The check run's id (for a comprehensive check: the Test alert's identifier)."""


_decoder = msgspec.json.Decoder(dict[str, CheckResult])


class ReadinessRow(msgspec.Struct, kw_only=True):
    municipality: str
    name: str
    devices: int = 0
    ready: int = 0
    """Devices whose latest technical check passed."""
    readiness_pct: float | None = None
    technical_at: datetime | None = None
    """The oldest latest technical check among the devices (how stale the figure is)."""
    comprehensive_passed: int = 0
    comprehensive_at: datetime | None = None
    failing: list[str] = []
    """``device: reason`` for each device not ready."""
    site: str | None = None
    """At the region: the site whose hub holds the district (None: this hub's own)."""
    as_of: datetime | None = None
    """A site's row: when its hub computed it."""


class ReadinessService:
    def __init__(
        self,
        settings: ReadinessSettings,
        *,
        alerts: AlertService,
        journal: Journal,
        publish: Callable[[Event], Awaitable[None]],
        instances: Instances,
        hub_name: str,
    ) -> None:
        self.settings = settings
        self.alerts = alerts
        self.journal = journal
        self.publish = publish
        self.instances = instances
        self.source = f"/nabat/hubs/{hub_name}/readiness"
        self.running: dict[str, bool] = {}

    def jobs(self) -> list[Job]:
        """The scheduled checks (``[readiness] technical`` and ``comprehensive`` crontabs)."""
        found = []
        for kind in ("technical", "comprehensive"):
            cron = getattr(self.settings, kind)
            if cron is None:
                continue

            async def check(kind: Kind = kind) -> None:  # type: ignore[assignment]
                await self.run(kind)

            found.append(Job(id=f"readiness-{kind}", func=check, cron=cron, timeout=900))
        return found

    async def run(self, kind: Kind, *, by: str = "schedule") -> list[CheckResult]:
        """Run one check of every warning device now; the results."""
        if self.running.get(kind):
            raise RuntimeError(f"a {kind} check is running already")
        self.running[kind] = True
        check = uuid7()
        try:
            log.info("readiness.started", kind=kind, by=by, devices=len(self.instances.devices()))
            if kind == "technical":
                results = await asyncio.gather(
                    *(self._technical(rt, check) for rt in self.instances.devices())
                )
            else:
                results = await self._comprehensive(check, by)
            await self._store(list(results))
            for result in results:
                await self.publish(
                    Event(
                        type=f"siren.readiness.{'passed' if result.passed else 'failed'}",
                        source=f"/nabat/instances/{result.device}",
                        subject=result.device,
                        municipality=result.municipality,
                        correlationid=check,
                        severity=Severity.INFO if result.passed else Severity.SEVERE,
                        data=result,
                    )
                )
            passed = sum(r.passed for r in results)
            await self.publish(
                Event(
                    type="siren.readiness.completed",
                    source=self.source,
                    subject=check,
                    correlationid=check,
                    data={"kind": kind, "devices": len(results), "passed": passed, "by": by},
                )
            )
            log.info("readiness.completed", kind=kind, devices=len(results), passed=passed)
            return list(results)
        finally:
            self.running[kind] = False

    async def _technical(self, rt, check: str) -> CheckResult:
        def result(passed: bool, detail: str) -> CheckResult:
            return CheckResult(
                device=rt.id,
                kind="technical",
                passed=passed,
                at=datetime.now(UTC),
                detail=detail,
                municipality=rt.entry.municipality,
                check=check,
            )

        driver = rt.driver
        if not isinstance(driver, AlertDevice):
            state = self.instances.status(rt.id)
            why = f"{state.state.value}: {state.reason}" if state else "not started"
            return result(False, f"device not running ({why})")
        try:
            async with asyncio.timeout(driver.context.timeout):
                status = await driver.status()
            async with asyncio.timeout(driver.context.timeout):
                test = await driver.self_test(audible=False)
        except Exception as exc:
            return result(
                False, f"no answer: {type(exc).__name__}: {exc}" if str(exc) else "no answer"
            )
        problems = []
        if status.state in (DeviceState.FAULT, DeviceState.OFFLINE):
            problems.append(
                f"state {status.state.value}" + (f" ({status.detail})" if status.detail else "")
            )
        if status.mains_ok is False and (status.battery_pct is None or status.battery_pct < 50):
            battery = "?" if status.battery_pct is None else f"{status.battery_pct:g}"
            problems.append(f"no mains, battery {battery}%")
        if status.tamper:
            problems.append("tamper")
        if not test.passed:
            problems.append(
                f"self-test failed: {test.detail}" if test.detail else "self-test failed"
            )
        return result(not problems, "; ".join(problems) or test.detail or "ok")

    async def _comprehensive(self, check: str, by: str) -> list[CheckResult]:
        devices = self.instances.devices()
        if not devices:
            return []
        municipalities = sorted({rt.entry.municipality for rt in devices if rt.entry.municipality})
        alert = new_alert(
            identifier=f"readiness-{check}",
            sender=self.alerts.sender,
            status=Status.TEST,
            event="Комплексная проверка готовности системы оповещения",
            severity=CapSeverity.MINOR,
            area=municipality_area(municipalities, "all warning devices"),
        )
        settings = self.settings
        message = WarningMessage(
            signal_seconds=settings.comprehensive_signal_seconds, text=settings.comprehensive_text
        )
        try:
            record = await self.alerts.issue(alert, message, by=f"readiness:{by}")
        except AlertError as exc:  # e.g. devices without a municipality: nothing to sound
            now = datetime.now(UTC)
            return [
                CheckResult(
                    device=rt.id,
                    kind="comprehensive",
                    passed=False,
                    at=now,
                    detail=f"not reached: {exc}",
                    municipality=rt.entry.municipality,
                    check=check,
                )
                for rt in devices
            ]
        done = await self.alerts.wait(record.id, 600) or record
        return [
            CheckResult(
                device=d.device,
                kind="comprehensive",
                passed=d.outcome.value == "activated",
                at=d.at or datetime.now(UTC),
                detail=d.detail or d.outcome.value,
                municipality=d.municipality,
                check=record.id,
            )
            for d in done.devices
        ]

    async def _store(self, results: list[CheckResult]) -> None:
        journal = self.journal
        known = await latest_results(journal)  # one read, not one per device
        rows = []
        for r in results:
            latest = known.get(r.device, {})
            latest[r.kind] = r
            rows.append((r.device, _encoder.encode(latest), None))
        for start in range(0, len(rows), 500):
            await journal.put_records(COLLECTION, rows[start : start + 500])


async def latest_results(journal: Journal) -> dict[str, dict[str, CheckResult]]:
    out: dict[str, dict[str, CheckResult]] = {}
    async for stored in journal.all_records(COLLECTION):
        try:
            out[stored.key] = _decoder.decode(stored.body)
        except msgspec.DecodeError:
            continue
    return out


def sirens_report(
    devices: Mapping[str, str],
    results: Mapping[str, Mapping[str, CheckResult]],
    region: Region,
    *,
    language: str = "ru",
    municipalities: list[str] | None = None,
) -> list[ReadinessRow]:
    """Per municipality: devices (id → municipality) and how many are ready."""
    rows: dict[str, ReadinessRow] = {}
    for device, slug in sorted(devices.items()):
        if municipalities is not None and slug not in municipalities:
            continue
        muni = region.municipalities.get(slug)
        row = rows.setdefault(
            slug, ReadinessRow(municipality=slug, name=muni.name(language) if muni else slug)
        )
        row.devices += 1
        latest = results.get(device, {})
        technical = latest.get("technical")
        if technical is not None and technical.passed:
            row.ready += 1
        else:
            detail = technical.detail if technical else Messages(language)("report.never_checked")
            row.failing.append(f"{device}: {detail}")
        if technical is not None and (row.technical_at is None or technical.at < row.technical_at):
            row.technical_at = technical.at
        comprehensive = latest.get("comprehensive")
        if comprehensive is not None:
            row.comprehensive_passed += comprehensive.passed
            if row.comprehensive_at is None or comprehensive.at > row.comprehensive_at:
                row.comprehensive_at = comprehensive.at
    for row in rows.values():
        row.readiness_pct = round(100.0 * row.ready / row.devices, 1) if row.devices else None
    return sorted(rows.values(), key=lambda r: r.name)
