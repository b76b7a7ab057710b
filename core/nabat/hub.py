"""The hub: loads the enabled plugins, starts their driver instances, and keeps them running.

Start-up, in order, each step contained to the plugin or instance it concerns:

1. **prepare** — discover the ``nabat`` entry points; import only enabled plugins (each in a
   worker thread, with a timeout); collect their drivers, payload types and settings type;
   validate plugin and instance settings. A plugin that fails here is ``failed`` with the
   reason; the others go on. ``nabat config check`` and ``nabat plugins`` stop after this step.
2. **start** — run each plugin's ``startup`` hook under the supervisor (retry with backoff on
   transient errors); once a plugin runs, subscribe its listeners and schedule its jobs, then
   start its driver instances, each supervised the same way.
   Cameras of the inventory (``nabat cameras import``) become driver instances too, next to
   those of ``plugins.toml`` (which win on an id clash); the inventory is re-read every
   ``[cameras] inventory_refresh`` seconds, so imported cameras start, changed ones restart and
   deleted ones stop without a restart of the hub.
3. **stop** — stop jobs, stop drivers, call ``shutdown`` hooks, drain the bus.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from .bus import Bus, Subscription
from .cameras import credentials
from .cameras.inventory import CameraRecord, Inventory
from .cameras.snapshots import SnapshotService
from .cameras.states import CameraStates
from .config import ConfigInvalid, ConfigIssue, InstanceEntry, LoadedConfig, convert_settings
from .config.secrets import secret_dec_hook
from .delivery import DeliveryService, NotReady, Target
from .events import Event, EventTypes
from .i18n import Messages
from .ids import uuid7
from .interfaces import (
    INTERFACES,
    AlertDevice,
    AuthError,
    Camera,
    CameraEvent,
    ConfigError,
    Connector,
    DeliveryResult,
    Driver,
    DriverError,
    HealthState,
    Job,
    Listener,
    Location,
    NotSupported,
    Progress,
    TransientError,
)
from .interfaces.payloads import UnitKind, UnitState, UnitStatus
from .logs import StructLogger, get_logger
from .plugins import PluginHost, PluginInfo, discover
from .pulse import Pulse
from .scheduler import Scheduler
from .store import Appended, Journal
from .store.delivery import Order, SubscriptionSpec
from .store.factory import journal_from_config
from .supervisor import Backoff, Supervisor, classify

__all__ = ["Hub", "InstanceContext"]

log = get_logger("nabat.hub")
D = TypeVar("D", bound=Driver)

_STABLE_RUN_S = 60.0  # a connector that ran this long has its restart backoff reset
_OBSERVER_TIMEOUT_S = 5.0
_BARRIER_S = 5.0


@dataclass
class _Plugin:
    info: PluginInfo
    enabled: bool
    obj: object | None = None
    settings: Any = None
    drivers: dict[str, type[Driver]] = field(default_factory=dict)
    subscriptions: list[Subscription] = field(default_factory=list)
    prepared: bool = False
    ready: asyncio.Future[bool] | None = None  # True once running, False if it failed for good
    first_attempt: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first start attempt is over (running with listeners attached, or not)."""


@dataclass
class _Instance:
    id: str
    entry: InstanceEntry
    plugin: str | None = None
    driver_cls: type[Driver] | None = None
    settings: Any = None
    driver: Driver | None = None
    problem: str | None = None  # why it cannot start, found while preparing
    task: asyncio.Task[None] | None = None
    restarting: bool = False
    backoff: Backoff = field(default_factory=lambda: Backoff(1.0, 300.0))
    """Restart backoff after run-time failures (start-up retries have their own)."""
    record: CameraRecord | None = None
    """The inventory row of a camera imported with ``nabat cameras import``."""
    events_task: asyncio.Task[None] | None = None
    """Publishes a running camera's own events (``Camera.events()``)."""


class InstanceContext:
    """The :class:`~nabat.interfaces.DriverContext` of one instance."""

    def __init__(self, hub: Hub, instance: _Instance) -> None:
        self._hub = hub
        self._instance = instance
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

    async def publish(self, event: Event) -> None:
        await self._hub.publish(event)

    @property
    def incidents(self) -> Any:
        return self._hub.incidents

    @property
    def data_dir(self) -> Path:
        path = self._hub.data_dir / "instances" / self.instance_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def event(self, type: str, data: Any = None, **attrs: Any) -> Event:
        attrs.setdefault("source", self.source)
        attrs.setdefault("subject", self.instance_id)
        if self.municipality:
            attrs.setdefault("municipality", self.municipality)
        return Event(type=type, data=data, **attrs)


class Hub:
    """The running hub. Plugins see it through :class:`nabat.interfaces.HubAPI`."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        plugins: dict[str, object] | None = None,
        discover_installed: bool = True,
        language: str | None = None,
    ) -> None:
        """``plugins`` adds plugin objects by name besides the installed entry points (tests);
        ``discover_installed=False`` uses only those."""
        self.loaded = loaded
        self.config = loaded.config
        self.name = self.config.hub.name
        self.data_dir: Path = loaded.data_dir
        self.log = log
        self.message = Messages(language or self.config.hub.language)
        self.event_types = EventTypes()
        self.event_types.register("hub.unit.*", UnitStatus, owner="core")
        self.event_types.register("camera.event.*", CameraEvent, owner="core")
        self.host = PluginHost()
        self.scheduler = Scheduler(claim=self._claim_job_slot)
        self.bus: Bus | None = None
        self.journal: Journal = journal_from_config(loaded, self.event_types)
        self._journal_open = False
        self._local_ids: set[str] = set()  # appended here, not yet passed by the tailer
        self.appended = Pulse()
        """Pulsed whenever events reach the journal (here or, via the tailer, elsewhere):
        live readers (the API's event stream) wait on it instead of polling."""
        self._tail_from = 0
        storage = self.config.storage
        self.delivery = DeliveryService(
            self.journal, lease_ttl=storage.lease_ttl, poll=storage.poll_interval
        )
        self.supervisor = Supervisor(
            self._publish_internal,
            retry_initial=self.config.hub.retry_initial,
            retry_max=self.config.hub.retry_max,
            needs_auth_retry=self.config.hub.needs_auth_retry,
        )
        self.plugins: dict[str, _Plugin] = {}
        hub_cfg = self.config.hub
        self.instances_rt: dict[str, _Instance] = {
            iid: _Instance(iid, entry, backoff=Backoff(hub_cfg.retry_initial, hub_cfg.retry_max))
            for iid, entry in self.config.instances.items()
        }
        self.inventory = Inventory(self.journal)
        self.camera_states = CameraStates(self.journal)
        """Each camera's last reported health (kept in the journal, shared by processes)."""
        cameras_cfg = self.config.cameras
        self.snapshots = SnapshotService(
            max_age=cameras_cfg.snapshot_max_age, concurrency=cameras_cfg.snapshot_concurrency
        )
        self._shadowed: set[str] = set()  # inventory ids hidden by a plugins.toml instance
        self._start_limit = asyncio.Semaphore(self.config.cameras.start_concurrency)
        from .alerts import AlertService  # the alert service imports hub types lazily

        self.alerts = AlertService(self)
        from .alerts.readiness import ReadinessService
        from .rules.engine import RuleEngine

        self.readiness = ReadinessService(self)
        from .incidents import IncidentService

        self.incidents = IncidentService(self)
        """Incidents from 112, rules and connectors, with the nearest cameras' snapshots."""
        """Scheduled technical and comprehensive checks of warning devices."""

        self.rules = RuleEngine(self, self.config.rules)
        """``[[rules]]``: event → alert, notification, incident, forward."""
        """Issues alerts to warning devices and tracks every device's outcome."""
        self.runs: dict[str, Progress] = {}
        """The latest long run (sweep) per name, for /metrics."""
        self.issues: list[ConfigIssue] = []
        self.warnings: list[str] = []
        self._extra = dict(plugins or {})
        self._discover = discover_installed
        self._kinds: dict[str, str] = {}  # driver kind -> plugin name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prepared = False
        self._started = False
        self._load_faults: list[tuple[str, BaseException, str]] = []

    # -- HubAPI ----------------------------------------------------------------------------
    async def publish(self, event: Event) -> None:
        """Append ``event`` to the journal (durable once this returns), then fan it out."""
        if self.bus is None:
            raise RuntimeError("the hub has not been started")
        if self._journal_open:
            self._local_ids.add(event.id)  # before the append: the tailer may see it first
            try:
                await self.journal.append((event,))
            except BaseException:
                self._local_ids.discard(event.id)
                raise
            self.delivery.notify()
            self.appended.pulse()
        await self.bus.publish(event)

    async def publish_many(self, events: Sequence[Event]) -> list[Appended]:
        """Append ``events`` in one durable write, then fan out those that are new: an event
        whose (source, id) was already in the journal (a client's retry) is not fanned out
        again. Returns each event's place in the journal and whether it is new."""
        if self.bus is None or not self._journal_open:
            raise RuntimeError("the hub has not been started")
        ids = [e.id for e in events]
        self._local_ids.update(ids)
        try:
            appended = await self.journal.append_checked(events)
        except BaseException:
            self._local_ids.difference_update(ids)
            raise
        self.delivery.notify()
        self.appended.pulse()
        for event, place in zip(events, appended, strict=True):
            if place.new:
                await self.bus.publish(event)
            else:
                self._local_ids.discard(event.id)
        return appended

    async def _claim_job_slot(self, job_id: str, slot: int) -> bool:
        """Claim one scheduled run for this process: the journal keeps one event per
        (source, id), so of several processes claiming the same slot exactly one's is stored."""
        if not self._journal_open:
            return True
        claim = Event(
            type="hub.job.claimed",
            source=f"/nabat/jobs/{job_id}",
            id=f"{job_id}@{slot}",
            subject=job_id,
            data={"job": job_id, "slot": slot, "owner": self.delivery.owner, "run": uuid7()},
        )
        await self.journal.append((claim,))
        stored = await self.journal.get(claim.source, claim.id)
        # Ours only if our very claim was stored: the same process may reach one slot twice
        # (a late run lands in the next slot, then that slot's own run comes).
        return stored is not None and stored.event.data.get("run") == claim.data["run"]

    async def _tail(self) -> None:
        """Bring events appended by other hub processes on this journal onto the local bus
        (checked every ``[storage] poll_interval``), so live listeners see them too. Only ids
        are read first: what this process wrote itself is skipped without reading its body."""
        after = self._tail_from
        poll = self.config.storage.poll_interval
        page = 5000
        while True:
            await asyncio.sleep(poll)
            try:
                while True:
                    rows = await self.journal.ids_after(after, page)
                    foreign: list[int] = []
                    for seq, event_id in rows:
                        if event_id in self._local_ids:
                            self._local_ids.discard(event_id)
                        else:
                            foreign.append(seq)
                    if foreign and self.bus is not None:
                        for stored in await self.journal.events_at(foreign):
                            await self.bus.publish(stored.event)
                        self.delivery.notify()
                        self.appended.pulse()
                    if rows:
                        after = rows[-1][0]
                    if len(rows) < page:
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("journal.tail_failed", error=repr(exc))

    async def _publish_internal(self, event: Event) -> None:
        if self.bus is not None:
            await self.publish(event)

    def subscribe(
        self,
        patterns: str | Sequence[str],
        handler: Callable[[Event], Any],
        *,
        name: str,
        **opts: Any,
    ) -> Subscription:
        if self.bus is None:
            raise RuntimeError("the hub has not been started")
        return self.bus.subscribe(patterns, handler, name=name, **opts)

    def instances(
        self, interface: type[D] = Driver, *, municipality: str | None = None, running: bool = True
    ) -> list[D]:
        found = []
        for rt in self.instances_rt.values():
            driver = rt.driver
            if driver is None or not isinstance(driver, interface):
                continue
            if municipality is not None and rt.entry.municipality != municipality:
                continue
            if running and self.state_of(rt.id) != UnitState.RUNNING:
                continue
            found.append(driver)
        return found

    @staticmethod
    def is_camera(rt: _Instance) -> bool:
        return rt.record is not None or (
            rt.driver_cls is not None and issubclass(rt.driver_cls, Camera)
        )

    def device_units(self) -> list[_Instance]:
        """Every warning-device instance (sirens…), whatever its state."""
        return [
            rt
            for rt in self.instances_rt.values()
            if rt.driver_cls is not None and issubclass(rt.driver_cls, AlertDevice)
        ]

    def camera_units(self) -> list[_Instance]:
        """Every camera instance, configured or imported, whatever its state."""
        return [rt for rt in self.instances_rt.values() if self.is_camera(rt)]

    def instance(self, instance_id: str) -> Driver:
        rt = self.instances_rt.get(instance_id)
        if rt is None or rt.driver is None:
            raise KeyError(f"no running driver for instance {instance_id!r}")
        return rt.driver

    def progress(self, name: str, total: int) -> Progress:
        run = self.runs[name] = Progress(name, total)
        return run

    def camera_probed(self, camera_id: str, checked_at: datetime) -> None:
        self.camera_states.probed[camera_id] = checked_at

    def last_health(self, camera_id: str) -> HealthState | None:
        state = self.camera_states.get(camera_id)
        return None if state is None else state.state

    def state_of(self, name: str) -> str:
        return self.status_of(name).state

    def status_of(self, name: str) -> UnitStatus:
        for kind in (UnitKind.INSTANCE, UnitKind.PLUGIN):
            status = self.supervisor.status(kind, name)
            if status is not None:
                return status
        raise KeyError(name)

    async def instance_failed(self, instance_id: str, error: BaseException) -> None:
        rt = self.instances_rt.get(instance_id)
        if rt is None or rt.driver is None or rt.restarting:
            return  # unknown, not running, or already being restarted
        rt.restarting = True
        delay = await self._set_back(rt, error)
        if delay is not None:
            rt.task = self._spawn(self._restart_instance(rt, delay))

    async def _set_back(self, rt: _Instance, error: BaseException) -> float | None:
        """Stop a running driver after ``error`` and record the state it leads to; return
        the delay before it may start again, or None when it failed for good."""
        state, reason = classify(error)
        await self._stop_driver(rt)
        delay: float | None = None
        if state is UnitState.NEEDS_AUTH:
            rt.backoff.attempt += 1
            delay = self.config.hub.needs_auth_retry
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

    async def _restart_instance(self, rt: _Instance, delay: float) -> None:
        await asyncio.sleep(delay)
        rt.restarting = False
        await self._supervise_instance(rt)

    # -- preparing -------------------------------------------------------------------------
    def _issue(self, path: Sequence[str], reason: str) -> ConfigIssue:
        issue = self.loaded.issue(path, reason)
        self.issues.append(issue)
        return issue

    def _plan_plugins(self) -> None:
        installed: dict[str, PluginInfo] = {}
        if self._discover:
            installed, self.warnings = discover()
        for name in self._extra:
            installed[name] = PluginInfo(
                name=name, target=f"<object {name}>", distribution="(test)", version="-"
            )
        for name, info in installed.items():
            entry = self.config.plugins.get(name)
            enabled = entry.enabled if entry is not None else (info.builtin or name in self._extra)
            self.plugins[name] = _Plugin(info=info, enabled=enabled)
        for name, entry in self.config.plugins.items():
            if entry.enabled and name not in installed:
                self._issue(["plugins", name], self.message("reason.not_installed", plugin=name))

    async def prepare(self) -> list[ConfigIssue]:
        """Load enabled plugins and validate all settings; return the problems found."""
        if self._prepared:
            return self.issues
        self._prepared = True
        self._plan_plugins()
        timeout = self.config.hub.startup_timeout
        for name, plugin in self.plugins.items():
            if not plugin.enabled:
                await self.supervisor.set_state(UnitKind.PLUGIN, name, UnitState.DISABLED)
                continue
            try:
                await self._prepare_plugin(name, plugin, timeout)
                plugin.prepared = True
            except ConfigInvalid as exc:
                self.issues.extend(exc.issues)
                await self._fail_plugin(name, exc, "settings")
            except Exception as exc:
                self._issue(["plugins", name], classify(exc)[1])
                await self._fail_plugin(name, exc, "load")
        for name, entry in self.config.plugins.items():
            if entry.enabled and name not in self.plugins:
                await self.supervisor.set_state(
                    UnitKind.PLUGIN,
                    name,
                    UnitState.FAILED,
                    self.message("reason.not_installed", plugin=name),
                )
        for rt in self.instances_rt.values():
            self._prepare_instance(rt)
        for instance_id, found in self.loaded.broken_instances.items():
            self.issues.extend(found)
            reason = "; ".join(f"{i.path}: {i.reason}" for i in found)
            await self.supervisor.set_state(
                UnitKind.INSTANCE, instance_id, UnitState.FAILED, reason
            )
        for name, exc, context in self._load_faults:
            await self._report(name, exc, context)
        return self.issues

    async def _prepare_plugin(self, name: str, plugin: _Plugin, timeout: float) -> None:
        if name in self._extra:
            plugin.obj = self.host.add(plugin.info, self._extra[name])
        else:
            try:
                plugin.obj = await self.host.load(plugin.info, timeout)
            except TimeoutError as exc:
                raise DriverError(
                    self.message("reason.import_timeout", timeout=f"{timeout:g}")
                ) from exc
            except Exception as exc:
                error = " ".join(f"{type(exc).__name__}: {exc}".split())
                raise DriverError(self.message("reason.import_failed", error=error)) from exc
        # Drivers.
        for cls in await self.host.call(name, "register_drivers", timeout) or ():
            self._check_driver(name, cls)
            owner = self._kinds.get(cls.kind)
            if owner is not None and owner != name:
                raise DriverError(
                    f"driver kind {cls.kind!r} is already provided by plugin {owner!r}"
                )
            plugin.drivers[cls.kind] = cls
        for kind in plugin.drivers:
            self._kinds[kind] = name
        # Event payload types.
        for key, payload in (
            await self.host.call(name, "register_event_types", timeout) or {}
        ).items():
            try:
                self.event_types.register(key, payload, owner=name)
            except ValueError as exc:
                raise DriverError(str(exc)) from None
        # Settings last, so a settings error still lets instances of its kinds be checked.
        raw_settings = self.config.plugins[name].settings if name in self.config.plugins else {}
        settings_type = await self.host.call(name, "plugin_settings", timeout)
        if settings_type is None:
            if raw_settings:
                issue = self.loaded.issue(
                    ["plugins", name, "settings"], self.message("reason.no_settings", plugin=name)
                )
                raise ConfigInvalid([issue])
        else:
            plugin.settings = convert_settings(
                self.loaded, raw_settings, settings_type, ["plugins", name, "settings"]
            )

    @staticmethod
    def _check_driver(plugin: str, cls: Any) -> None:
        if not (inspect.isclass(cls) and issubclass(cls, INTERFACES)):
            raise DriverError(
                f"register_drivers returned {cls!r}, which is not a Camera, AlertDevice, "
                "Notifier or Connector class"
            )
        kind = getattr(cls, "kind", None)
        if not isinstance(kind, str) or "." not in kind:
            raise DriverError(f"driver {cls.__name__} must declare kind = '<plugin>.<thing>'")
        if not (inspect.isclass(cls.Settings) and issubclass(cls.Settings, msgspec.Struct)):
            raise DriverError(f"driver {cls.__name__}: Settings must be a msgspec.Struct")

    def _prepare_instance(self, rt: _Instance) -> None:
        kind = rt.entry.kind
        path = ["instances", rt.id, "kind"]
        if not rt.entry.enabled:
            rt.problem = "disabled"
            return
        plugin_name = self._kinds.get(kind)
        if plugin_name is None:
            prefix = kind.split(".", 1)[0]
            other = self.plugins.get(prefix)
            if other is not None and not other.enabled:
                rt.problem = self.message("reason.plugin_disabled", kind=kind, plugin=prefix)
            elif other is not None and not other.prepared:
                rt.plugin = prefix
                rt.problem = self.message(
                    "reason.plugin_not_running",
                    plugin=prefix,
                    state=self.message("unit.state.failed"),
                )
                return  # the plugin's own failure is the issue already reported
            else:
                known = ", ".join(sorted(self._kinds)) or "-"
                rt.problem = self.message("reason.unknown_kind", kind=kind, known=known)
            self._issue(path, rt.problem)
            return
        rt.plugin = plugin_name
        rt.driver_cls = self.plugins[plugin_name].drivers[kind]
        try:
            rt.settings = convert_settings(
                self.loaded,
                rt.entry.settings,
                rt.driver_cls.Settings,
                ["instances", rt.id, "settings"],
            )
        except ConfigInvalid as exc:
            self.issues.extend(exc.issues)
            rt.problem = "; ".join(f"{i.path}: {i.reason}" for i in exc.issues)
        if not self.plugins[plugin_name].prepared:
            failed = self.message("unit.state.failed")
            rt.problem = self.message("reason.plugin_not_running", plugin=plugin_name, state=failed)

    async def _fail_plugin(self, name: str, exc: BaseException, context: str) -> None:
        _, reason = classify(exc)
        if (
            isinstance(exc, DriverError)
            and exc.__cause__ is not None
            and not isinstance(exc.__cause__, TimeoutError)
        ):
            log.error("plugin.load_failed", plugin=name, exc_info=exc.__cause__)
        await self.supervisor.set_state(UnitKind.PLUGIN, name, UnitState.FAILED, reason)
        # Observers may load after the plugin that failed: report once all are loaded.
        self._load_faults.append((name, exc, context))

    async def _report(self, plugin: str, exc: BaseException, context: str) -> None:
        """Tell ``plugin_error`` observers (other plugins) about a contained fault."""
        for name, other in self.plugins.items():
            if (
                other.obj is None
                or name == plugin
                or not self.host.implements(name, "plugin_error")
            ):
                continue
            try:
                await self.host.call(
                    name,
                    "plugin_error",
                    _OBSERVER_TIMEOUT_S,
                    hub=self,
                    plugin=plugin,
                    error=exc,
                    context=context,
                )
            except Exception as observer_exc:
                log.warning("plugin.observer_failed", plugin=name, error=repr(observer_exc))

    def _report_soon(self, plugin: str, context: str) -> Callable[[BaseException], None]:
        def report(exc: BaseException) -> None:
            self._spawn(self._report(plugin, exc, context))

        return report

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- starting --------------------------------------------------------------------------
    async def start(self, *, wait: bool = True) -> None:
        """Start everything; with ``wait``, return once no unit is still ``starting`` (or the
        start-up timeout passed). Units still retrying keep trying in the background."""
        if self._started:
            return
        self._started = True
        bus_cfg = self.config.hub.bus
        self.bus = Bus(
            queue_size=bus_cfg.queue_size,
            overflow=bus_cfg.overflow,
            put_timeout=bus_cfg.put_timeout,
            handler_timeout=bus_cfg.handler_timeout,
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self.journal.open()  # creates or migrates the schema; refuses a newer one
        self._journal_open = True
        self._tail_from = await self.journal.last_seq()
        log.info("journal.opened", kind=self.journal.kind, last_seq=self._tail_from)
        await self.camera_states.load()
        self.subscribe(
            "camera.health.*",
            self.camera_states.on_event,
            name="core.camera-states",
            queue_size=100_000,
        )
        self._spawn(self._tail())
        await self.prepare()
        await self._load_inventory()
        self.scheduler.start()
        self._schedule_retention()
        await self._subscribe_connectors()
        await self._subscribe_rules()
        await self._subscribe_incidents()
        self._schedule_readiness()
        loop = asyncio.get_running_loop()
        # Mark everything "starting" before any task runs, so waiting for the start to settle
        # cannot see a moment where nothing has begun yet.
        for name, plugin in self.plugins.items():
            plugin.ready = loop.create_future()
            if plugin.prepared:
                await self.supervisor.set_state(UnitKind.PLUGIN, name, UnitState.STARTING)
            else:
                plugin.ready.set_result(False)
                plugin.first_attempt.set()
        for rt in self.instances_rt.values():
            if rt.problem == "disabled":
                await self.supervisor.set_state(
                    UnitKind.INSTANCE, rt.id, UnitState.DISABLED, plugin=rt.plugin
                )
            else:
                await self.supervisor.set_state(
                    UnitKind.INSTANCE, rt.id, UnitState.STARTING, plugin=rt.plugin
                )
        for name, plugin in self.plugins.items():
            if plugin.prepared:
                self._spawn(self._run_plugin(name, plugin))
        for rt in self.instances_rt.values():
            if rt.problem != "disabled":
                rt.task = self._spawn(self._run_instance(rt))
        self._spawn(self._inventory_loop())
        if wait:
            await self.supervisor.wait_settled(self.config.hub.startup_timeout + 1.0)
        log.info("hub.started", hub=self.name, **self.summary())

    def _schedule_retention(self) -> None:
        async def expire_records() -> None:
            removed = await self.journal.purge_records()
            log.info("journal.records_expired", removed=removed)

        # Idempotency keys, audit entries past their retention: always, hourly.
        expiry = Job(id="records-expiry", func=expire_records, every=3600, jitter=300)
        self.scheduler.add(expiry, "core", lambda exc: None)
        days = self.config.storage.retention_days
        if days is None:
            return

        async def purge() -> None:
            cutoff = datetime.now(UTC) - timedelta(days=days)
            removed = await self.journal.purge(cutoff)
            log.info("journal.retention", removed=removed, older_than=cutoff.isoformat())

        job = Job(id="journal-retention", func=purge, every=86_400, jitter=600, run_at_start=True)
        self.scheduler.add(job, "core", lambda exc: None)

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in self.supervisor.units.values():
            key = f"{status.kind.value}s_{status.state.value}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    async def _run_plugin(self, name: str, plugin: _Plugin) -> None:
        timeout = self.config.hub.startup_timeout

        async def start() -> None:
            await self.host.call(name, "startup", timeout, hub=self, settings=plugin.settings)

        ok = await self.supervisor.keep_running(
            UnitKind.PLUGIN,
            name,
            start,
            on_failure=self._report_soon(name, "startup"),
            first_failure=plugin.first_attempt,
        )
        if ok:
            try:
                await self._attach(name, plugin, timeout)
            except Exception as exc:
                for sub in plugin.subscriptions:
                    sub.unsubscribe()
                plugin.subscriptions.clear()
                _, reason = classify(exc)
                log.error("plugin.attach_failed", plugin=name, exc_info=exc)
                await self.supervisor.set_state(UnitKind.PLUGIN, name, UnitState.FAILED, reason)
                await self._report(name, exc, "register")
                ok = False
        assert plugin.ready is not None
        plugin.first_attempt.set()
        if not plugin.ready.done():
            plugin.ready.set_result(ok)

    async def _attach(self, name: str, plugin: _Plugin, timeout: float) -> None:
        """Subscribe the listeners and schedule the jobs of a plugin that just started."""
        listeners: Sequence[Listener] = (
            await self.host.call(
                name, "register_listeners", timeout, hub=self, settings=plugin.settings
            )
            or ()
        )
        for spec in listeners:
            if not isinstance(spec, Listener):
                raise DriverError(f"register_listeners returned {spec!r}, not a Listener")
            opts = {
                k: getattr(spec, k)
                for k in ("queue_size", "overflow", "handler_timeout")
                if getattr(spec, k) is not None
            }
            plugin.subscriptions.append(
                self.subscribe(
                    list(spec.patterns), spec.handler, name=f"{name}.{spec.name}", **opts
                )
            )
        jobs: Sequence[Job] = (
            await self.host.call(name, "register_jobs", timeout, hub=self, settings=plugin.settings)
            or ()
        )
        for job in jobs:
            if not isinstance(job, Job):
                raise DriverError(f"register_jobs returned {job!r}, not a Job")
            self.scheduler.add(job, name, self._report_soon(name, f"job:{job.id}"))

    async def _run_instance(self, rt: _Instance) -> None:
        kind = UnitKind.INSTANCE
        if rt.problem is not None or rt.driver_cls is None:
            await self.supervisor.set_state(
                kind, rt.id, UnitState.FAILED, rt.problem or "not prepared", plugin=rt.plugin
            )
            return
        plugin = self.plugins[rt.plugin]  # type: ignore[index]
        assert plugin.ready is not None
        # Start drivers only once every plugin has had its first go, so listeners that react
        # to instances coming up (the watch's first probe) are subscribed before they do.
        # A plugin that hangs in start-up delays the others' drivers by at most a few seconds.
        pending = [p.first_attempt.wait() for p in self.plugins.values() if p.prepared]
        try:
            async with asyncio.timeout(min(self.config.hub.startup_timeout, _BARRIER_S)):
                await asyncio.gather(*pending)
        except TimeoutError:
            pass
        if not await asyncio.shield(plugin.ready):
            state = self.state_of(rt.plugin)  # type: ignore[arg-type]
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
        await self._supervise_instance(rt)

    async def _supervise_instance(self, rt: _Instance) -> None:
        """Start the driver (with retries); for a connector, keep ``run()`` going."""
        kind = UnitKind.INSTANCE
        while True:
            if not await self.supervisor.keep_running(
                kind,
                rt.id,
                lambda: self._start_driver(rt),
                plugin=rt.plugin,
                on_failure=self._report_soon(rt.plugin, f"driver:{rt.id}"),  # type: ignore[arg-type]
            ):
                return
            if isinstance(rt.driver, Camera) and rt.driver.events() is not None:
                rt.events_task = self._spawn(self._pump_camera_events(rt, rt.driver))
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

    async def _start_driver(self, rt: _Instance) -> None:
        assert rt.driver_cls is not None
        if rt.record is None:
            await self._construct_and_start(rt)
            return
        rt.settings = self._inventory_settings(rt)  # credentials re-read at every (re)start
        async with self._start_limit:
            await self._construct_and_start(rt)

    async def _construct_and_start(self, rt: _Instance) -> None:
        assert rt.driver_cls is not None
        driver = rt.driver_cls(InstanceContext(self, rt), rt.settings)
        try:
            async with asyncio.timeout(rt.entry.timeout):
                await driver.start()
        except BaseException:
            await self._stop_quietly(rt.id, driver)
            raise
        rt.driver = driver

    # -- inventory cameras -----------------------------------------------------------------
    def _inventory_instance(self, record: CameraRecord) -> _Instance:
        """An instance for an inventory row; its ``problem`` says why it cannot start."""
        hub_cfg = self.config.hub
        entry = InstanceEntry(
            kind=record.driver,
            name=record.name,
            municipality=record.municipality,
            lat=record.lat,
            lon=record.lon,
        )
        rt = _Instance(
            record.id,
            entry,
            record=record,
            backoff=Backoff(hub_cfg.retry_initial, hub_cfg.retry_max),
        )
        found = self._camera_driver(record.driver)
        if isinstance(found, str):
            rt.problem = found
            rt.plugin = self._kinds.get(record.driver)
        else:
            rt.plugin, rt.driver_cls = found
        return rt

    def _camera_driver(self, kind: str) -> tuple[str, type[Camera]] | str:
        """The plugin and camera driver class of ``kind``, or why there is none."""
        plugin_name = self._kinds.get(kind)
        if plugin_name is None:
            prefix = kind.split(".", 1)[0]
            other = self.plugins.get(prefix)
            if other is not None and not other.enabled:
                return self.message("reason.plugin_disabled", kind=kind, plugin=prefix)
            known = ", ".join(sorted(self._kinds)) or "-"
            return self.message("reason.unknown_kind", kind=kind, known=known)
        cls = self.plugins[plugin_name].drivers[kind]
        if not issubclass(cls, Camera):
            return f"driver {kind} is not a camera driver"
        return plugin_name, cls

    def check_inventory_row(self, driver: str, url: str) -> list[tuple[str, str]]:
        """What the installed drivers find wrong with an inventory row, as (column, reason);
        for ``nabat cameras import`` (after :meth:`prepare`). Credentials are not read."""
        found = self._camera_driver(driver)
        if isinstance(found, str):
            return [("driver", found)]
        cls = found[1]
        address, username = credentials.split_user(url)
        try:
            raw = cls.inventory_settings(address, username, None)
            msgspec.convert(raw, cls.Settings, dec_hook=secret_dec_hook())
        except NotSupported as exc:
            return [("driver", str(exc))]
        except (ValueError, msgspec.ValidationError) as exc:
            return [("url", str(exc))]
        return []

    def _inventory_settings(self, rt: _Instance) -> Any:
        """The driver settings of an inventory camera, from its row and its credentials."""
        record, cls = rt.record, rt.driver_cls
        assert record is not None and cls is not None and issubclass(cls, Camera)
        address, url_user = credentials.split_user(record.url)
        try:
            username, password = credentials.resolve(record.credentials, url_user)
        except ValueError as exc:
            raise AuthError(f"credentials: {exc}") from None
        try:
            raw = cls.inventory_settings(address, username, password)
            return msgspec.convert(raw, cls.Settings, dec_hook=secret_dec_hook())
        except NotSupported as exc:
            raise ConfigError(str(exc)) from None
        except (ValueError, msgspec.ValidationError) as exc:
            raise ConfigError(f"the inventory row does not suit {record.driver}: {exc}") from None

    def _add_inventory_camera(self, record: CameraRecord) -> _Instance | None:
        existing = self.instances_rt.get(record.id)
        if existing is not None:
            if existing.record is None and record.id not in self._shadowed:
                self._shadowed.add(record.id)
                log.warning("inventory.shadowed", camera=record.id, by="plugins.toml")
            return None
        rt = self._inventory_instance(record)
        self.instances_rt[rt.id] = rt
        self.supervisor.quiet.add(rt.id)
        return rt

    async def _load_inventory(self) -> None:
        """Make instances of the inventory's cameras (started with the configured ones)."""
        records = await self.inventory.list()
        for record in records:
            self._add_inventory_camera(record)
        log.info("inventory.loaded", cameras=len(records), shadowed=len(self._shadowed) or None)

    async def _remove_instance(self, rt: _Instance) -> None:
        if rt.task is not None and not rt.task.done():
            rt.task.cancel()
            await asyncio.gather(rt.task, return_exceptions=True)
        await self._stop_driver(rt)
        del self.instances_rt[rt.id]
        self.supervisor.forget(UnitKind.INSTANCE, rt.id)
        await self.camera_states.forget(rt.id)

    async def sync_inventory(self) -> dict[str, int]:
        """Bring inventory cameras in line with the inventory: start new rows, restart changed
        ones, stop deleted ones. Returns the counts."""
        records = {r.id: r for r in await self.inventory.list()}
        counts = {"added": 0, "changed": 0, "removed": 0}
        gone: list[str] = []
        for rt in [rt for rt in self.instances_rt.values() if rt.record is not None]:
            new = records.get(rt.id)
            if new is not None and new.same_as(rt.record):  # type: ignore[arg-type]
                continue
            await self._remove_instance(rt)
            counts["removed" if new is None else "changed"] += 1
            if new is None:
                gone.append(rt.id)
        fresh = [rt for r in records.values() if (rt := self._add_inventory_camera(r))]
        counts["added"] = len(fresh) - counts["changed"]
        self._shadowed &= set(records)
        for rt in fresh:
            await self.supervisor.set_state(
                UnitKind.INSTANCE, rt.id, UnitState.STARTING, plugin=rt.plugin
            )
            rt.task = self._spawn(self._run_instance(rt))
        if any(counts.values()):
            log.info(
                "inventory.synced",
                **counts,
                cameras=len(records),
                stopped=gone[:20] or None,  # which cameras stopped, for the operator
            )
        return counts

    async def _inventory_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.cameras.inventory_refresh)
            try:
                await self.sync_inventory()
            except Exception as exc:  # the journal may be briefly unavailable: next round
                log.warning("inventory.sync_failed", error=f"{type(exc).__name__}: {exc}")

    async def _subscribe_connectors(self) -> None:
        """A durable subscription per connector with ``subscribes``: events reach it
        at least once, in order unless configured otherwise, across restarts."""
        for rt in self.instances_rt.values():
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
            await self.delivery.add(spec, self._connector_target(rt))

    def _schedule_readiness(self) -> None:
        if not self.device_units():
            return
        settings = self.config.readiness
        for kind in ("technical", "comprehensive"):
            cron = getattr(settings, kind)
            if cron is None:
                continue

            async def check(kind: str = kind) -> None:
                await self.readiness.run(kind)  # type: ignore[arg-type]

            job = Job(id=f"readiness-{kind}", func=check, cron=cron, timeout=900)
            self.scheduler.add(job, "core", lambda exc: None)

    async def _subscribe_rules(self) -> None:
        """``[[rules]]`` run on a durable subscription: every matching event at least once,
        after a restart too; a failing action is retried with backoff."""
        if not self.rules.patterns:
            return
        spec = SubscriptionSpec(
            id="rules",
            patterns=self.rules.patterns,
            order=Order.ORDERED,
            max_attempts=20,
            max_age=3600.0,
            timeout=60.0,
        )
        await self.delivery.add(spec, self.rules.handle)
        log.info("rules.subscribed", rules=len(self.rules.rules), patterns=list(spec.patterns))

    async def _subscribe_incidents(self) -> None:
        """Incidents reported by events (rules, the API, other processes) are recorded too."""
        from .incidents.service import TYPES

        spec = SubscriptionSpec(
            id="incidents",
            patterns=TYPES,
            order=Order.ORDERED,
            max_attempts=20,
            max_age=86_400.0,
            timeout=60.0,
        )
        await self.delivery.add(spec, self.incidents.observe)

    def _connector_target(self, rt: _Instance) -> Target:
        async def deliver(event: Event) -> DeliveryResult | None:
            driver = rt.driver
            if not isinstance(driver, Connector) or self.state_of(rt.id) != UnitState.RUNNING:
                raise NotReady
            if event.source == driver.context.source:
                return None  # never echo a connector's own events back to it
            return await driver.handle(event)

        return deliver

    async def _stop_quietly(self, instance_id: str, driver: Driver) -> None:
        try:
            async with asyncio.timeout(self.config.hub.shutdown_timeout):
                await driver.stop()
        except Exception as exc:
            log.warning("driver.stop_failed", instance=instance_id, error=repr(exc))

    async def _pump_camera_events(self, rt: _Instance, camera: Camera) -> None:
        """Publish a camera's own events as ``camera.event.<topic>``. When the stream breaks
        the driver is asked for a new one after a backoff (it re-subscribes); rejected
        credentials put the instance in ``needs_auth``."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.config.hub.retry_initial, min(60.0, self.config.hub.retry_max))
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
                self._spawn(self.instance_failed(rt.id, exc))  # it stops this very task
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

    async def _stop_driver(self, rt: _Instance) -> None:
        task, rt.events_task = rt.events_task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        driver, rt.driver = rt.driver, None
        if driver is not None:
            await self._stop_quietly(rt.id, driver)

    # -- stopping --------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop jobs, drivers and plugins, drain the bus, close the journal. Safe to call
        twice, and after a start that failed half-way."""
        if not self._started:
            if self._journal_open:
                self._journal_open = False
                await self.journal.close()
            return
        self._started = False
        await self.scheduler.shutdown()
        await self.alerts.close()
        await self.incidents.close()
        for rt in self.instances_rt.values():
            if rt.task is not None and not rt.task.done():
                rt.task.cancel()
        running = [rt for rt in self.instances_rt.values() if rt.driver is not None]

        async def stop_one(rt: _Instance) -> None:
            await self._stop_driver(rt)
            await self.supervisor.set_state(
                UnitKind.INSTANCE, rt.id, UnitState.STOPPED, plugin=rt.plugin
            )

        await asyncio.gather(*(stop_one(rt) for rt in running))
        for name in reversed(list(self.plugins)):
            plugin = self.plugins[name]
            status = self.supervisor.status_of_plugin(name)
            if plugin.obj is None or status is None or status.state != UnitState.RUNNING:
                continue
            try:
                await self.host.call(name, "shutdown", self.config.hub.shutdown_timeout, hub=self)
            except Exception as exc:
                log.warning("plugin.shutdown_failed", plugin=name, error=repr(exc))
            await self.supervisor.set_state(UnitKind.PLUGIN, name, UnitState.STOPPED)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.delivery.stop()
        if self.bus is not None:
            await self.bus.close(self.config.hub.shutdown_timeout)
        await self.camera_states.close()
        if self._journal_open:
            self._journal_open = False
            await self.journal.close()
        log.info("hub.stopped", hub=self.name)

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
