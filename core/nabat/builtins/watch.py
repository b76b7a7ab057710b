"""Built-in plugin ``watch``: polls every camera and warning device and publishes changes.

Each running :class:`~nabat.interfaces.Camera` is probed and each
:class:`~nabat.interfaces.AlertDevice` polled for status on an interval (with jitter, under a
global concurrency limit, each call bounded by the instance's ``timeout``). Only changes are
published: ``camera.health.<state>`` and ``siren.status.<state>``. A call that raises or
overruns counts as ``unreachable`` / ``offline`` with the reason; one that raises
``AuthError`` also puts the instance in ``needs_auth`` (the hub restarts it later).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec

from ..events import Event, Severity
from ..hookspecs import hookimpl
from ..interfaces import (
    AlertDevice,
    AuthError,
    Camera,
    CameraHealth,
    CameraHealthChange,
    DeviceState,
    DeviceStatus,
    DeviceStatusChange,
    Driver,
    HealthState,
    HubAPI,
    Job,
    Listener,
    UnitKind,
    UnitStatus,
)
from ..logs import get_logger

log = get_logger("nabat.watch")

_CAMERA_SEVERITY = {
    HealthState.OK: Severity.INFO,
    HealthState.BLACK: Severity.MODERATE,
    HealthState.FROZEN: Severity.MODERATE,
}
_DEVICE_SEVERITY = {DeviceState.IDLE: Severity.INFO, DeviceState.ACTIVE: Severity.INFO}


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    camera_interval: float = 30.0
    device_interval: float = 60.0
    jitter: float = 2.0
    concurrency: int = 32


class Watcher:
    def __init__(self, hub: HubAPI, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings
        self.limit = asyncio.Semaphore(settings.concurrency)
        self.cameras: dict[str, HealthState] = {}
        self.devices: dict[str, DeviceState] = {}

    async def _bounded(self, driver: Driver, call: Any) -> Any:
        async with self.limit:
            async with asyncio.timeout(driver.context.timeout):
                return await call

    async def probe_camera(self, camera: Camera) -> None:
        ctx = camera.context
        try:
            health: CameraHealth = await self._bounded(camera, camera.probe())
        except AuthError as exc:
            health = CameraHealth(
                state=HealthState.AUTH_FAILED, checked_at=datetime.now(UTC), reason=str(exc)
            )
            await self.hub.instance_failed(ctx.instance_id, exc)
        except Exception as exc:
            health = CameraHealth(
                state=HealthState.UNREACHABLE,
                checked_at=datetime.now(UTC),
                reason=f"probe failed: {type(exc).__name__}: {exc}"
                if str(exc)
                else f"probe failed: {type(exc).__name__}",
            )
        previous = self.cameras.get(ctx.instance_id)
        if previous == health.state:
            return
        self.cameras[ctx.instance_id] = health.state
        change = CameraHealthChange(
            camera=ctx.instance_id,
            state=health.state,
            previous=previous,
            checked_at=health.checked_at,
            reason=health.reason,
            codec=health.codec,
            width=health.width,
            height=health.height,
            fps=health.fps,
        )
        await self.hub.publish(
            ctx.event(
                f"camera.health.{health.state.value}",
                change,
                severity=_CAMERA_SEVERITY.get(health.state, Severity.SEVERE),
            )
        )

    async def poll_device(self, device: AlertDevice) -> None:
        ctx = device.context
        try:
            status: DeviceStatus = await self._bounded(device, device.status())
        except AuthError as exc:
            status = DeviceStatus(
                state=DeviceState.OFFLINE, checked_at=datetime.now(UTC), detail=str(exc)
            )
            await self.hub.instance_failed(ctx.instance_id, exc)
        except Exception as exc:
            status = DeviceStatus(
                state=DeviceState.OFFLINE,
                checked_at=datetime.now(UTC),
                detail=f"status poll failed: {type(exc).__name__}: {exc}",
            )
        previous = self.devices.get(ctx.instance_id)
        if previous == status.state:
            return
        self.devices[ctx.instance_id] = status.state
        change = DeviceStatusChange(
            device=ctx.instance_id,
            state=status.state,
            previous=previous,
            checked_at=status.checked_at,
            detail=status.detail,
            mains_ok=status.mains_ok,
            battery_pct=status.battery_pct,
            tamper=status.tamper,
        )
        await self.hub.publish(
            ctx.event(
                f"siren.status.{status.state.value}",
                change,
                severity=_DEVICE_SEVERITY.get(status.state, Severity.SEVERE),
            )
        )

    async def on_running(self, event: Event) -> None:
        """Probe an instance as soon as it starts, so its state is known in seconds."""
        status = event.data
        if not isinstance(status, UnitStatus) or status.kind is not UnitKind.INSTANCE:
            return
        try:
            driver = self.hub.instance(status.name)
        except KeyError:
            return
        if isinstance(driver, Camera):
            await self.probe_camera(driver)
        elif isinstance(driver, AlertDevice):
            await self.poll_device(driver)

    async def sweep_cameras(self) -> None:
        cameras = self.hub.instances(Camera)
        await asyncio.gather(*(self.probe_camera(c) for c in cameras))

    async def sweep_devices(self) -> None:
        devices = self.hub.instances(AlertDevice)
        await asyncio.gather(*(self.poll_device(d) for d in devices))


class WatchPlugin:
    """A class-based plugin: one instance per hub holds the last known states."""

    def __init__(self) -> None:
        self.watcher: Watcher | None = None

    @hookimpl
    def plugin_settings(self) -> type[Settings]:
        return Settings

    @hookimpl
    def register_event_types(self) -> dict[str, type]:
        return {"camera.health.*": CameraHealthChange, "siren.status.*": DeviceStatusChange}

    @hookimpl
    async def startup(self, hub: HubAPI, settings: Settings) -> None:
        self.watcher = Watcher(hub, settings)

    @hookimpl
    def register_listeners(self, hub: HubAPI) -> list[Listener]:
        assert self.watcher is not None
        return [
            Listener(
                patterns=["hub.unit.running"], handler=self.watcher.on_running, name="first-probe"
            )
        ]

    @hookimpl
    def register_jobs(self, settings: Settings) -> list[Job]:
        watcher = self.watcher
        assert watcher is not None
        return [
            Job(
                id="cameras",
                func=watcher.sweep_cameras,
                every=settings.camera_interval,
                jitter=settings.jitter,
            ),
            Job(
                id="devices",
                func=watcher.sweep_devices,
                every=settings.device_interval,
                jitter=settings.jitter,
            ),
        ]
