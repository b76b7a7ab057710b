"""Issuing alerts: every warning device in the area, in parallel, each result tracked.

``issue`` resolves every :class:`~nabat.interfaces.AlertDevice` whose municipality or location
the alert's area covers (configured ones that are not running count at once as
``unreachable``, with their state as the reason), then activates them all in parallel: each
call bounded by the device's ``timeout``, retried ``[alerts] attempts`` times with backoff on a
timeout or a transient error (activation is idempotent per alert identifier, so a retry never
starts a second signal). Every device's outcome — ``activated``, ``failed``, ``unreachable`` —
is published as ``alert.device.<outcome>`` and kept in the alert's record (journal records,
collection ``alerts``), and ``alert.completed`` carries the counts once all have answered.

With ``[alerts] two_person_rule`` an ``Actual`` alert waits in ``pending_confirmation`` until a
second, different caller confirms it within ``confirm_within`` seconds (else ``expired``).
``cancel`` stops the signal on every device that activated; ``update`` issues a CAP ``Update``
referencing the original, with a new message or area.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import msgspec

from ..cap import parse_references, reference_to
from ..events import Event, Severity
from ..ids import uuid7
from ..interfaces import AuthError
from ..interfaces.alerting import (
    ActivationOutcome,
    Alert,
    AlertDevice,
    MsgType,
    Status,
    WarningMessage,
)
from ..interfaces.payloads import UnitState
from ..logs import get_logger
from ..tasks import TaskSet
from .area import covers
from .model import AlertPhase, AlertRecord, DeviceOutcome, DeviceResult, SiteResult

if TYPE_CHECKING:
    from ..config.model import AlertSettings
    from ..instances import Instance, Instances
    from ..store import Journal

__all__ = [
    "AlertConflict",
    "AlertError",
    "AlertExists",
    "AlertForbidden",
    "AlertNotFound",
    "AlertService",
    "NoDevices",
    "RemoteSites",
]

COLLECTION = "alerts"
log = get_logger("nabat.alerts")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AlertRecord)
_OUTCOME = {
    ActivationOutcome.ACTIVATED: DeviceOutcome.ACTIVATED,
    ActivationOutcome.CANCELLED: DeviceOutcome.CANCELLED,
    ActivationOutcome.FAILED: DeviceOutcome.FAILED,
    ActivationOutcome.UNREACHABLE: DeviceOutcome.UNREACHABLE,
}


class AlertError(Exception):
    """A request the service refuses. Each kind is its own class; ``status`` is the HTTP
    status the API answers it with."""

    status = 400


class AlertNotFound(AlertError):
    status = 404


class AlertExists(AlertError):
    """The identifier was used before (a retry of the same alert)."""

    status = 409


class AlertConflict(AlertError):
    """The alert is not in a phase that allows this (cancelled already, not waiting…)."""

    status = 409


class AlertForbidden(AlertError):
    """The two-person rule: the caller may not confirm their own alert."""

    status = 403


class NoDevices(AlertError):
    """The alert's area covers no warning device (the caller may reach)."""

    status = 422


class AlertSummary(msgspec.Struct, kw_only=True):
    """The data of ``alert.*`` events about a whole alert."""

    id: str
    phase: AlertPhase
    status: str
    event: str
    municipalities: list[str]
    devices: int
    counts: dict[str, int]
    by: str | None = None


class DeviceEvent(msgspec.Struct, kw_only=True):
    """``alert.device.<outcome>``."""

    alert: str
    device: str
    outcome: DeviceOutcome
    attempts: int
    detail: str = ""


class RemoteSites(Protocol):
    """The region's way to other sites' warning devices (``nabat.federation.dispatch``)."""

    def sites_for(
        self, alert: Alert, allowed: Callable[[str | None], bool]
    ) -> dict[str, list[str]]:
        """The remote sites the alert's area reaches, each with the municipalities it covers
        there that the caller may reach."""
        ...

    async def dispatch(self, record: AlertRecord) -> None:
        """Send the alert to each of ``record.sites``; never raises (what NATS does not take
        now is retried until its deadline)."""
        ...

    async def cancel(self, record: AlertRecord, *, by: str) -> None:
        """Stop the alert at every site it was sent to (or keep it from being delivered)."""
        ...

    async def results(self, alert_id: str) -> list[SiteResult]:
        """Each site's result, as far as the region knows."""
        ...


class AlertService:
    def __init__(
        self,
        settings: AlertSettings,
        *,
        sender: str,
        hub_name: str,
        journal: Journal,
        publish: Callable[[Event], Awaitable[None]],
        instances: Instances,
    ) -> None:
        self.settings = settings
        self.sender = sender
        """CAP ``sender`` of alerts issued here: ``[alerts] sender`` or ``nabat@<hub>``."""
        self.source = f"/nabat/hubs/{hub_name}/alerts"
        self.journal = journal
        self.publish = publish
        self.instances = instances
        self.records: dict[str, AlertRecord] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._limit = asyncio.Semaphore(self.settings.concurrency)
        self._changed: dict[str, asyncio.Event] = {}
        self._failing = TaskSet("alerts:fail-instance")
        self.remote: RemoteSites | None = None
        """Set by a hub that follows other sites: their devices are reached through them."""

    # -- storage ----------------------------------------------------------------------------
    async def _save(self, record: AlertRecord) -> None:
        self.records[record.id] = record
        await self.journal.put_record(COLLECTION, record.id, _encoder.encode(record))
        event = self._changed.pop(record.id, None)
        if event is not None:
            event.set()

    async def get(self, alert_id: str) -> AlertRecord | None:
        record = self.records.get(alert_id)
        if record is None:
            stored = await self.journal.get_record(COLLECTION, alert_id)
            record = None if stored is None else _decoder.decode(stored.body)
        return record

    async def view(self, record: AlertRecord) -> AlertRecord:
        """``record`` with each remote site's result (a copy: the results are not stored with
        the record but apart, where the site's answers land)."""
        if not record.sites or self.remote is None:
            return record
        return msgspec.structs.replace(record, remote=await self.remote.results(record.id))

    async def recent(self, limit: int = 100) -> list[AlertRecord]:
        found: dict[str, AlertRecord] = {}
        async for stored in self.journal.all_records(COLLECTION):
            try:
                found[stored.key] = _decoder.decode(stored.body)
            except msgspec.DecodeError:
                continue
        found.update(self.records)
        return sorted(found.values(), key=lambda r: r.created, reverse=True)[:limit]

    async def wait(self, alert_id: str, timeout: float) -> AlertRecord | None:
        """The record once it is no longer activating (or after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while True:
                record = await self.get(alert_id)
                if record is None or record.phase is not AlertPhase.ACTIVATING:
                    return record
                await self._changed.setdefault(alert_id, asyncio.Event()).wait()

    # -- events -----------------------------------------------------------------------------
    async def _announce(self, kind: str, record: AlertRecord, by: str | None = None) -> None:
        municipalities = sorted(
            {d.municipality for d in record.devices if d.municipality}
            | {m for reach in record.sites.values() for m in reach}
        )
        info = record.alert.info[0] if record.alert.info else None
        await self.publish(
            Event(
                type=f"alert.{kind}",
                source=self.source,
                subject=record.id,
                correlationid=record.id,
                municipality=municipalities[0] if len(municipalities) == 1 else None,
                severity=Severity.SEVERE if record.alert.status is Status.ACTUAL else Severity.INFO,
                data=AlertSummary(
                    id=record.id,
                    phase=record.phase,
                    status=record.alert.status.value,
                    event=info.event if info else "",
                    municipalities=municipalities,
                    devices=len(record.devices),
                    counts=record.counts(),
                    by=by,
                ),
            )
        )

    # -- which devices ----------------------------------------------------------------------
    def _targets(self, alert: Alert, allowed: Callable[[str | None], bool]) -> list[Instance]:
        areas = [area for info in alert.info for area in info.area]
        found = []
        for rt in self.instances.devices():
            if rt.disabled or not allowed(rt.entry.municipality):
                continue
            location = (rt.entry.lat, rt.entry.lon) if rt.entry.lat is not None else None
            if covers(areas, rt.entry.municipality, location):  # type: ignore[arg-type]
                found.append(rt)
        return found

    # -- issuing ----------------------------------------------------------------------------
    async def issue(
        self,
        alert: Alert,
        message: WarningMessage,
        *,
        by: str,
        allowed: Callable[[str | None], bool] = lambda m: True,
        confirmed_by: str | None = None,
    ) -> AlertRecord:
        """Start an alert (or park it for confirmation). Raises AlertError when the area
        covers no device or the identifier was used before. ``confirmed_by``: the second
        person confirmed it already (at the region, for an alert it sends here)."""
        if await self.get(alert.identifier) is not None:
            raise AlertExists(f"alert {alert.identifier!r} exists already")
        targets = self._targets(alert, allowed)
        sites = self.remote.sites_for(alert, allowed) if self.remote is not None else {}
        if not targets and not sites:
            raise NoDevices("the alert's area covers no warning device")
        now = datetime.now(UTC)
        pending = (
            self.settings.two_person_rule and alert.status is Status.ACTUAL and not confirmed_by
        )
        record = AlertRecord(
            id=alert.identifier,
            phase=AlertPhase.PENDING_CONFIRMATION if pending else AlertPhase.ACTIVATING,
            alert=alert,
            message=message,
            created=now,
            created_by=by,
            confirmed_by=confirmed_by,
            confirm_by=now + timedelta(seconds=self.settings.confirm_within) if pending else None,
            devices=[
                DeviceResult(
                    device=rt.id, name=rt.entry.name or rt.id, municipality=rt.entry.municipality
                )
                for rt in targets
            ],
            sites=sites,
        )
        await self._save(record)
        log.info(
            "alert.issued",
            alert=record.id,
            status=alert.status.value,
            devices=len(targets),
            sites=sorted(sites) or None,
            by=by,
            pending_confirmation=pending or None,
        )
        if pending:
            await self._announce("confirmation_required", record, by)
            self._tasks[record.id] = asyncio.get_running_loop().create_task(
                self._expire(record.id), name=f"alert-expiry:{record.id}"
            )
        else:
            await self._announce("issued", record, by)
            self._start(record)
        return record

    async def confirm(self, alert_id: str, *, by: str, reject: bool = False) -> AlertRecord:
        record = await self.get(alert_id)
        if record is None:
            raise AlertNotFound(f"no alert {alert_id!r}")
        if record.phase is not AlertPhase.PENDING_CONFIRMATION:
            raise AlertConflict(f"alert {alert_id} is {record.phase.value}, not waiting")
        if by == record.created_by:
            raise AlertForbidden("the two-person rule needs a second person to confirm")
        expiry = self._tasks.pop(alert_id, None)
        if expiry is not None:
            expiry.cancel()
        if reject:
            record.phase, record.cancelled_by = AlertPhase.REJECTED, by
            record.finished = datetime.now(UTC)
            await self._save(record)
            await self._release_originals(record)
            await self._announce("rejected", record, by)
            return record
        record.phase, record.confirmed_by = AlertPhase.ACTIVATING, by
        await self._save(record)
        await self._announce("issued", record, by)
        self._start(record)
        return record

    async def _expire(self, alert_id: str) -> None:
        record = self.records[alert_id]
        assert record.confirm_by is not None
        await asyncio.sleep(max(0.0, (record.confirm_by - datetime.now(UTC)).total_seconds()))
        if record.phase is AlertPhase.PENDING_CONFIRMATION:
            record.phase, record.finished = AlertPhase.EXPIRED, datetime.now(UTC)
            await self._save(record)
            await self._release_originals(record)
            await self._announce("confirmation_expired", record)
            log.warning("alert.confirmation_expired", alert=alert_id)

    def _start(self, record: AlertRecord) -> None:
        self._tasks[record.id] = asyncio.get_running_loop().create_task(
            self._activate_all(record), name=f"alert:{record.id}"
        )

    async def _activate_all(self, record: AlertRecord) -> None:
        remote = [self.remote.dispatch(record)] if record.sites and self.remote else []
        try:
            await asyncio.gather(*(self._activate_one(record, d) for d in record.devices), *remote)
        except asyncio.CancelledError:  # cancelled: cancel() records the outcome
            self._tasks.pop(record.id, None)
            raise
        if record.phase is AlertPhase.ACTIVATING:
            record.phase = AlertPhase.COMPLETED
        record.finished = datetime.now(UTC)
        log.info("alert.completed", alert=record.id, **record.counts())
        await self._announce("completed", record)  # before the state waiters see
        await self._save(record)
        self._tasks.pop(record.id, None)

    async def _activate_one(self, record: AlertRecord, result: DeviceResult) -> None:
        rt = self.instances.get(result.device)
        driver = rt.driver if rt is not None else None
        state = self.instances.status(result.device)
        if not isinstance(driver, AlertDevice) or state is None or state.state != UnitState.RUNNING:
            why = f"{state.state.value}: {state.reason}" if state else "not configured"
            await self._settle(record, result, DeviceOutcome.UNREACHABLE, 0, f"device is {why}")
            return
        attempts = self.settings.attempts
        delay = self.settings.retry_delay
        detail = ""
        for attempt in range(1, attempts + 1):
            if record.phase is AlertPhase.CANCELLED:
                return
            try:
                async with self._limit:
                    async with asyncio.timeout(driver.context.timeout):
                        answer = await driver.activate(record.alert, record.message)
            except asyncio.CancelledError:
                raise
            except AuthError as exc:
                await self._settle(record, result, DeviceOutcome.FAILED, attempt, str(exc))
                # Not awaited: failing the instance stops its driver, and this call is its own.
                self._failing.spawn(self.instances.fail(result.device, exc))
                return
            except TimeoutError:
                detail = f"no answer within {driver.context.timeout:g} s"
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                outcome = _OUTCOME[answer.outcome]
                if outcome is not DeviceOutcome.UNREACHABLE or attempt == attempts:
                    await self._settle(record, result, outcome, attempt, answer.detail)
                    return
                detail = answer.detail or "unreachable"
            if attempt < attempts:
                await asyncio.sleep(delay * 2 ** (attempt - 1))
        await self._settle(record, result, DeviceOutcome.UNREACHABLE, attempts, detail)

    async def _settle(
        self,
        record: AlertRecord,
        result: DeviceResult,
        outcome: DeviceOutcome,
        attempts: int,
        detail: str,
    ) -> None:
        result.outcome, result.attempts, result.detail = outcome, attempts, detail
        result.at = datetime.now(UTC)
        failed = outcome is not DeviceOutcome.ACTIVATED
        if failed:
            log.warning(
                "alert.device_failed",
                alert=record.id,
                device=result.device,
                outcome=outcome.value,
                detail=detail,
            )
        await self.publish(
            Event(
                type=f"alert.device.{outcome.value}",
                source=f"/nabat/instances/{result.device}",
                subject=result.device,
                correlationid=record.id,
                municipality=result.municipality,
                severity=Severity.SEVERE if failed else Severity.INFO,
                data=DeviceEvent(
                    alert=record.id,
                    device=result.device,
                    outcome=outcome,
                    attempts=attempts,
                    detail=detail,
                ),
            )
        )

    # -- cancel and update ------------------------------------------------------------------
    async def cancel(self, alert_id: str, *, by: str) -> AlertRecord:
        record = await self.get(alert_id)
        if record is None:
            raise AlertNotFound(f"no alert {alert_id!r}")
        if record.phase in (AlertPhase.CANCELLED, AlertPhase.EXPIRED, AlertPhase.REJECTED):
            raise AlertConflict(f"alert {alert_id} is {record.phase.value} already")
        task = self._tasks.pop(alert_id, None)
        record.phase, record.cancelled_by = AlertPhase.CANCELLED, by
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        sounding = [
            d
            for d in record.devices
            if d.outcome in (DeviceOutcome.ACTIVATED, DeviceOutcome.PENDING)
        ]
        remote = [self.remote.cancel(record, by=by)] if record.sites and self.remote else []
        await asyncio.gather(*(self._cancel_one(record, d) for d in sounding), *remote)
        record.finished = datetime.now(UTC)
        await self._save(record)
        log.info("alert.cancelled", alert=alert_id, by=by, devices=len(sounding))
        await self._announce("cancelled", record, by)
        return record

    async def _cancel_one(self, record: AlertRecord, result: DeviceResult) -> None:
        rt = self.instances.get(result.device)
        driver = rt.driver if rt is not None else None
        if not isinstance(driver, AlertDevice):
            result.detail = "cancel not sent: the device is not running"
            return
        try:
            async with asyncio.timeout(driver.context.timeout):
                answer = await driver.cancel(record.id)
        except Exception as exc:
            result.detail = f"cancel failed: {type(exc).__name__}: {exc}"
            log.warning(
                "alert.cancel_failed", alert=record.id, device=result.device, detail=result.detail
            )
            return
        await self._settle(
            record, result, DeviceOutcome.CANCELLED, result.attempts, answer.detail or "cancelled"
        )

    async def update(
        self,
        alert_id: str | Sequence[str],
        *,
        message: WarningMessage | None,
        alert: Alert | None,
        by: str,
        allowed: Callable[[str | None], bool] = lambda m: True,
        as_given: bool = False,
    ) -> AlertRecord:
        """A CAP ``Update`` of ``alert_id`` (or of several alerts): a new alert referencing
        them (new message and/or area), issued like any alert; each original is marked as
        updated. ``<references>`` names each original exactly as it was sent. ``as_given``
        keeps ``alert``'s own identifier and ``sent`` (a CAP Update posted by a caller);
        otherwise the update gets a new identifier, sent now."""
        ids = [alert_id] if isinstance(alert_id, str) else list(alert_id)
        originals = []
        for one in ids:
            original = await self.get(one)
            if original is None:
                raise AlertNotFound(f"no alert {one!r}")
            if original.updated_by is not None:
                raise AlertConflict(f"alert {one} was updated by {original.updated_by}")
            originals.append(original)
        base = alert or originals[-1].alert
        updated = msgspec.structs.replace(
            base,
            identifier=base.identifier if as_given else uuid7(),
            sent=base.sent if as_given else datetime.now(UTC).replace(microsecond=0),
            msg_type=MsgType.UPDATE,
            references=" ".join(reference_to(o.alert) for o in originals),
        )
        record = await self.issue(updated, message or originals[-1].message, by=by, allowed=allowed)
        for original in originals:
            original.updated_by = record.id
            await self._save(original)
        return record

    async def _release_originals(self, record: AlertRecord) -> None:
        """An Update that never sounded (refused, or not confirmed in time) supersedes
        nothing: the alerts it referenced may be updated again."""
        if record.alert.msg_type is not MsgType.UPDATE:
            return
        for reference in parse_references(record.alert.references):
            original = await self.get(reference.identifier)
            if original is not None and original.updated_by == record.id:
                original.updated_by = None
                await self._save(original)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._failing.cancel_all()
