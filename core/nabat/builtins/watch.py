"""Built-in plugin ``watch``: polls every camera and warning device and publishes changes.

Each running :class:`~nabat.interfaces.Camera` is probed and each
:class:`~nabat.interfaces.AlertDevice` polled for status on an interval (with jitter, under a
global concurrency limit, each call bounded by the instance's ``timeout``). Only changes are
published: ``camera.health.<state>`` and ``siren.status.<state>``. Camera health goes through
hysteresis (:mod:`nabat.cameras.hysteresis`): down after ``fail_after`` consecutive bad probes,
back after ``recover_after`` good ones, so one lost probe raises no alarm. A call that raises or
overruns counts as ``unreachable`` / ``offline`` with the reason; one that raises
``AuthError`` also puts the instance in ``needs_auth`` (the hub restarts it later).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from ..cameras.hysteresis import HealthTracker
from ..cameras.probe import mask_urls
from ..cameras.workers import set_camera_workers
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
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 64
    """Probes and polls in flight at once (also the threads that open camera streams)."""
    worker_processes: Annotated[int, msgspec.Meta(ge=0, le=16)] = 1
    """Processes that open and decode camera streams, off the hub's event loop (0: threads
    in the hub's process — simpler, but a sweep then slows every event's latency)."""
    fail_after: Annotated[int, msgspec.Meta(ge=1)] = 3
    """Consecutive bad probes before a camera is reported down (or its fault as changed)."""
    recover_after: Annotated[int, msgspec.Meta(ge=1)] = 2
    """Consecutive good probes before a down camera is reported back."""


class _Sweep:
    """Progress of one sweep: logged at the start, every 10 % of a large one, and at the end
    with its duration and rate, and on ``/metrics`` (``nabat_progress_*{task="sweep.camera"}``),
    so a sweep of thousands of cameras is never a black box."""

    def __init__(self, hub: HubAPI, kind: str, total: int) -> None:
        self.kind = kind
        self.total = total
        self.run = hub.progress(f"sweep.{kind}", total)
        self._next_report = max(1, total // 10) if total >= 100 else total + 1
        if total:
            log.info("watch.sweep_started", kind=kind, total=total)

    @property
    def done(self) -> int:
        return self.run.done

    @property
    def finished(self) -> float | None:
        return self.run.finished

    def skip(self, count: int) -> None:
        for _ in range(count):
            self.one_done()

    def one_done(self) -> None:
        self.run.advance()
        done = self.run.done
        if done >= self._next_report and done < self.total:
            self._next_report += max(1, self.total // 10)
            log.info(
                "watch.sweep_progress",
                kind=self.kind,
                done=done,
                total=self.total,
                seconds=round(self.run.seconds, 1),
            )
        if done == self.total:
            seconds = self.run.seconds
            log.info(
                "watch.sweep_finished",
                kind=self.kind,
                total=self.total,
                seconds=round(seconds, 2),
                per_second=round(self.total / seconds, 1) if seconds > 0 else None,
            )


class Watcher:
    def __init__(self, hub: HubAPI, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings
        self.limit = asyncio.Semaphore(settings.concurrency)
        self.cameras: dict[str, HealthState] = {}
        self.trackers: dict[str, HealthTracker] = {}
        self.devices: dict[str, DeviceState] = {}
        self.in_flight: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.sweeps: dict[str, _Sweep] = {}
        """The latest sweep per kind (``camera``, ``device``): progress for logs and metrics."""

    async def _bounded(self, driver: Driver, call: Any) -> Any:
        async with self.limit:
            async with asyncio.timeout(driver.context.timeout):
                return await call

    async def _ask(self, driver: Driver, call: Any, failed: Callable[[str, str], Any]) -> Any:
        """The bounded call's answer; an exception becomes ``failed(reason, code)`` (code
        ``credentials_rejected``, ``probe_timeout`` or ``probe_error``), and a rejected
        credential also puts the instance in ``needs_auth``."""
        try:
            return await self._bounded(driver, call)
        except AuthError as exc:
            await self.hub.instance_failed(driver.context.instance_id, exc)
            return failed(str(exc), "credentials_rejected")
        except TimeoutError:
            return failed(
                f"TimeoutError: no answer in {driver.context.timeout:g} s", "probe_timeout"
            )
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return failed(detail, "probe_error")

    async def _publish_change(
        self,
        driver: Driver,
        known: dict[str, Any],
        state: Any,
        prefix: str,
        severity: Severity,
        change: Callable[[Any], Any],
    ) -> None:
        """Publish ``<prefix>.<state>`` when ``state`` differs from the last one seen."""
        ctx = driver.context
        previous = known.get(ctx.instance_id)
        if previous == state:
            return
        known[ctx.instance_id] = state
        await self.hub.publish(
            ctx.event(f"{prefix}.{state.value}", change(previous), severity=severity)
        )

    async def probe_camera(self, camera: Camera) -> None:
        def failed(reason: str, code: str) -> CameraHealth:
            auth = code == "credentials_rejected"
            state = HealthState.AUTH_FAILED if auth else HealthState.UNREACHABLE
            text = reason if auth else f"probe failed: {reason}"
            return CameraHealth(
                state=state, checked_at=datetime.now(UTC), reason=text, reason_code=code
            )

        health: CameraHealth = await self._ask(camera, camera.probe(), failed)
        instance_id = camera.context.instance_id
        self.hub.camera_probed(instance_id, health.checked_at)
        tracker = self.trackers.get(instance_id)
        if tracker is None:
            # Resume from the state last reported (before a restart, or by another process),
            # so an unchanged camera is not announced again.
            last = self.hub.last_health(instance_id)
            if last is not None:
                self.cameras.setdefault(instance_id, last)
            tracker = self.trackers[instance_id] = HealthTracker(
                fail_after=self.settings.fail_after,
                recover_after=self.settings.recover_after,
                reported=self.cameras.get(instance_id),
            )
        if tracker.observe(health) is not None:
            await self._report_camera(camera, health)
        if health.state is HealthState.AUTH_FAILED:
            # Rejected credentials need an operator: the instance goes to needs_auth and is
            # restarted every [hub] needs_auth_retry, re-reading its secret (a fixed file).
            await self.hub.instance_failed(instance_id, AuthError(health.reason))

    async def _report_camera(self, camera: Camera, health: CameraHealth) -> None:
        await self._publish_change(
            camera,
            self.cameras,
            health.state,
            "camera.health",
            _CAMERA_SEVERITY.get(health.state, Severity.SEVERE),
            lambda previous: CameraHealthChange(
                camera=camera.context.instance_id,
                state=health.state,
                previous=previous,
                checked_at=health.checked_at,
                # Drivers' messages may carry the camera's address: never an operator's business.
                reason=mask_urls(health.reason),
                reason_code=health.reason_code,
                codec=health.codec,
                width=health.width,
                height=health.height,
                fps=health.fps,
            ),
        )

    async def poll_device(self, device: AlertDevice) -> None:
        def failed(reason: str, code: str) -> DeviceStatus:
            auth = code == "credentials_rejected"
            text = reason if auth else f"status poll failed: {reason}"
            return DeviceStatus(
                state=DeviceState.OFFLINE, checked_at=datetime.now(UTC), detail=text
            )

        status: DeviceStatus = await self._ask(device, device.status(), failed)
        await self._publish_change(
            device,
            self.devices,
            status.state,
            "siren.status",
            _DEVICE_SEVERITY.get(status.state, Severity.SEVERE),
            lambda previous: DeviceStatusChange(
                device=device.context.instance_id,
                state=status.state,
                previous=previous,
                checked_at=status.checked_at,
                detail=status.detail,
                mains_ok=status.mains_ok,
                battery_pct=status.battery_pct,
                tamper=status.tamper,
            ),
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
            self._launch(driver, self.probe_camera)
        elif isinstance(driver, AlertDevice):
            self._launch(driver, self.poll_device)

    def _launch(self, driver: Driver, check: Callable[[Any], Awaitable[None]]) -> bool:
        """Start one probe/poll (the first, as a device starts) as its own task unless one
        for the device is still running.

        Each is bounded by its instance's timeout, not by the job's period, so a slow device
        is reported unreachable instead of being cut off silently by the next sweep.
        """
        instance_id = driver.context.instance_id
        if instance_id in self.in_flight:
            return False
        self.in_flight.add(instance_id)

        async def run() -> None:
            try:
                await check(driver)
            finally:
                self.in_flight.discard(instance_id)

        task = asyncio.get_running_loop().create_task(run(), name=f"watch:{instance_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    def _sweep(
        self, kind: str, drivers: list[Any], check: Callable[[Any], Awaitable[None]]
    ) -> None:
        """Run one sweep in the background: ``concurrency`` worker tasks take the devices in
        turn (not one task per device: creating 10,000 tasks at once stalls the loop), a
        device whose previous probe is still running is skipped, progress is reported."""
        sweep = _Sweep(self.hub, kind, len(drivers))
        self.sweeps[kind] = sweep
        queue = collections.deque(drivers)
        skipped = 0

        async def work() -> None:
            nonlocal skipped
            while queue:
                driver = queue.popleft()
                instance_id = driver.context.instance_id
                if instance_id in self.in_flight:
                    skipped += 1
                    sweep.one_done()
                    continue
                self.in_flight.add(instance_id)
                try:
                    await check(driver)
                except Exception as exc:  # a bug in one probe must not end the sweep
                    log.error("watch.check_failed", instance=instance_id, exc_info=exc)
                finally:
                    self.in_flight.discard(instance_id)
                    sweep.one_done()
                await asyncio.sleep(0)  # let the loop breathe between devices

        async def run() -> None:
            workers = min(self.settings.concurrency, len(drivers))
            await asyncio.gather(*(work() for _ in range(workers)))
            if skipped:
                log.warning("watch.still_in_flight", kind=kind, skipped=skipped, total=len(drivers))

        task = asyncio.get_running_loop().create_task(run(), name=f"watch:sweep:{kind}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def sweep_cameras(self) -> None:
        self._sweep("camera", self.hub.instances(Camera), self.probe_camera)

    async def sweep_devices(self) -> None:
        self._sweep("device", self.hub.instances(AlertDevice), self.poll_device)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


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
        # Camera probes decode in worker threads: as many as probes may run at once.
        set_camera_workers(settings.concurrency, settings.worker_processes)
        self.watcher = Watcher(hub, settings)

    @hookimpl
    async def shutdown(self) -> None:
        if self.watcher is not None:
            await self.watcher.close()

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
