"""The region's side of commands down: alerts sent to the sites whose area they cover, each
site's answer and devices tracked; snapshots and PTZ of a remote camera on request.

An alert whose area reaches a followed site (``[federation] municipalities`` says which
site holds which municipalities) becomes an ``alert.issue`` :class:`~.commands.Command` in
the region's stream ``CMD_<site>``, which the site mirrors: a cut link only delays it.
Before it is published it is written to the journal's **outbox** (collection
``federation.outbox``): what the region's NATS does not take now is published again every
:data:`SWEEP_S` until it is, or until its deadline. The deadline is the alert's ``expires``
or ``[federation] command_ttl`` from now, whichever is sooner. A command still unanswered at
its deadline is marked **expired** — never delivered, and deleted from the stream so a site
coming back later does not even see it (the site checks the deadline too).

Each alert's result at each site (:class:`~nabat.alerts.SiteResult`, collection
``alerts.sites``, key ``<alert>/<site>``) is kept up to date by a durable subscription to
the sites' own events as they arrive (``command.*``, ``alert.device.*``,
``alert.completed``), so a restart of the regional hub misses none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ..alerts.area import municipalities_of
from ..alerts.model import AlertRecord, DeviceOutcome, DeviceResult, SiteResult, SiteState
from ..config.model import FederationSettings
from ..delivery import DeliveryService, NotReady
from ..events import Event, site_of
from ..geo import distance_km
from ..ids import uuid7
from ..interfaces import DeliveryResult, DeliveryStatus
from ..interfaces.alerting import Alert, Area
from ..logs import get_logger
from ..regions import Region
from ..store import Journal
from ..store.delivery import Order, SubscriptionSpec
from .commands import (
    Call,
    CallKind,
    Command,
    CommandKind,
    call_subject,
    command_stream,
    command_subject,
    command_subjects,
    sign,
)
from .connection import Connection, ensure_stream
from .reports import keep as keep_report
from .reports import keep_incident

if TYPE_CHECKING:
    from ..evidence.keys import SigningKey

__all__ = [
    "CANCEL_TTL_S",
    "COMMAND_STREAM_MAX_AGE_S",
    "COMMAND_STREAM_MAX_BYTES",
    "SWEEP_S",
    "CallAnswer",
    "Dispatcher",
    "SiteUnavailable",
]

log = get_logger("nabat.federation")

SITES = "alerts.sites"
OUTBOX = "federation.outbox"
SWEEP_S = 2.0
COMMAND_STREAM_MAX_AGE_S = 86_400.0
"""The region's command streams keep a message a day at most (a cancel's deadline)."""
COMMAND_STREAM_MAX_BYTES = 64 * 1024 * 1024
"""Commands are small (an alert is a few KB): 64 MiB is thousands, and JetStream reserves a
stream's limit up front."""
CANCEL_TTL_S = 86_400.0
"""A cancel is never too late: it waits for the site as long as the stream keeps it."""
DUPLICATE_WINDOW_S = 120.0
_FINAL = (SiteState.COMPLETED, SiteState.EXPIRED, SiteState.REFUSED, SiteState.CANCELLED)


class SiteUnavailable(Exception):
    """A call the site cannot answer now; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class CallAnswer(msgspec.Struct, kw_only=True):
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = {}


class Outgoing(msgspec.Struct, kw_only=True):
    """A command in the outbox: signed, with what it is for."""

    alert: str
    site: str
    command: str
    kind: str
    subject: str
    body: bytes
    headers: dict[str, str]
    deadline: datetime
    seq: int | None = None
    """Its sequence in the region's stream once published."""


_site_result = msgspec.json.Decoder(SiteResult)
_outgoing = msgspec.json.Decoder(Outgoing)


class _Outcome(msgspec.Struct, kw_only=True):
    command: str
    kind: str
    alert: str | None = None
    detail: str = ""
    devices: int | None = None


class _DeviceEvent(msgspec.Struct, kw_only=True):
    alert: str
    device: str
    outcome: DeviceOutcome
    attempts: int = 0
    detail: str = ""


def _bbox_of_area(area: Area) -> list[tuple[float, float, float, float]]:
    boxes = []
    for ring in area.polygon:
        lats, lons = [p[0] for p in ring], [p[1] for p in ring]
        boxes.append((min(lats), min(lons), max(lats), max(lons)))
    for c in area.circle:
        dlat = c.radius_km / 111.0
        # a degree of longitude shrinks with latitude: never under-cover the circle
        dlon = c.radius_km / max(1.0, distance_km(c.lat, c.lon, c.lat, c.lon + 1.0))
        boxes.append((c.lat - dlat, c.lon - dlon, c.lat + dlat, c.lon + dlon))
    return boxes


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


class Dispatcher:
    """Built by a hub that follows sites; it is the alert service's ``remote``."""

    def __init__(
        self,
        settings: FederationSettings,
        *,
        site: str,
        hub_name: str,
        journal: Journal,
        region: Region,
        data_dir: Path,
        reachable: Callable[[str], bool | None],
    ) -> None:
        self.settings = settings
        self.site = site
        self.journal = journal
        self.region = region
        self.data_dir = data_dir
        self.reachable = reachable
        self.connection = Connection(settings, name=f"nabat {hub_name} ({site}) commands")
        self.key: SigningKey | None = None
        self.sent = 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def subscription_id(self) -> str:
        return f"federation-results:{self.site}"

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, delivery: DeliveryService) -> None:
        from ..evidence.keys import load_or_create_key

        self.key = await asyncio.to_thread(load_or_create_key, self.data_dir)
        connect = asyncio.ensure_future(self.connection.open(self._prepare))
        connect.set_name("federation-commands-connect")
        sweep = asyncio.ensure_future(self._sweep_forever())
        sweep.set_name("federation-commands-sweep")
        self._tasks += [connect, sweep]
        await delivery.add(
            SubscriptionSpec(
                id=self.subscription_id,
                patterns=(
                    "command.>",
                    "alert.device.>",
                    "alert.completed",
                    "site.report",
                    "incident.*",
                ),
                order=Order.ORDERED,
                max_attempts=None,
                max_age=None,
                backoff_initial=0.5,
                backoff_max=5.0,
            ),
            self.on_event,
        )

    async def _prepare(self, js: Any) -> None:
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

        for followed in self.settings.follow:
            config = StreamConfig(
                name=command_stream(followed),
                subjects=[command_subjects(followed)],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                discard=DiscardPolicy.OLD,
                max_age=COMMAND_STREAM_MAX_AGE_S,
                max_bytes=COMMAND_STREAM_MAX_BYTES,
                duplicate_window=DUPLICATE_WINDOW_S,
                description=f"Nabat {self.site}: commands for site {followed}",
            )
            await ensure_stream(js, config, site=followed)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.connection.close()

    # -- which sites ------------------------------------------------------------------------
    def sites_for(
        self, alert: Alert, allowed: Callable[[str | None], bool]
    ) -> dict[str, list[str]]:
        """The followed sites with a municipality the area names, or whose outline's box
        meets a polygon's or circle's box (generous on purpose: the site applies the area to
        its devices' own locations, and answers "no device" when none is in it)."""
        areas = [area for info in alert.info for area in info.area]
        named = municipalities_of(areas)
        boxes = [box for area in areas for box in _bbox_of_area(area)]
        outlines = {o.municipality: o.bbox for o in self.region.outlines} if boxes else {}
        found: dict[str, list[str]] = {}
        for site, slugs in self.settings.municipalities.items():
            hit = [
                m
                for m in slugs
                if allowed(m)
                and (m in named or (m in outlines and any(_overlap(outlines[m], b) for b in boxes)))
            ]
            if hit:
                found[site] = hit
        return found

    # -- sending ----------------------------------------------------------------------------
    def _deadline(self, alert: Alert | None, now: datetime) -> datetime:
        deadline = now + timedelta(seconds=self.settings.command_ttl)
        if alert is not None:
            for info in alert.info:
                if info.expires is not None and info.expires < deadline:
                    deadline = info.expires
        return deadline

    def _command(
        self,
        kind: CommandKind,
        site: str,
        record: AlertRecord,
        by: str,
        deadline: datetime,
        municipalities: list[str] | None = None,
    ) -> tuple[Command, Outgoing]:
        assert self.key is not None, "the dispatcher is not started"
        now = datetime.now(UTC)
        command = Command(
            id=uuid7(),
            kind=kind,
            site=site,
            sender=self.site,
            issued_at=now,
            deadline=deadline,
            by=by,
            confirmed_by=record.confirmed_by if kind == "alert.issue" else None,
            municipalities=municipalities,
            alert=record.alert if kind == "alert.issue" else None,
            message=record.message if kind == "alert.issue" else None,
            alert_id=record.id,
        )
        body = msgspec.json.encode(command)
        return command, Outgoing(
            alert=record.id,
            site=site,
            command=command.id,
            kind=kind,
            subject=command_subject(site, kind),
            body=body,
            headers={"Nats-Msg-Id": command.id, **sign(self.key, body, deadline)},
            deadline=deadline,
        )

    def _reach(self, record: AlertRecord, site: str) -> list[str] | None:
        """The municipalities the site may act in for this alert: None when the caller's
        reach is the whole site (the area alone decides)."""
        reach = record.sites.get(site, [])
        whole = self.settings.municipalities.get(site, [])
        return None if set(reach) >= set(whole) else reach

    async def dispatch(self, record: AlertRecord) -> None:
        now = datetime.now(UTC)
        deadline = self._deadline(record.alert, now)
        for site in record.sites:
            command, outgoing = self._command(
                "alert.issue", site, record, record.created_by, deadline, self._reach(record, site)
            )
            result = SiteResult(
                alert=record.id,
                site=site,
                command=command.id,
                state=SiteState.UNSENT,
                deadline=deadline,
                created=now,
                reachable=self.reachable(site),
            )
            try:
                await self._put_result(result)
                await self._put_outgoing(outgoing)
            except Exception as exc:  # the journal failing: the alert's record says so
                log.error(
                    "federation.command_not_kept", alert=record.id, site=site, error=repr(exc)
                )
                continue
            await self._publish(outgoing)

    async def cancel(self, record: AlertRecord, *, by: str) -> None:
        for site in record.sites:
            result = await self.result(record.id, site)
            if result is None or result.state in (SiteState.EXPIRED, SiteState.REFUSED):
                continue
            pending = await self._outgoing_of(record.id, site)
            never_sent = any(o.kind == "alert.issue" and o.seq is None for o in pending)
            for outgoing in pending:
                if outgoing.kind == "alert.issue":
                    await self._withdraw(outgoing)
            # The site may have it already (in its mirror, or sounding): tell it to stop —
            # unless the command never reached NATS.
            now = datetime.now(UTC)
            _, stop = self._command(
                "alert.cancel", site, record, by, now + timedelta(seconds=CANCEL_TTL_S)
            )

            def cancelled(result: SiteResult, never_sent=never_sent, stop=stop) -> bool:
                if result.state in (SiteState.UNSENT, SiteState.QUEUED):
                    result.state = SiteState.CANCELLED
                    result.detail = f"cancelled by {by} before the site took it"
                if not (never_sent and result.state is SiteState.CANCELLED):
                    result.cancel = stop.command
                return True

            changed = await self._update(record.id, site, cancelled)
            if changed is not None and changed.cancel == stop.command:
                await self._put_outgoing(stop)
                await self._publish(stop)

    async def _publish(self, outgoing: Outgoing) -> bool:
        """Publish one outgoing command; False when NATS did not take it (the sweep tries
        again)."""
        js = self.connection.js
        if js is None or not self.connection.connected:
            return False
        try:
            ack = await js.publish(
                outgoing.subject,
                outgoing.body,
                timeout=self.settings.publish_timeout,
                headers=outgoing.headers,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "federation.command_not_sent",
                alert=outgoing.alert,
                site=outgoing.site,
                kind=outgoing.kind,
                error=str(exc) or repr(exc),
            )
            return False
        self.sent += 1
        outgoing.seq = ack.seq
        await self._put_outgoing(outgoing)
        if outgoing.kind == "alert.issue":
            sent_at, cut = datetime.now(UTC), self.reachable(outgoing.site) is False

            def queued(result: SiteResult) -> bool:
                if result.state is not SiteState.UNSENT:
                    return False
                result.state, result.sent_at = SiteState.QUEUED, sent_at
                if cut:
                    result.detail = (
                        f"site {outgoing.site} is cut off: the alert waits for it until "
                        f"{outgoing.deadline.isoformat()}, then expires"
                    )
                return True

            await self._update(outgoing.alert, outgoing.site, queued)
        log.info(
            "federation.command_sent",
            alert=outgoing.alert,
            site=outgoing.site,
            kind=outgoing.kind,
            command=outgoing.command,
            seq=ack.seq,
        )
        return True

    async def _withdraw(self, outgoing: Outgoing) -> None:
        """Take an issue command back: out of the outbox, and out of the region's stream so
        a site that comes back never sees it."""
        await self.journal.delete_record(OUTBOX, _outbox_key(outgoing))
        js = self.connection.js
        if outgoing.seq is None or js is None or not self.connection.connected:
            return
        try:
            await js.delete_msg(command_stream(outgoing.site), outgoing.seq)
        except Exception as exc:  # gone already (mirrored and the site answered), NATS away
            log.info(
                "federation.command_not_withdrawn",
                alert=outgoing.alert,
                site=outgoing.site,
                error=str(exc) or repr(exc),
            )

    # -- the sweep: unsent commands again, unanswered ones expired --------------------------
    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the journal failing: the next round tries again
                log.warning("federation.sweep_failed", error=repr(exc))
            await asyncio.sleep(SWEEP_S)

    async def sweep(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        async for record in self.journal.all_records(OUTBOX):
            outgoing = _outgoing.decode(record.body)
            if outgoing.deadline <= now:
                await self._expire(outgoing)
            elif outgoing.seq is None:
                await self._publish(outgoing)

    async def _expire(self, outgoing: Outgoing) -> None:
        await self._withdraw(outgoing)
        if outgoing.kind != "alert.issue":
            log.warning("federation.cancel_expired", alert=outgoing.alert, site=outgoing.site)
            return
        now = datetime.now(UTC)

        def expired(result: SiteResult) -> bool:
            if result.state not in (SiteState.UNSENT, SiteState.QUEUED):
                return False
            result.state, result.answered_at = SiteState.EXPIRED, now
            result.detail = (
                f"site {outgoing.site} did not take the alert by its deadline "
                f"({outgoing.deadline.isoformat()}): not sounded there"
            )
            return True

        if await self._update(outgoing.alert, outgoing.site, expired) is not None:
            log.warning("federation.command_expired", alert=outgoing.alert, site=outgoing.site)

    # -- what the sites say -----------------------------------------------------------------
    async def on_event(self, event: Event) -> DeliveryResult:
        """The durable subscription's handler: a followed site's answer or device outcome
        updates that site's result for the alert."""
        now = datetime.now(UTC)
        site = site_of(event)
        if site is None or site not in self.settings.follow or site == self.site:
            return DeliveryResult(status=DeliveryStatus.DELIVERED, at=now, detail="not a site's")
        try:
            await self._take(site, event)
        except msgspec.ValidationError as exc:  # a site's malformed event: noted, skipped
            log.warning("federation.result_invalid", site=site, type=event.type, error=str(exc))
        except Exception as exc:  # the journal failing: later
            raise NotReady(f"journal: {exc!r}") from exc
        return DeliveryResult(status=DeliveryStatus.DELIVERED, at=now)

    async def _take(self, site: str, event: Event) -> None:
        if event.type == "site.report":
            await keep_report(self.journal, site, event)
            return
        if event.type.startswith("incident."):
            await keep_incident(self.journal, site, event)
            return
        if event.type.startswith("command."):
            outcome = msgspec.convert(event.data, _Outcome)
            if outcome.alert is None:
                return
            await self.journal.delete_record(OUTBOX, f"{outcome.alert}/{site}/{outcome.command}")
            answer = event.type.removeprefix("command.")

            def answered(result: SiteResult) -> bool:
                if outcome.kind == "alert.cancel":
                    result.detail = f"stopped at the site: {outcome.detail}".rstrip(": ")
                elif answer == "accepted":
                    if result.state in (SiteState.UNSENT, SiteState.QUEUED, SiteState.CANCELLED):
                        result.state = (
                            SiteState.COMPLETED if outcome.devices == 0 else SiteState.ACCEPTED
                        )
                    result.detail = outcome.detail
                elif answer == "expired":
                    result.state, result.detail = SiteState.EXPIRED, outcome.detail
                else:
                    result.state, result.detail = SiteState.REFUSED, outcome.detail
                result.answered_at = result.answered_at or event.time
                return True

            await self._update(outcome.alert, site, answered)
            return
        if event.type == "alert.completed":
            alert = (event.data or {}).get("id") if isinstance(event.data, dict) else None
            if not alert:
                return

            def completed(result: SiteResult) -> bool:
                if result.state is not SiteState.ACCEPTED:
                    return False
                result.state = SiteState.COMPLETED
                return True

            await self._update(alert, site, completed)
            return
        device = msgspec.convert(event.data, _DeviceEvent)
        entry = DeviceResult(
            device=device.device,
            name=device.device,
            municipality=event.municipality,
            outcome=device.outcome,
            attempts=device.attempts,
            detail=device.detail,
            at=event.time,
        )

        def reported(result: SiteResult) -> bool:
            result.devices = [d for d in result.devices if d.device != device.device] + [entry]
            result.devices.sort(key=lambda d: d.device)
            if result.state in (SiteState.UNSENT, SiteState.QUEUED):
                result.state = SiteState.ACCEPTED  # the answer may have been lost; this says it
            return True

        await self._update(device.alert, site, reported)

    # -- storage ----------------------------------------------------------------------------
    async def result(self, alert: str, site: str) -> SiteResult | None:
        stored = await self.journal.get_record(SITES, f"{alert}/{site}")
        return None if stored is None else _site_result.decode(stored.body)

    async def results(self, alert_id: str) -> list[SiteResult]:
        found = await self.journal.records(SITES, prefix=f"{alert_id}/", limit=1000)
        return [_site_result.decode(r.body) for r in found]

    async def _update(
        self, alert: str, site: str, change: Callable[[SiteResult], bool]
    ) -> SiteResult | None:
        """Change one site's result for an alert atomically against every other regional
        process on this journal (a compare-and-swap, ``change`` run again on a fresh copy
        when another got there first). ``change`` edits the result and says whether it did;
        the result written, or None when there is none or nothing changed."""

        def apply(body: bytes) -> bytes | None:
            result = _site_result.decode(body)
            return msgspec.json.encode(result) if change(result) else None

        written = await self.journal.update_record(SITES, f"{alert}/{site}", apply)
        return None if written is None else _site_result.decode(written)

    async def _put_result(self, result: SiteResult) -> None:
        await self.journal.put_record(
            SITES, f"{result.alert}/{result.site}", msgspec.json.encode(result)
        )

    async def _put_outgoing(self, outgoing: Outgoing) -> None:
        await self.journal.put_record(OUTBOX, _outbox_key(outgoing), msgspec.json.encode(outgoing))

    async def _outgoing_of(self, alert: str, site: str) -> list[Outgoing]:
        found = await self.journal.records(OUTBOX, prefix=f"{alert}/{site}/", limit=1000)
        return [_outgoing.decode(r.body) for r in found]

    # -- calls: a remote camera's snapshot, PTZ, presets ------------------------------------
    async def call(
        self,
        site: str,
        kind: CallKind,
        camera: str,
        *,
        by: str,
        municipalities: list[str] | None,
        ptz: dict[str, Any] | None = None,
        max_age: float | None = None,
    ) -> CallAnswer:
        """Ask ``site`` and wait ``[federation] call_timeout`` for its answer. Raises
        :class:`SiteUnavailable` (503: cut off or the region's NATS down; 504: no answer in
        time)."""
        if site not in self.settings.follow:
            raise SiteUnavailable(404, f"no followed site {site!r}")
        nc = self.connection.nc
        if nc is None or not nc.is_connected or self.key is None:
            raise SiteUnavailable(503, "the regional hub is not connected to NATS")
        timeout = self.settings.call_timeout
        now = datetime.now(UTC)
        inbox = nc.new_inbox()
        call = Call(
            id=uuid7(),
            kind=kind,
            site=site,
            sender=self.site,
            issued_at=now,
            deadline=now + timedelta(seconds=timeout),
            by=by,
            reply=inbox,
            camera=camera,
            municipalities=municipalities,
            ptz=ptz,
            max_age=max_age,
        )
        body = msgspec.json.encode(call)
        subscription = await nc.subscribe(inbox, max_msgs=1)
        try:
            await nc.publish(
                call_subject(site, kind),
                body,
                reply=inbox,
                headers=sign(self.key, body, call.deadline),
            )
            try:
                message = await subscription.next_msg(timeout=timeout)
            except Exception:  # nats-py's TimeoutError
                cut = self.reachable(site) is False
                raise SiteUnavailable(
                    503 if cut else 504,
                    f"site {site} is cut off (no answer across the link)"
                    if cut
                    else f"site {site} did not answer within {timeout:g} s",
                ) from None
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        headers = message.headers or {}
        if headers.get("Status") == "503":  # NATS: no one subscribes there
            raise SiteUnavailable(
                503, f"site {site} is cut off, or its hub is not taking calls (no responder)"
            )
        status = int(headers.get("Nabat-Status", "502"))
        return CallAnswer(
            status=status,
            content_type=headers.get("Content-Type", "application/json"),
            body=message.data,
            headers={k: v for k, v in headers.items() if k.startswith("Nabat-")},
        )


def _outbox_key(outgoing: Outgoing) -> str:
    return f"{outgoing.alert}/{outgoing.site}/{outgoing.command}"
