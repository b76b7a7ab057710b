"""A site's side of commands down: the region's alerts sounded here, its calls answered.

The site's JetStream *mirrors* the region's ``CMD_<site>`` stream (``[federation]
commands_from`` names the region's domain), so commands sent during a cut arrive when the
link returns. The hub reads the mirror with a durable consumer and acts on each command
only when it is signed by a key of ``[federation] command_keys``, meant for this site and
still within its deadline (:func:`~.commands.open_signed`). Its answer goes up as an event
— ``command.accepted``, ``command.expired`` or ``command.refused`` — and the alert's own
``alert.*`` events follow, as for any alert of this site. A command is acknowledged only
once its answer is in the journal (so up to the region): a hub killed in between acts on it
again, which is harmless (an alert is one per identifier).

Calls (snapshot, PTZ, presets) arrive by request/reply on ``nabat.call.<site>.>`` (a queue
group, so several hub processes of a site share them) and are answered at once, or not at
all: an answer that cannot arrive in time is worth nothing to the waiting operator.
Each call and each command is in the site's audit log with the region's operator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ..alerts import AlertConflict, AlertError, AlertExists, AlertNotFound, NoDevices
from ..cameras.failures import camera_failure
from ..config.model import FederationSettings
from ..events import Event, Severity
from ..interfaces import Camera
from ..interfaces.camera import PtzCommand
from ..interfaces.payloads import UnitKind, UnitState
from ..logs import get_logger
from .commands import (
    CALL_PREFIX,
    Call,
    Command,
    Expired,
    Refused,
    command_stream,
    command_subject,
    open_signed,
)
from .connection import Connection, add_durable, consume, ensure_stream
from .dispatch import COMMAND_STREAM_MAX_BYTES

if TYPE_CHECKING:
    from ..alerts import AlertService
    from ..cameras.snapshots import SnapshotService
    from ..instances import Instances
    from ..store import Journal
    from ..supervisor import Supervisor


class Hub(Protocol):
    """What of the hub a site's command taker uses."""

    name: str
    alerts: AlertService
    journal: Journal
    units: Instances
    supervisor: Supervisor
    snapshots: SnapshotService
    camera_states: Any

    async def publish(self, event: Event) -> None: ...


__all__ = ["CALLS_AT_ONCE", "CANCELLED", "CommandTaker", "RemoteCamera"]

log = get_logger("nabat.federation")

CANCELLED = "federation.cancelled"
"""Alerts the region cancelled before their issue command was acted on here: one that then
arrives is refused."""
CALLS_AT_ONCE = 16
BATCH = 16
MIRROR_MAX_AGE_S = 86_400.0


class _Answer(msgspec.Struct, kw_only=True):
    command: str
    kind: str
    alert: str | None = None
    detail: str = ""
    devices: int | None = None
    by: str = ""


class CommandTaker:
    """Built by the hub when ``[federation] commands_from`` is set."""

    def __init__(self, settings: FederationSettings, *, site: str, hub: Hub) -> None:
        assert settings.commands_from is not None
        self.settings = settings
        self.site = site
        self.region = settings.commands_from
        self.hub = hub
        self.source = f"/nabat/hubs/{hub.name}/federation"
        self.connection = Connection(settings, name=f"nabat {hub.name} ({site}) commands")
        self.taken = 0
        self.refused = 0
        self.calls = 0
        self._seen: dict[str, datetime] = {}
        self._limit = asyncio.Semaphore(CALLS_AT_ONCE)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[None] | None = None

    @property
    def durable(self) -> str:
        return f"nabat-{self.site}"

    def start(self) -> None:
        self._main = asyncio.ensure_future(self._run())
        self._main.set_name("federation-commands")

    async def _prepare(self, js: Any) -> None:
        from nats.js.api import (
            ExternalStream,
            RetentionPolicy,
            StorageType,
            StreamConfig,
            StreamSource,
        )

        name = command_stream(self.site)
        config = StreamConfig(
            name=name,
            mirror=StreamSource(
                name=name,
                external=ExternalStream(
                    api=f"$JS.{self.region}.API", deliver=f"deliver.{self.site}.cmd"
                ),
            ),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=MIRROR_MAX_AGE_S,
            max_bytes=COMMAND_STREAM_MAX_BYTES,
            description=f"Nabat {self.site}: the commands of {self.region}",
        )
        await ensure_stream(js, config, region=self.region)
        await add_durable(js, name, self.durable, max_ack_pending=BATCH * 4)

    async def _run(self) -> None:
        await self.connection.open(self._prepare)
        await self.connection.nc.subscribe(
            f"{CALL_PREFIX}.{self.site}.>", queue=self.durable, cb=self._on_call
        )
        await self._take_commands()

    async def close(self) -> None:
        tasks = [t for t in (self._main, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.connection.close()

    # -- commands ---------------------------------------------------------------------------
    async def _take_commands(self) -> None:
        async def handle(messages: list[Any]) -> None:
            for message in messages:
                await self._take(message)

        await consume(
            self.connection,
            stream=command_stream(self.site),
            durable=self.durable,
            batch=BATCH,
            prepare=self._prepare,
            handle=handle,
            site=self.site,
        )

    async def _take(self, message: Any) -> None:
        try:
            command = open_signed(
                message.data,
                message.headers,
                keys=self.settings.command_keys,
                site=self.site,
                kind=Command,
            )
            assert isinstance(command, Command)
            if message.subject != command_subject(self.site, command.kind):
                raise Refused(f"its subject {message.subject!r} is not its kind's")
        except Expired as exc:
            late = exc.message
            assert isinstance(late, Command)
            await self._answer(late, "expired", str(exc), severity=Severity.SEVERE)
            await message.ack()
            return
        except Refused as exc:  # not the region's: said here, never acted on, not redelivered
            self.refused += 1
            log.error(
                "federation.command_refused",
                site=self.site,
                subject=message.subject,
                reason=str(exc),
            )
            await self.hub.publish(
                Event(
                    type="command.refused",
                    source=self.source,
                    subject=message.subject,
                    severity=Severity.SEVERE,
                    data={"command": "", "kind": "", "detail": f"not acted on: {exc}"},
                )
            )
            await message.term()
            return
        outcome, detail, devices = await self._act(command)  # raises: redelivered later
        self.taken += 1
        await self._answer(
            command,
            outcome,
            detail,
            devices=devices,
            severity=Severity.INFO if outcome == "accepted" else Severity.SEVERE,
        )
        await message.ack()

    async def _act(self, command: Command) -> tuple[str, str, int | None]:
        alerts = self.hub.alerts
        by = f"{command.sender}: {command.by}"
        self._audit(command.by, f"federation {command.kind}", {"alert": command.alert_id or ""})
        if command.kind == "alert.cancel":
            assert command.alert_id is not None
            try:
                record = await alerts.cancel(command.alert_id, by=by)
            except AlertNotFound:
                # Not here yet (still behind in the stream, or taken by another process of
                # this site): it must not sound when it comes.
                await self.hub.journal.put_record(CANCELLED, command.alert_id, b"{}")
                return "accepted", "cancelled before it sounded here", 0
            except AlertConflict as exc:
                return "accepted", str(exc), None
            return "accepted", "cancelled", len(record.devices)
        assert command.alert is not None and command.message is not None
        alert_id = command.alert.identifier
        if await self.hub.journal.get_record(CANCELLED, alert_id) is not None:
            return "refused", "the region cancelled it before it arrived", 0
        reach = set(command.municipalities) if command.municipalities is not None else None
        try:
            record = await alerts.issue(
                command.alert,
                command.message,
                by=by,
                allowed=lambda m: reach is None or m in reach,
                confirmed_by=f"{command.sender}: {command.confirmed_by or command.by}",
            )
        except AlertExists:  # acted on before (a redelivery): say so again
            existing = await alerts.get(alert_id)
            return "accepted", "taken already", len(existing.devices) if existing else None
        except NoDevices:
            return "accepted", f"no warning device of site {self.site} is in the area", 0
        except AlertError as exc:
            return "refused", str(exc), None
        return "accepted", f"sounding on {len(record.devices)} devices", len(record.devices)

    async def _answer(
        self,
        command: Command,
        outcome: str,
        detail: str,
        *,
        devices: int | None = None,
        severity: Severity = Severity.INFO,
    ) -> None:
        log.info(
            "federation.command_taken",
            site=self.site,
            command=command.id,
            kind=command.kind,
            outcome=outcome,
            detail=detail,
        )
        alert = command.alert.identifier if command.alert is not None else command.alert_id
        await self.hub.publish(
            Event(
                type=f"command.{outcome}",
                source=self.source,
                id=f"{command.id}.{outcome}",
                subject=command.id,
                correlationid=alert,
                severity=severity,
                data=_Answer(
                    command=command.id,
                    kind=command.kind,
                    alert=alert,
                    detail=detail,
                    devices=devices,
                    by=command.by,
                ),
            )
        )

    def _audit(self, by: str, action: str, detail: dict[str, Any]) -> None:
        from ..api.audit import AuditLog

        audit = AuditLog(self.hub.journal)
        audit.record(f"{self.region}:{by}", action, detail=detail)
        task = asyncio.ensure_future(audit.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- calls ------------------------------------------------------------------------------
    async def _on_call(self, message: Any) -> None:
        task = asyncio.ensure_future(self._call(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, message: Any) -> None:
        async with self._limit:
            try:
                call = open_signed(
                    message.data,
                    message.headers,
                    keys=self.settings.command_keys,
                    site=self.site,
                    kind=Call,
                )
                assert isinstance(call, Call)
                if message.reply != call.reply:
                    raise Refused("its answer would go elsewhere than the caller said")
                if call.id in self._seen:
                    raise Refused("a replay of an earlier call")
                if not message.subject.endswith(f".{call.kind}"):
                    raise Refused("its subject is not its kind's")
            except Refused as exc:
                self.refused += 1
                log.error(
                    "federation.call_refused",
                    site=self.site,
                    subject=message.subject,
                    reason=str(exc),
                )
                return  # no answer: whoever sent it learns nothing
            self._remember(call)
            self.calls += 1
            self._audit(
                call.by, f"federation {call.kind}", {"camera": call.camera, "call": call.id}
            )
            try:
                async with asyncio.timeout(
                    max(0.1, (call.deadline - datetime.now(UTC)).total_seconds())
                ):
                    status, content_type, body, extra = await self._answer_call(call)
            except TimeoutError:
                status, content_type, body, extra = _problem(
                    504, "the camera did not answer in time"
                )
            if datetime.now(UTC) >= call.deadline:
                return  # too late to matter: the caller has given up
            with contextlib.suppress(Exception):
                await self.connection.nc.publish(
                    message.reply,
                    body,
                    headers={"Nabat-Status": str(status), "Content-Type": content_type, **extra},
                )

    def _cameras(self, reach: Callable[[str | None], bool]) -> list[RemoteCamera]:
        from ..cameras.report import bucket

        states = self.hub.camera_states.all()
        found = []
        for rt in self.hub.units.cameras():
            if not reach(rt.entry.municipality):
                continue
            state = states.get(rt.id)
            found.append(
                RemoteCamera(
                    id=rt.id,
                    name=rt.entry.name or rt.id,
                    municipality=rt.entry.municipality,
                    status=bucket(state.state if state else None),
                    since=state.since if state else None,
                    reason=state.reason if state else "",
                )
            )
        return sorted(found, key=lambda c: c.id)

    def _remember(self, call: Call) -> None:
        now = datetime.now(UTC)
        self._seen = {k: v for k, v in self._seen.items() if v > now}
        self._seen[call.id] = call.deadline

    async def _answer_call(self, call: Call) -> tuple[int, str, bytes, dict[str, str]]:
        hub = self.hub
        reach: Callable[[str | None], bool] = (
            (lambda m: True)
            if call.municipalities is None
            else (lambda m: m in (call.municipalities or ()))
        )
        if call.kind == "camera.list":
            return 200, "application/json", msgspec.json.encode(self._cameras(reach)), {}
        rt = hub.units.get(call.camera)
        if rt is None or not rt.is_camera or not reach(rt.entry.municipality):
            return _problem(404, f"no camera {call.camera!r} at site {self.site}")
        unit = hub.supervisor.status(UnitKind.INSTANCE, rt.id)
        camera = rt.driver
        if unit is None or unit.state is not UnitState.RUNNING or not isinstance(camera, Camera):
            state = unit.state.value if unit else "not started"
            return _problem(503, f"camera {rt.id} is {state}")
        try:
            if call.kind == "camera.snapshot":
                picture = await hub.snapshots.get(rt.id, camera, max_age=call.max_age)
                return (
                    200,
                    picture.content_type,
                    picture.content,
                    {"Nabat-Taken-At": picture.taken_at.astimezone(UTC).isoformat()},
                )
            if call.kind == "camera.ptz":
                command = msgspec.convert(call.ptz, PtzCommand)
                async with asyncio.timeout(rt.entry.timeout):
                    await camera.ptz(command)
                return 204, "application/json", b"", {}
            async with asyncio.timeout(rt.entry.timeout):
                presets = await camera.presets()
            return 200, "application/json", msgspec.json.encode(presets), {}
        except msgspec.ValidationError as exc:
            return _problem(422, f"not a PTZ command: {exc}")
        except Exception as exc:
            failure = camera_failure(rt.id, exc)
            return _problem(failure.status, failure.detail)


class RemoteCamera(msgspec.Struct, kw_only=True):
    """A camera of a site as the region lists it."""

    id: str
    name: str
    municipality: str | None
    status: str
    """``ok``, ``degraded``, ``offline`` or ``unknown``, as the site's own list says."""
    since: datetime | None = None
    reason: str = ""


def _problem(status: int, detail: str) -> tuple[int, str, bytes, dict[str, str]]:
    return status, "application/json", msgspec.json.encode({"detail": detail}), {}
