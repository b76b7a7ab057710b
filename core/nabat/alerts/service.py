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

Several hub processes may serve one journal: every change of phase (confirm, reject, expire,
cancel, an update's claim on its original) is a compare-and-swap of the stored record, so of
two processes confirming one alert at once exactly one starts it, and an expiry or a completion
never writes over a cancel made elsewhere. The process that activates keeps the live record
(devices' outcomes as they come) and merges it into the stored one when it finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        self._live: dict[str, AlertRecord] = {}
        """Alerts activating in this process: their devices' outcomes as they come."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._limit = asyncio.Semaphore(self.settings.concurrency)
        self._changed: dict[str, asyncio.Event] = {}
        self._failing = TaskSet("alerts:fail-instance")
        self.remote: RemoteSites | None = None
        """Set by a hub that follows other sites: their devices are reached through them."""

    # -- storage ----------------------------------------------------------------------------
    def _notify(self, alert_id: str) -> None:
        event = self._changed.pop(alert_id, None)
        if event is not None:
            event.set()

    async def _create(self, record: AlertRecord) -> None:
        """Store a new alert; of two processes issuing one identifier, one wins."""
        if not await self.journal.put_record(
            COLLECTION, record.id, _encoder.encode(record), only_new=True
        ):
            raise AlertExists(f"alert {record.id!r} exists already")
        self._notify(record.id)

    async def _change(
        self, alert_id: str, change: Callable[[AlertRecord], bool | None]
    ) -> AlertRecord | None:
        """Change the stored record by compare-and-swap against every process on the journal:
        ``change`` edits a fresh copy (called again if another writer came first), returns
        False to leave it, or raises :class:`AlertError` to refuse. The record written, or
        None when left (or absent)."""

        def apply(body: bytes) -> bytes | None:
            record = _decoder.decode(body)
            return None if change(record) is False else _encoder.encode(record)

        written = await self.journal.update_record(COLLECTION, alert_id, apply)
        if written is None:
            return None
        self._notify(alert_id)
        return _decoder.decode(written)

    async def _stored(self, alert_id: str) -> AlertRecord | None:
        stored = await self.journal.get_record(COLLECTION, alert_id)
        return None if stored is None else _decoder.decode(stored.body)

    async def get(self, alert_id: str) -> AlertRecord | None:
        return self._live.get(alert_id) or await self._stored(alert_id)

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
        found.update(self._live)
        return sorted(found.values(), key=lambda r: r.created, reverse=True)[:limit]

    async def wait(self, alert_id: str, timeout: float) -> AlertRecord | None:
        """The stored record once it is no longer activating (or after ``timeout``). Another
        process may finish it: the journal is asked again every second too."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed.setdefault(alert_id, asyncio.Event())
                record = await self._stored(alert_id)
                if record is None or record.phase is not AlertPhase.ACTIVATING:
                    return record
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await changed.wait()

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
        await self._create(record)
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
                self._expire(record.id, record.confirm_by),
                name=f"alert-expiry:{record.id}",  # type: ignore[arg-type]
            )
        else:
            await self._announce("issued", record, by)
            self._start(record)
        return record

    async def confirm(self, alert_id: str, *, by: str, reject: bool = False) -> AlertRecord:
        if await self._stored(alert_id) is None:
            raise AlertNotFound(f"no alert {alert_id!r}")
        now = datetime.now(UTC)

        def confirming(record: AlertRecord) -> None:
            if record.phase is not AlertPhase.PENDING_CONFIRMATION:
                raise AlertConflict(f"alert {alert_id} is {record.phase.value}, not waiting")
            if by == record.created_by:
                raise AlertForbidden("the two-person rule needs a second person to confirm")
            if record.confirm_by is not None and now >= record.confirm_by:
                record.phase, record.finished = AlertPhase.EXPIRED, now
            elif reject:
                record.phase, record.cancelled_by, record.finished = AlertPhase.REJECTED, by, now
            else:
                record.phase, record.confirmed_by = AlertPhase.ACTIVATING, by

        record = await self._change(alert_id, confirming)
        assert record is not None  # confirming never leaves the record
        expiry = self._tasks.pop(alert_id, None)
        if expiry is not None:
            expiry.cancel()
        if record.phase is AlertPhase.EXPIRED:  # its expiry's process is gone, or late
            await self._expired(record)
            raise AlertConflict(f"alert {alert_id} was not confirmed in time")
        if record.phase is AlertPhase.REJECTED:
            await self._release_originals(record)
            await self._announce("rejected", record, by)
            return record
        await self._announce("issued", record, by)
        self._start(record)
        return record

    async def _expire(self, alert_id: str, confirm_by: datetime) -> None:
        await asyncio.sleep(max(0.0, (confirm_by - datetime.now(UTC)).total_seconds()))
        self._tasks.pop(alert_id, None)

        def expiring(record: AlertRecord) -> bool:
            if record.phase is not AlertPhase.PENDING_CONFIRMATION:
                return False  # confirmed or rejected meanwhile, maybe in another process
            record.phase, record.finished = AlertPhase.EXPIRED, datetime.now(UTC)
            return True

        record = await self._change(alert_id, expiring)
        if record is not None:
            await self._expired(record)

    async def _expired(self, record: AlertRecord) -> None:
        await self._release_originals(record)
        await self._announce("confirmation_expired", record)
        log.warning("alert.confirmation_expired", alert=record.id)

    def _start(self, record: AlertRecord) -> None:
        self._live[record.id] = record
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
        if record.phase is AlertPhase.COMPLETED:
            log.info("alert.completed", alert=record.id, **record.counts())
            await self._announce("completed", record)  # before the state waiters see

        def finishing(stored: AlertRecord) -> None:
            # A cancel made in another process meanwhile stands, with its devices' outcomes.
            cancelled = {
                d.device: d for d in stored.devices if d.outcome is DeviceOutcome.CANCELLED
            }
            stored.devices = [cancelled.get(d.device, d) for d in record.devices]
            if stored.phase is AlertPhase.ACTIVATING:
                stored.phase = record.phase
            stored.finished = stored.finished or record.finished

        try:
            await self._change(record.id, finishing)
        finally:
            self._live.pop(record.id, None)
            self._tasks.pop(record.id, None)

    async def _cancelled_elsewhere(self, record: AlertRecord) -> bool:
        """Whether another process cancelled the alert this one is activating; the local
        record learns it, so every device's loop stops."""
        if record.phase is not AlertPhase.CANCELLED:
            stored = await self._stored(record.id)
            if stored is not None and stored.phase is AlertPhase.CANCELLED:
                record.phase, record.cancelled_by = AlertPhase.CANCELLED, stored.cancelled_by
        return record.phase is AlertPhase.CANCELLED

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
            if record.phase is AlertPhase.CANCELLED or (
                attempt > 1 and await self._cancelled_elsewhere(record)
            ):
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
                    if outcome is DeviceOutcome.ACTIVATED and await self._cancelled_elsewhere(
                        record
                    ):
                        # Sounding after a cancel elsewhere had sent its own: stop it here.
                        await self._cancel_one(record, result)
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
        if await self._stored(alert_id) is None:
            raise AlertNotFound(f"no alert {alert_id!r}")

        def cancelling(stored: AlertRecord) -> None:
            if stored.phase in (AlertPhase.CANCELLED, AlertPhase.EXPIRED, AlertPhase.REJECTED):
                raise AlertConflict(f"alert {alert_id} is {stored.phase.value} already")
            stored.phase, stored.cancelled_by = AlertPhase.CANCELLED, by

        stored = await self._change(alert_id, cancelling)
        assert stored is not None  # cancelling never leaves the record
        task = self._tasks.pop(alert_id, None)
        # Activating here: this process knows each device's outcome as it is now. Elsewhere
        # (or done): the stored record's, and the activating process cancels what sounds
        # after this.
        record = self._live.pop(alert_id, None) or stored
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

        def finishing(stored: AlertRecord) -> None:
            stored.devices, stored.finished = record.devices, record.finished

        record = await self._change(alert_id, finishing) or record
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
            original = await self._stored(one)
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
        # Each original is claimed before the update is issued: of two updates of one alert
        # (in any two processes) one gets it, the other is refused before it sounds.
        claimed: list[str] = []

        def claiming(stored: AlertRecord) -> None:
            if stored.updated_by is not None:
                raise AlertConflict(f"alert {stored.id} was updated by {stored.updated_by}")
            stored.updated_by = updated.identifier

        try:
            for original in originals:
                await self._change(original.id, claiming)
                claimed.append(original.id)
            return await self.issue(
                updated, message or originals[-1].message, by=by, allowed=allowed
            )
        except BaseException:
            for one in claimed:
                await self._unclaim(one, updated.identifier)
            raise

    async def _unclaim(self, alert_id: str, by_update: str) -> None:
        def releasing(stored: AlertRecord) -> bool:
            if stored.updated_by != by_update:
                return False
            stored.updated_by = None
            return True

        await self._change(alert_id, releasing)

    async def _release_originals(self, record: AlertRecord) -> None:
        """An Update that never sounded (refused, or not confirmed in time) supersedes
        nothing: the alerts it referenced may be updated again."""
        if record.alert.msg_type is not MsgType.UPDATE:
            return
        for reference in parse_references(record.alert.references):
            await self._unclaim(reference.identifier, record.id)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._failing.cancel_all()
