"""The hub: the composition root that builds the parts and starts and stops them in order.

Each part is built from the few parts it uses (``docs/architecture.md`` draws them): the
:class:`~nabat.publishing.Publisher`, the :class:`~nabat.plugins.loading.PluginLoader`, the
driver :class:`~nabat.instances.Instances`, the inventory's
:class:`~nabat.cameras.fleet.CameraFleet` and the services (alerts, readiness, incidents,
rules). **prepare** loads and checks plugins and settings (``nabat config check`` stops here);
**start** opens the journal, runs each plugin's ``startup`` under the supervisor, then its
listeners and jobs, then the driver instances; **stop** undoes it in reverse. Plugins see the
hub through :class:`nabat.interfaces.HubAPI`, which this class implements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from .alerts import AlertService
from .alerts.readiness import ReadinessService
from .bus import Bus, Subscription
from .cameras.fleet import CameraFleet
from .cameras.inventory import Inventory
from .cameras.snapshots import SnapshotService
from .cameras.states import CameraStates
from .config import ConfigIssue, LoadedConfig
from .delivery import DeliveryService
from .duty import DutyService
from .duty.handover import HandoverService
from .duty.roster import Roster
from .events import Event, EventTypes, Severity
from .federation import CommandTaker, Dispatcher, Follower, Uplink
from .federation.reports import SiteReporter
from .i18n import Messages
from .incidents import IncidentService
from .instances import Instance, InstanceContext, Instances
from .interfaces import CameraEvent, Driver, HealthState, IncidentStatus, Job, Progress
from .interfaces.payloads import UnitKind, UnitStatus
from .logs import get_logger
from .notifications import NotificationService, register_notification_types
from .plugins import PluginHost
from .plugins.loading import LoadedPlugin, PluginLoader
from .publishing import Publisher
from .pulse import Pulse
from .recording import Hold, Recorder, SegmentIndex
from .regions import load_region
from .rules.actions import RuleActions
from .rules.engine import RuleEngine
from .scheduler import Scheduler
from .store import Appended, Journal, JournalError
from .store.factory import journal_from_config
from .store.health import Outage
from .store.retention import retention_jobs
from .supervisor import Supervisor
from .tasks import TaskSet
from .video import LiveVideo

__all__ = ["Hub"]

log = get_logger("nabat.hub")
D = TypeVar("D", bound=Driver)


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
        config = self.config = loaded.config
        self.name = config.hub.name
        self.data_dir: Path = loaded.data_dir
        self.log = log
        self.message = Messages(language or config.hub.language)
        self.event_types = EventTypes()
        self.event_types.register("camera.event.*", CameraEvent, owner="core")
        self.event_types.register("hub.unit.*", UnitStatus, owner="core")
        register_notification_types(self.event_types)
        self.journal: Journal = journal_from_config(loaded, self.event_types)
        self.event_types.register("hub.journal.recovered", Outage, owner="core")
        self.journal.health.on_recovered(self._journal_recovered)
        storage = config.storage
        self.delivery = DeliveryService(
            self.journal, lease_ttl=storage.lease_ttl, poll=storage.poll_interval
        )
        self.publisher = Publisher(self.journal, self.delivery, poll=storage.poll_interval)
        self.scheduler = Scheduler(claim=self.publisher.claim_job_slot)
        self.supervisor = Supervisor(
            self.publisher.publish_if_started,
            retry_initial=config.hub.retry_initial,
            retry_max=config.hub.retry_max,
            needs_auth_retry=config.hub.needs_auth_retry,
        )
        self.tasks = TaskSet("hub")
        self.host = PluginHost()
        self.loader = PluginLoader(
            loaded,
            host=self.host,
            supervisor=self.supervisor,
            event_types=self.event_types,
            message=self.message,
            hub=lambda: self,
            spawn=self.tasks.spawn,
            extra=plugins,
            discover_installed=discover_installed,
        )
        self.units = Instances(
            config.instances,
            settings=config.hub,
            supervisor=self.supervisor,
            plugins=self.loader.plugins,
            publish=self.publish,
            context=self._context,
            report=self.loader.report_soon,
            message=self.message,
        )
        """Every driver instance, configured or imported, supervised."""
        self.camera_states = CameraStates(self.journal)
        """Each camera's last reported health (kept in the journal, shared by processes)."""
        self.inventory = Inventory(self.journal)
        self.fleet = CameraFleet(
            self.inventory,
            self.units,
            self.loader,
            self.camera_states,
            hub=config.hub,
            cameras=config.cameras,
        )
        self.video = LiveVideo(config.video)
        """Live video: one upstream per watched camera, shared by its viewers."""
        self.footage = SegmentIndex(self.journal)
        """Every recorded segment, with its hash chain."""
        federation, site = config.federation, config.hub.site
        federated = bool(federation.servers) and site is not None
        self.uplink = (
            Uplink(federation, site=site, hub_name=config.hub.name)
            if federated and site is not None and federation.up
            else None
        )
        """The up-path of a federated site: its events to its JetStream stream."""
        self.follower = (
            Follower(
                federation,
                site=site,
                hub_name=config.hub.name,
                append=self.publisher.publish_many,
                publish=self.publish,
                types=self.event_types,
                journal=self.journal,
                lease_ttl=config.storage.lease_ttl,
            )
            if federated and site is not None and federation.follow
            else None
        )
        """The following side: the followed sites' events into this hub's journal."""
        self.recorder = Recorder(
            config.recording,
            data_dir=self.data_dir,
            video=self.video,
            index=self.footage,
            instances=self.units,
            publish=self.publish,
            holds=self._recording_holds,
            lease_ttl=config.storage.lease_ttl,
        )
        """``[[recording.policy]]``: the selected cameras' footage as segment files."""
        self.snapshots = SnapshotService(
            max_age=config.cameras.snapshot_max_age,
            concurrency=config.cameras.snapshot_concurrency,
            from_stream=self.video.snapshot,  # a streamed camera needs no second session
        )
        self.alerts = AlertService(
            config.alerts,
            sender=config.alerts.sender or f"nabat@{self.name}",
            hub_name=self.name,
            journal=self.journal,
            publish=self.publish,
            instances=self.units,
        )
        """Issues alerts to warning devices and tracks every device's outcome."""
        self.dispatcher = (
            Dispatcher(
                federation,
                site=site,
                hub_name=self.name,
                journal=self.journal,
                region=load_region(config.hub.region),
                data_dir=self.data_dir,
                reachable=self.follower.reachable.get,
            )
            if self.follower is not None and site is not None
            else None
        )
        """The region's commands to the sites it follows (alerts there, remote cameras)."""
        self.alerts.remote = self.dispatcher
        self.commands = (
            CommandTaker(federation, site=site, hub=self)
            if federated and site is not None and federation.commands_from
            else None
        )
        """A site's side: the region's commands and calls, acted on here."""
        self.site_reporter = (
            SiteReporter(self, site=site, interval=federation.report_interval)
            if self.uplink is not None and site is not None
            else None
        )
        """A site's district reports, published for the region."""
        self.readiness = ReadinessService(
            config.readiness,
            alerts=self.alerts,
            journal=self.journal,
            publish=self.publish,
            instances=self.units,
            hub_name=self.name,
        )
        """Scheduled technical and comprehensive checks of warning devices."""
        self.incidents = IncidentService(
            config.incidents,
            region=load_region(config.hub.region),
            journal=self.journal,
            publish=self.publish,
            instances=self.units,
            camera_states=self.camera_states,
            snapshots=self.snapshots,
        )
        """Incidents from 112, rules and connectors, with the nearest cameras' snapshots."""
        self.notifications = NotificationService(
            config.notifications, instances=self.units, publish_many=self.publish_many
        )
        """Notifications to people, delivered durably through notifier instances."""
        self.duty = DutyService(
            config.duty,
            journal=self.journal,
            publish_many=self.publish_many,
            notifications=self.notifications,
            site=config.hub.site,
            hub_name=self.name,
        )
        """Incident handling norms: clocks, checklists, escalation."""
        self.roster = Roster(self.journal, config.duty.posts, load_region(config.hub.region))
        """Who is on duty at which post of which municipality."""
        self.handovers = HandoverService(self, self.roster, self.publish)
        """Shift handovers: what the outgoing shift passes on, accepted by the incoming."""
        self.rules = RuleEngine(
            config.rules,
            RuleActions(
                alerts=self.alerts,
                publish_many=self.publish_many,
                instances=self.units,
                notifications=self.notifications,
                record=self.recorder.record_for_rule,
            ),
        )
        """``[[rules]]``: event → alert, notification, incident, forward."""
        self.runs: dict[str, Progress] = {}
        """The latest long run (sweep) per name, for /metrics."""
        self._prepared = False
        self._started = False

    async def _recording_holds(self) -> list[Hold]:
        """Footage retention must keep: open incidents' linked cameras (from ``hold_before``
        before the report on) and exports in progress."""
        before = timedelta(seconds=self.config.recording.hold_before)
        later = datetime.now(UTC) + timedelta(days=1)
        holds = [
            Hold(camera.id, record.created_at - before, later, f"incident:{record.id}")
            for record in await self.incidents.list(status=IncidentStatus.OPEN, limit=100_000)
            for camera in record.incident.cameras
        ]
        return holds + await self.footage.holds()

    def _context(self, rt: Instance) -> InstanceContext:
        return InstanceContext(
            rt, publish=self.publish, incidents=lambda: self.incidents, data_dir=self.data_dir
        )

    # -- what others read --------------------------------------------------------------------
    @property
    def bus(self) -> Bus | None:
        return self.publisher.bus

    @property
    def appended(self) -> Pulse:
        """Pulsed whenever events reach the journal; live readers wait on it."""
        return self.publisher.appended

    @property
    def plugins(self) -> dict[str, LoadedPlugin]:
        return self.loader.plugins

    @property
    def issues(self) -> list[ConfigIssue]:
        return self.loader.issues

    @property
    def warnings(self) -> list[str]:
        return self.loader.warnings

    def _journal_recovered(self, outage: Outage) -> None:
        """The journal answers again after an outage: say so, once it is stored."""
        event = Event(
            type="hub.journal.recovered",
            source=f"/nabat/hubs/{self.name}",
            subject=self.name,
            severity=Severity.SEVERE,  # events were refused meanwhile: someone must know
            data=outage,
        )
        self.tasks.spawn(self._announce_outage(event), name="journal-outage")

    async def _announce_outage(self, event: Event) -> None:
        delay = 1.0
        while True:
            try:
                await self.publish(event)
                return
            except JournalError:  # down again: its own outage; this one is told after it
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    # -- HubAPI ----------------------------------------------------------------------------
    async def publish(self, event: Event) -> None:
        """Append ``event`` to the journal (durable once this returns), then fan it out."""
        await self.publisher.publish(event)

    async def publish_many(self, events: Sequence[Event]) -> list[Appended]:
        """Append ``events`` in one durable write, then fan out those that are new."""
        return await self.publisher.publish_many(events)

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
        return self.units.drivers(interface, municipality=municipality, running=running)

    def instance(self, instance_id: str) -> Driver:
        return self.units.driver(instance_id)

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
        await self.units.fail(instance_id, error)

    # -- inventory cameras -----------------------------------------------------------------
    def check_inventory_row(self, driver: str, url: str) -> list[tuple[str, str]]:
        """What the installed drivers find wrong with an inventory row (after :meth:`prepare`)."""
        return self.fleet.check_row(driver, url)

    async def sync_inventory(self) -> dict[str, int]:
        """Start new inventory rows, restart changed ones, stop deleted ones."""
        return await self.fleet.sync()

    # -- lifecycle -------------------------------------------------------------------------
    async def prepare(self) -> list[ConfigIssue]:
        """Load enabled plugins and validate all settings; return the problems found."""
        if not self._prepared:
            self._prepared = True
            await self.loader.prepare(self.units)
        return self.issues

    async def start(self, *, wait: bool = True) -> None:
        """Start everything; with ``wait``, return once no unit is still ``starting`` (or the
        start-up timeout passed). Units still retrying keep trying in the background."""
        if self._started:
            return
        self._started = True
        bus_cfg = self.config.hub.bus
        self.publisher.bus = Bus(
            queue_size=bus_cfg.queue_size,
            overflow=bus_cfg.overflow,
            put_timeout=bus_cfg.put_timeout,
            handler_timeout=bus_cfg.handler_timeout,
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self.journal.open()  # creates or migrates the schema; refuses a newer one
        self.publisher.journal_open = True
        self.publisher.tail_from = await self.journal.last_seq()
        log.info("journal.opened", kind=self.journal.kind, last_seq=self.publisher.tail_from)
        await self.camera_states.load()
        self.subscribe(
            "camera.health.*",
            self.camera_states.on_event,
            name="core.camera-states",
            queue_size=100_000,
        )
        self.tasks.spawn(self.publisher.tail(), name="journal-tail")
        await self.prepare()
        await self.fleet.load()
        self.scheduler.start()
        self._schedule_core_jobs()
        await self.units.subscribe_connectors(self.delivery)
        await self.rules.subscribe(self.delivery)
        await self.incidents.subscribe(self.delivery)
        await self.notifications.subscribe(self.delivery)
        await self.duty.subscribe(self.delivery)
        if self.uplink is not None:
            await self.uplink.start(self.delivery)
        if self.follower is not None:
            self.follower.start()
        if self.dispatcher is not None:
            await self.dispatcher.start(self.delivery)
        if self.commands is not None:
            self.commands.start()
        if self.site_reporter is not None:
            self.site_reporter.start()
        if self.recorder.event_policy() is not None:
            self.subscribe("incident.*", self.recorder.on_incident, name="core.recording")
        await self.loader.mark_starting()
        await self.units.mark_starting()
        for name, plugin in self.plugins.items():
            if plugin.prepared:
                self.tasks.spawn(
                    self.loader.run(
                        name, plugin, subscribe=self.subscribe, scheduler=self.scheduler
                    ),
                    name=f"plugin:{name}",
                )
        self.units.start_all()
        self.tasks.spawn(self.fleet.keep_in_sync(), name="inventory")
        await self.recorder.start()
        if wait:
            await self.supervisor.wait_settled(self.config.hub.startup_timeout + 1.0)
        log.info("hub.started", hub=self.name, **self.supervisor.summary())

    def _schedule_core_jobs(self) -> None:
        """The journal's housekeeping; readiness checks when there are warning devices."""
        jobs = retention_jobs(self.journal, self.config.storage.retention_days)
        jobs += self.recorder.jobs()
        jobs += self.duty.jobs()
        jobs.append(Job(id="duty-handovers", func=self.handovers.sweep, every=60.0, shared=True))
        if self.units.devices():
            jobs += self.readiness.jobs()
        for job in jobs:
            self.scheduler.add(job, "core", lambda exc: None)

    async def stop(self) -> None:
        """Stop jobs, drivers and plugins, drain the bus, close the journal. Safe to call
        twice, and after a start that failed half-way."""
        if not self._started:
            if self.publisher.journal_open:
                self.publisher.journal_open = False
                await self.journal.close()
            return
        self._started = False
        await self.scheduler.shutdown()
        if self.follower is not None:
            await self.follower.close()
        if self.commands is not None:
            await self.commands.close()
        if self.site_reporter is not None:
            await self.site_reporter.close()
        if self.dispatcher is not None:
            await self.dispatcher.close()
        await self.alerts.close()
        await self.incidents.close()
        await self.recorder.stop()
        await self.video.close()
        await self.units.stop_all()
        await self.loader.shutdown_all()
        await self.tasks.cancel_all()
        await self.delivery.stop()
        if self.uplink is not None:
            await self.uplink.close()
        if self.bus is not None:
            await self.bus.close(self.config.hub.shutdown_timeout)
        await self.camera_states.close()
        if self.publisher.journal_open:
            self.publisher.journal_open = False
            await self.journal.close()
        log.info("hub.stopped", hub=self.name)

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
