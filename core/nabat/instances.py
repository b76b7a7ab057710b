"""Driver instances: the record of each and the manager that runs them.

An :class:`Instance` is one configured (``[instances.<id>]``) or imported (inventory) device:
its entry, the plugin and driver class it resolved to, its settings, and — while it runs — the
driver object and its tasks. :class:`Instances` owns them all: it starts each under the
supervisor (retry with backoff, ``needs_auth``, ``failed`` with the reason), keeps a
connector's ``run()`` going, pumps a camera's own events, restarts an instance that failed at
run time, and stops them. Services read instances through it (``get``, ``cameras``,
``devices``, ``drivers``, ``status``) and report a failure with ``fail``; nobody reaches into
its dictionary.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .config import HubSettings, InstanceEntry
from .delivery import DeliveryService, NotReady, Target
from .events import Event
from .i18n import Messages
from .interfaces import (
    AlertDevice,
    AuthError,
    Camera,
    Connector,
    DeliveryResult,
    Driver,
    Location,
    TransientError,
)
from .interfaces.payloads import UnitKind, UnitState, UnitStatus
from .logs import StructLogger, get_logger
from .store.delivery import Order, SubscriptionSpec
from .supervisor import Backoff, Supervisor, classify
from .tasks import TaskSet

__all__ = ["Instance", "InstanceContext", "Instances", "PluginReadiness"]

log = get_logger("nabat.hub")
D = TypeVar("D", bound=Driver)

_STABLE_RUN_S = 60.0  # a connector that ran this long has its restart backoff reset
_BARRIER_S = 5.0


@dataclass
class Instance:
    id: str
    entry: InstanceEntry
    plugin: str | None = None
    driver_cls: type[Driver] | None = None
    settings: Any = None
    driver: Driver | None = None
    problem: str | None = None
    """Why it cannot start, found while preparing."""
    disabled: bool = False
    """``enabled = false`` in its entry: never started."""
    task: asyncio.Task[None] | None = None
    restarting: bool = False
    backoff: Backoff = field(default_factory=lambda: Backoff(1.0, 300.0))
    """Restart backoff after run-time failures (start-up retries have their own)."""
    record: Any = None
    """The inventory row (:class:`~nabat.cameras.inventory.CameraRecord`) of an imported
    camera; None for a ``plugins.toml`` instance."""
    settings_source: Callable[[], Any] | None = None
    """Reads the settings again at every (re)start (an imported camera's credentials)."""
    start_limit: asyncio.Semaphore | None = None
    """Bounds how many such instances connect at once."""
    events_task: asyncio.Task[None] | None = None
    """Publishes a running camera's own events (``Camera.events()``)."""

    @property
    def is_camera(self) -> bool:
        return self.record is not None or (
            self.driver_cls is not None and issubclass(self.driver_cls, Camera)
        )

    @property
    def is_device(self) -> bool:
        return self.driver_cls is not None and issubclass(self.driver_cls, AlertDevice)


class InstanceContext:
    """The :class:`~nabat.interfaces.DriverContext` of one instance."""

    def __init__(
        self,
        instance: Instance,
        *,
        publish: Callable[[Event], Any],
        incidents: Callable[[], Any],
        data_dir: Path,
    ) -> None:
        entry = instance.entry
        self.instance_id = instance.id
        self.name = entry.name or instance.id
        self.municipality = entry.municipality
        self.location = Location(entry.lat, entry.lon) if entry.lat is not None else None
        self.timeout = entry.timeout
        self.source = f"/nabat/instances/{instance.id}"
        # One logger for all instances (the id is a field): logging never frees loggers, and
        # inventories hold thousands of cameras that come and go.
        self.log: StructLogger = get_logger("nabat.instance", instance=instance.id)
        self._publish = publish
        self._incidents = incidents
        self._data_dir = data_dir

    async def publish(self, event: Event) -> None:
        await self._publish(event)

    @property
    def incidents(self) -> Any:
        return self._incidents()

    @property
    def data_dir(self) -> Path:
        path = self._data_dir / "instances" / self.instance_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def event(self, type: str, data: Any = None, **attrs: Any) -> Event:
        attrs.setdefault("source", self.source)
        attrs.setdefault("subject", self.instance_id)
        if self.municipality:
            attrs.setdefault("municipality", self.municipality)
        return Event(type=type, data=data, **attrs)


class PluginReadiness(Protocol):
    """What the manager needs of a plugin: whether and when it runs."""

    prepared: bool
    ready: asyncio.Future[bool] | None
    first_attempt: asyncio.Event


class Instances:
    def __init__(
        self,
        entries: Mapping[str, InstanceEntry],
        *,
        settings: HubSettings,
        supervisor: Supervisor,
        plugins: Mapping[str, PluginReadiness],
        publish: Callable[[Event], Any],
        context: Callable[[Instance], Any],
        report: Callable[[str, str], Callable[[BaseException], None]],
        message: Messages,
    ) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.plugins = plugins
        self.publish = publish
        self.context = context
        self.report = report
        self.message = message
        self.tasks = TaskSet("instances")
        self._by_id: dict[str, Instance] = {
            iid: Instance(iid, entry, backoff=Backoff(settings.retry_initial, settings.retry_max))
            for iid, entry in entries.items()
        }

    # -- reading ---------------------------------------------------------------------------
    def get(self, instance_id: str) -> Instance | None:
        return self._by_id.get(instance_id)

    def __iter__(self) -> Iterator[Instance]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._by_id

    def cameras(self) -> list[Instance]:
        """Every camera instance, configured or imported, whatever its state."""
        return [rt for rt in self._by_id.values() if rt.is_camera]

    def devices(self) -> list[Instance]:
        """Every warning-device instance (sirens…), whatever its state."""
        return [rt for rt in self._by_id.values() if rt.is_device]

    def status(self, instance_id: str) -> UnitStatus | None:
        return self.supervisor.status(UnitKind.INSTANCE, instance_id)

    def running(self, instance_id: str) -> bool:
        status = self.status(instance_id)
        return status is not None and status.state == UnitState.RUNNING

    def driver(self, instance_id: str) -> Driver:
        rt = self._by_id.get(instance_id)
        if rt is None or rt.driver is None:
            raise KeyError(f"no running driver for instance {instance_id!r}")
        return rt.driver

    def drivers(
        self, interface: type[D] = Driver, *, municipality: str | None = None, running: bool = True
    ) -> list[D]:
        found = []
        for rt in self._by_id.values():
            driver = rt.driver
            if driver is None or not isinstance(driver, interface):
                continue
            if municipality is not None and rt.entry.municipality != municipality:
                continue
            if running and not self.running(rt.id):
                continue
            found.append(driver)
        return found

    # -- adding and removing ---------------------------------------------------------------
    def add(self, rt: Instance) -> None:
        self._by_id[rt.id] = rt

    async def remove(self, rt: Instance) -> None:
        if rt.task is not None and not rt.task.done():
            rt.task.cancel()
            await asyncio.gather(rt.task, return_exceptions=True)
        await self.stop_driver(rt)
        self._by_id.pop(rt.id, None)
        self.supervisor.forget(UnitKind.INSTANCE, rt.id)

    # -- running ---------------------------------------------------------------------------
    async def mark_starting(self) -> None:
        """Every instance ``starting`` (or ``disabled``) before any task runs, so waiting for
        the start to settle cannot see a moment where nothing has begun yet."""
        for rt in self._by_id.values():
            state = UnitState.DISABLED if rt.disabled else UnitState.STARTING
            await self.supervisor.set_state(UnitKind.INSTANCE, rt.id, state, plugin=rt.plugin)

    def start_all(self) -> None:
        for rt in self._by_id.values():
            if not rt.disabled:
                self.launch(rt)

    def launch(self, rt: Instance) -> None:
        rt.task = self.tasks.spawn(self._run(rt), name=f"instance:{rt.id}")

    async def _run(self, rt: Instance) -> None:
        kind = UnitKind.INSTANCE
        if rt.problem is not None or rt.driver_cls is None or rt.plugin is None:
            await self.supervisor.set_state(
                kind, rt.id, UnitState.FAILED, rt.problem or "not prepared", plugin=rt.plugin
            )
            return
        plugin = self.plugins[rt.plugin]
        assert plugin.ready is not None
        # Start drivers only once every plugin has had its first go, so listeners that react
        # to instances coming up (the watch's first probe) are subscribed before they do.
        # A plugin that hangs in start-up delays the others' drivers by at most a few seconds.
        pending = [p.first_attempt.wait() for p in self.plugins.values() if p.prepared]
        try:
            async with asyncio.timeout(min(self.settings.startup_timeout, _BARRIER_S)):
                await asyncio.gather(*pending)
        except TimeoutError:
            pass
        if not await asyncio.shield(plugin.ready):
            status = self.supervisor.status_of_plugin(rt.plugin)
            state = status.state if status is not None else UnitState.FAILED
            await self.supervisor.set_state(
                kind,
                rt.id,
                UnitState.FAILED,
                self.message(
                    "reason.plugin_not_running",
                    plugin=rt.plugin,
                    state=self.message(f"unit.state.{state}"),
                ),
                plugin=rt.plugin,
            )
            return
        await self._supervise(rt)

    async def _supervise(self, rt: Instance) -> None:
        """Start the driver (with retries); for a connector, keep ``run()`` going."""
        assert rt.plugin is not None
        while True:
            if not await self.supervisor.keep_running(
                UnitKind.INSTANCE,
                rt.id,
                lambda: self._start_driver(rt),
                plugin=rt.plugin,
                on_failure=self.report(rt.plugin, f"driver:{rt.id}"),
            ):
                return
            if isinstance(rt.driver, Camera) and rt.driver.events() is not None:
                rt.events_task = self.tasks.spawn(self._pump_camera_events(rt, rt.driver))
            if not isinstance(rt.driver, Connector):
                return  # polled by jobs from here on
            started = asyncio.get_running_loop().time()
            error: BaseException
            try:
                await rt.driver.run()
                error = TransientError("run() returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
                if classify(exc)[0] is UnitState.FAILED:
                    log.error("connector.failed", instance=rt.id, exc_info=exc)
            if asyncio.get_running_loop().time() - started > _STABLE_RUN_S:
                rt.backoff.reset()
            delay = await self._set_back(rt, error)
            if delay is None:
                return
            await asyncio.sleep(delay)

    async def _start_driver(self, rt: Instance) -> None:
        if rt.settings_source is not None:
            rt.settings = rt.settings_source()  # credentials re-read at every (re)start
        async with rt.start_limit or contextlib.nullcontext():
            assert rt.driver_cls is not None
            driver = rt.driver_cls(self.context(rt), rt.settings)
            try:
                async with asyncio.timeout(rt.entry.timeout):
                    await driver.start()
            except BaseException:
                await self._stop_quietly(rt.id, driver)
                raise
            rt.driver = driver

    async def fail(self, instance_id: str, error: BaseException) -> None:
        """A running instance failed (rejected credentials, a dead device): stop it, record
        the state it leads to and restart it after the backoff (unless it failed for good)."""
        rt = self._by_id.get(instance_id)
        if rt is None or rt.driver is None or rt.restarting:
            return  # unknown, not running, or already being restarted
        rt.restarting = True
        delay = await self._set_back(rt, error)
        if delay is not None:
            rt.task = self.tasks.spawn(self._restart(rt, delay))

    async def _set_back(self, rt: Instance, error: BaseException) -> float | None:
        """Stop a running driver after ``error`` and record the state it leads to; return
        the delay before it may start again, or None when it failed for good."""
        state, reason = classify(error)
        await self.stop_driver(rt)
        delay: float | None = None
        if state is UnitState.NEEDS_AUTH:
            rt.backoff.attempt += 1
            delay = self.settings.needs_auth_retry
        elif state is UnitState.RETRYING:
            delay = rt.backoff.next(getattr(error, "retry_after", None))
        await self.supervisor.set_state(
            UnitKind.INSTANCE,
            rt.id,
            state,
            reason,
            plugin=rt.plugin,
            attempt=rt.backoff.attempt,
            retry_in=delay,
        )
        return delay

    async def _restart(self, rt: Instance, delay: float) -> None:
        await asyncio.sleep(delay)
        rt.restarting = False
        await self._supervise(rt)

    async def _pump_camera_events(self, rt: Instance, camera: Camera) -> None:
        """Publish a camera's own events as ``camera.event.<topic>``. When the stream breaks
        the driver is asked for a new one after a backoff (it re-subscribes); rejected
        credentials put the instance in ``needs_auth``."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.settings.retry_initial, min(60.0, self.settings.retry_max))
        while rt.driver is camera:
            stream = camera.events()
            if stream is None:
                return
            started = loop.time()
            error: BaseException
            try:
                async for item in stream:
                    await self.publish(camera.context.event(f"camera.event.{item.topic}", item))
                error = TransientError("the event stream ended")
            except asyncio.CancelledError:
                raise
            except AuthError as exc:
                self.tasks.spawn(self.fail(rt.id, exc))  # it stops this very task
                return
            except Exception as exc:
                error = exc
            if loop.time() - started > _STABLE_RUN_S:
                backoff.reset()
            delay = backoff.next(getattr(error, "retry_after", None))
            log.warning(
                "camera.events_interrupted",
                instance=rt.id,
                error=f"{type(error).__name__}: {error}",
                retry_in_s=round(delay, 1),
            )
            await asyncio.sleep(delay)

    # -- connectors' durable subscriptions --------------------------------------------------
    async def subscribe_connectors(self, delivery: DeliveryService) -> None:
        """A durable subscription per connector with ``subscribes``: events reach it
        at least once, in order unless configured otherwise, across restarts."""
        for rt in self._by_id.values():
            cls = rt.driver_cls
            if rt.problem or cls is None or not issubclass(cls, Connector) or not cls.subscribes:
                continue
            options = rt.entry.delivery
            spec = SubscriptionSpec(
                id=f"instance:{rt.id}",
                patterns=tuple(cls.subscribes),
                order=Order(options.order),
                concurrency=options.concurrency,
                max_attempts=options.max_attempts,
                max_age=options.max_age,
                backoff_initial=options.backoff_initial,
                backoff_max=options.backoff_max,
                timeout=rt.entry.timeout,
            )
            await delivery.add(spec, self._connector_target(rt))

    def _connector_target(self, rt: Instance) -> Target:
        async def deliver(event: Event) -> DeliveryResult | None:
            driver = rt.driver
            if not isinstance(driver, Connector) or not self.running(rt.id):
                raise NotReady
            if event.source == driver.context.source:
                return None  # never echo a connector's own events back to it
            return await driver.handle(event)

        return deliver

    # -- stopping --------------------------------------------------------------------------
    async def _stop_quietly(self, instance_id: str, driver: Driver) -> None:
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout):
                await driver.stop()
        except Exception as exc:
            log.warning("driver.stop_failed", instance=instance_id, error=repr(exc))

    async def stop_driver(self, rt: Instance) -> None:
        task, rt.events_task = rt.events_task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        driver, rt.driver = rt.driver, None
        if driver is not None:
            await self._stop_quietly(rt.id, driver)

    async def stop_all(self) -> None:
        """Cancel every start and restart, stop every running driver (``stopped``)."""
        for rt in self._by_id.values():
            if rt.task is not None and not rt.task.done():
                rt.task.cancel()
        running = [rt for rt in self._by_id.values() if rt.driver is not None]

        async def stop_one(rt: Instance) -> None:
            await self.stop_driver(rt)
            await self.supervisor.set_state(
                UnitKind.INSTANCE, rt.id, UnitState.STOPPED, plugin=rt.plugin
            )

        await asyncio.gather(*(stop_one(rt) for rt in running))
        await self.tasks.cancel_all()
