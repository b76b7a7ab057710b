"""Loading plugins: plan which to load, prepare them, run their start-up and attach them.

* **plan** — the installed ``nabat`` entry points (and plugin objects given by tests), each
  enabled by ``plugins.toml`` or by being built in;
* **prepare** — import each enabled plugin (in a worker thread, with a timeout), collect its
  drivers, payload types and settings type, validate its settings and its instances' settings.
  A plugin that fails is ``failed`` with the reason; the others go on;
* **run** — its ``startup`` hook under the supervisor (retry with backoff), then its listeners
  and jobs (**attach**); ``plugin_error`` observers hear of every contained fault.

:meth:`PluginLoader.resolve` is the one place a driver ``kind`` becomes (plugin, class).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..bus import Subscription
from ..config import ConfigInvalid, ConfigIssue, LoadedConfig, convert_settings
from ..events import EventTypes
from ..i18n import Messages
from ..instances import Instance
from ..interfaces import INTERFACES, Driver, DriverError, Job, Listener
from ..interfaces.payloads import UnitKind, UnitState
from ..logs import get_logger
from ..scheduler import Scheduler
from ..supervisor import Supervisor, classify
from .discovery import PluginInfo, discover
from .host import PluginHost

__all__ = ["LoadedPlugin", "PluginLoader", "Resolved", "Unresolved"]

log = get_logger("nabat.hub")
_OBSERVER_TIMEOUT_S = 5.0


@dataclass
class LoadedPlugin:
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


@dataclass(frozen=True)
class Resolved:
    plugin: str
    cls: type[Driver]


@dataclass(frozen=True)
class Unresolved:
    reason: str
    plugin: str | None = None
    """The plugin the kind's prefix names, when it exists but does not run."""
    reported: bool = False
    """The plugin's own failure already says why (no separate config issue)."""


class PluginLoader:
    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        host: PluginHost,
        supervisor: Supervisor,
        event_types: EventTypes,
        message: Messages,
        hub: Callable[[], Any],
        spawn: Callable[[Any], Any],
        extra: Mapping[str, object] | None = None,
        discover_installed: bool = True,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.host = host
        self.supervisor = supervisor
        self.event_types = event_types
        self.message = message
        self._hub = hub  # what hooks are called with (``startup(hub=…)``)
        self._extra = dict(extra or {})
        self._discover = discover_installed
        self.plugins: dict[str, LoadedPlugin] = {}
        self.issues: list[ConfigIssue] = []
        self.warnings: list[str] = []
        self.kinds: dict[str, str] = {}  # driver kind -> plugin name
        self._load_faults: list[tuple[str, BaseException, str]] = []
        self.spawn = spawn
        """Starts a background task (observers of a fault are told in the background)."""

    def issue(self, path: Sequence[str], reason: str) -> ConfigIssue:
        found = self.loaded.issue(path, reason)
        self.issues.append(found)
        return found

    # -- planning and preparing ------------------------------------------------------------
    def plan(self) -> None:
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
            self.plugins[name] = LoadedPlugin(info=info, enabled=enabled)
        for name, entry in self.config.plugins.items():
            if entry.enabled and name not in installed:
                self.issue(["plugins", name], self.message("reason.not_installed", plugin=name))

    async def prepare(self, instances: Iterable[Instance]) -> None:
        """Load enabled plugins, validate all settings, resolve every instance's driver."""
        self.plan()
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
                await self._fail(name, exc, "settings")
            except Exception as exc:
                self.issue(["plugins", name], classify(exc)[1])
                await self._fail(name, exc, "load")
        for name, entry in self.config.plugins.items():
            if entry.enabled and name not in self.plugins:
                await self.supervisor.set_state(
                    UnitKind.PLUGIN,
                    name,
                    UnitState.FAILED,
                    self.message("reason.not_installed", plugin=name),
                )
        for rt in instances:
            self.prepare_instance(rt)
        for instance_id, found in self.loaded.broken_instances.items():
            self.issues.extend(found)
            reason = "; ".join(f"{i.path}: {i.reason}" for i in found)
            await self.supervisor.set_state(
                UnitKind.INSTANCE, instance_id, UnitState.FAILED, reason
            )
        for name, exc, context in self._load_faults:
            await self.report(name, exc, context)

    async def _prepare_plugin(self, name: str, plugin: LoadedPlugin, timeout: float) -> None:
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
        for cls in await self.host.call(name, "register_drivers", timeout) or ():
            _check_driver(cls)
            owner = self.kinds.get(cls.kind)
            if owner is not None and owner != name:
                raise DriverError(
                    f"driver kind {cls.kind!r} is already provided by plugin {owner!r}"
                )
            plugin.drivers[cls.kind] = cls
        for kind in plugin.drivers:
            self.kinds[kind] = name
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

    def resolve(self, kind: str) -> Resolved | Unresolved:
        """The plugin and driver class of ``kind``, or why there is none."""
        plugin_name = self.kinds.get(kind)
        failed = self.message("unit.state.failed")
        if plugin_name is None:
            prefix = kind.split(".", 1)[0]
            other = self.plugins.get(prefix)
            if other is not None and not other.enabled:
                return Unresolved(self.message("reason.plugin_disabled", kind=kind, plugin=prefix))
            if other is not None and not other.prepared:
                return Unresolved(
                    self.message("reason.plugin_not_running", plugin=prefix, state=failed),
                    plugin=prefix,
                    reported=True,
                )
            known = ", ".join(sorted(self.kinds)) or "-"
            return Unresolved(self.message("reason.unknown_kind", kind=kind, known=known))
        if not self.plugins[plugin_name].prepared:
            return Unresolved(
                self.message("reason.plugin_not_running", plugin=plugin_name, state=failed),
                plugin=plugin_name,
                reported=True,
            )
        return Resolved(plugin_name, self.plugins[plugin_name].drivers[kind])

    def prepare_instance(self, rt: Instance) -> None:
        """Resolve a ``plugins.toml`` instance's driver and validate its settings."""
        if not rt.entry.enabled:
            rt.disabled = True
            return
        kind = rt.entry.kind
        found = self.resolve(kind)
        if isinstance(found, Resolved):
            cls: type[Driver] | None = found.cls
        else:
            owner = self.plugins.get(found.plugin or "")
            cls = owner.drivers.get(kind) if owner is not None else None
        rt.plugin = found.plugin
        if cls is None:
            assert isinstance(found, Unresolved)
            rt.problem = found.reason
            if not found.reported:
                self.issue(["instances", rt.id, "kind"], found.reason)
            return
        rt.driver_cls = cls
        try:
            rt.settings = convert_settings(
                self.loaded, rt.entry.settings, cls.Settings, ["instances", rt.id, "settings"]
            )
        except ConfigInvalid as exc:
            self.issues.extend(exc.issues)
            rt.problem = "; ".join(f"{i.path}: {i.reason}" for i in exc.issues)
        if isinstance(found, Unresolved):  # its plugin did not load: that is the reason
            rt.problem = found.reason

    # -- faults ----------------------------------------------------------------------------
    async def _fail(self, name: str, exc: BaseException, context: str) -> None:
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

    async def report(self, plugin: str, exc: BaseException, context: str) -> None:
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
                    hub=self._hub(),
                    plugin=plugin,
                    error=exc,
                    context=context,
                )
            except Exception as observer_exc:
                log.warning("plugin.observer_failed", plugin=name, error=repr(observer_exc))

    def report_soon(self, plugin: str, context: str) -> Callable[[BaseException], None]:
        def report(exc: BaseException) -> None:
            self.spawn(self.report(plugin, exc, context))

        return report

    # -- running ---------------------------------------------------------------------------
    async def mark_starting(self) -> None:
        loop = asyncio.get_running_loop()
        for name, plugin in self.plugins.items():
            plugin.ready = loop.create_future()
            if plugin.prepared:
                await self.supervisor.set_state(UnitKind.PLUGIN, name, UnitState.STARTING)
            else:
                plugin.ready.set_result(False)
                plugin.first_attempt.set()

    async def run(
        self,
        name: str,
        plugin: LoadedPlugin,
        *,
        subscribe: Callable[..., Subscription],
        scheduler: Scheduler,
    ) -> None:
        """The plugin's ``startup`` (kept trying), then its listeners and jobs."""
        timeout = self.config.hub.startup_timeout
        hub = self._hub()

        async def start() -> None:
            await self.host.call(name, "startup", timeout, hub=hub, settings=plugin.settings)

        ok = await self.supervisor.keep_running(
            UnitKind.PLUGIN,
            name,
            start,
            on_failure=self.report_soon(name, "startup"),
            first_failure=plugin.first_attempt,
        )
        if ok:
            try:
                await self._attach(name, plugin, timeout, subscribe, scheduler)
            except Exception as exc:
                for sub in plugin.subscriptions:
                    sub.unsubscribe()
                plugin.subscriptions.clear()
                _, reason = classify(exc)
                log.error("plugin.attach_failed", plugin=name, exc_info=exc)
                await self.supervisor.set_state(UnitKind.PLUGIN, name, UnitState.FAILED, reason)
                await self.report(name, exc, "register")
                ok = False
        assert plugin.ready is not None
        plugin.first_attempt.set()
        if not plugin.ready.done():
            plugin.ready.set_result(ok)

    async def _attach(
        self,
        name: str,
        plugin: LoadedPlugin,
        timeout: float,
        subscribe: Callable[..., Subscription],
        scheduler: Scheduler,
    ) -> None:
        """Subscribe the listeners and schedule the jobs of a plugin that just started."""
        hub = self._hub()
        listeners: Sequence[Listener] = (
            await self.host.call(
                name, "register_listeners", timeout, hub=hub, settings=plugin.settings
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
                subscribe(list(spec.patterns), spec.handler, name=f"{name}.{spec.name}", **opts)
            )
        jobs: Sequence[Job] = (
            await self.host.call(name, "register_jobs", timeout, hub=hub, settings=plugin.settings)
            or ()
        )
        for job in jobs:
            if not isinstance(job, Job):
                raise DriverError(f"register_jobs returned {job!r}, not a Job")
            scheduler.add(job, name, self.report_soon(name, f"job:{job.id}"))

    async def shutdown_all(self) -> None:
        """``shutdown`` hooks of every running plugin, in reverse order (``stopped``)."""
        hub = self._hub()
        for name in reversed(list(self.plugins)):
            plugin = self.plugins[name]
            status = self.supervisor.status_of_plugin(name)
            if plugin.obj is None or status is None or status.state != UnitState.RUNNING:
                continue
            try:
                await self.host.call(name, "shutdown", self.config.hub.shutdown_timeout, hub=hub)
            except Exception as exc:
                log.warning("plugin.shutdown_failed", plugin=name, error=repr(exc))
            await self.supervisor.set_state(UnitKind.PLUGIN, name, UnitState.STOPPED)


def _check_driver(cls: Any) -> None:
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
