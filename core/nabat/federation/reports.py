"""Each site's district reports, up to the region: the region's reports cover every district.

A site's hub publishes, every ``[federation] report_interval`` seconds, a
``site.report`` event: its camera report over the last 7 days (per municipality: cameras
total, ok, degraded, offline, unknown, availability, target, lagging and why) and its
sirens' readiness rows. About a kilobyte per municipality, whatever the number of cameras:
what crosses the WAN does not grow with them, and the region's journal keeps a few MB a day
for 44 districts. The event goes up like any other (the up-path adds ``site.>`` to ``up``).

The region keeps the latest report of each followed site (collection
``federation.reports``, through the dispatcher's durable subscription) and shows its rows
next to its own, each with the site and the time its figures are from. A report older than
three intervals, or from a site that is cut off now, is shown as such — *stale*, with
when it was true — never as current.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from ..alerts.readiness import ReadinessRow, latest_results, sirens_report
from ..cameras.report import CameraReport, DistrictRow, build_report
from ..duty.staffing import StaffingReport, StaffingRow, staffing_report
from ..events import Event, Severity
from ..i18n import Messages
from ..logs import get_logger
from ..regions import load_region

if TYPE_CHECKING:
    from ..store import Journal

__all__ = [
    "INCIDENTS",
    "REPORTS",
    "SiteReport",
    "SiteReporter",
    "keep_incident",
    "merge_camera_rows",
    "merge_siren_rows",
    "remote_id",
    "remote_incidents",
    "site_reports",
]

log = get_logger("nabat.federation")

REPORTS = "federation.reports"
REPORT_TYPE = "site.report"
PERIOD = timedelta(days=7)
STAFFING_PERIOD = timedelta(days=1)
STALE_AFTER = 3
"""A site's report is stale after this many report intervals without a newer one."""


class SiteReport(msgspec.Struct, kw_only=True):
    """The data of a ``site.report`` event."""

    site: str
    generated_at: datetime
    interval: float
    cameras: list[DistrictRow]
    sirens: list[ReadinessRow]
    staffing: list[StaffingRow] = []
    """The site's districts' duty posts over the last day, from its own roster."""


_report = msgspec.json.Decoder(SiteReport)


class SiteReporter:
    """A site's side: the periodic report. ``hub`` is the site's hub."""

    def __init__(self, hub: Any, *, site: str, interval: float) -> None:
        self.hub = hub
        self.site = site
        self.interval = interval
        self.source = f"/nabat/hubs/{hub.name}/federation/reports"
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("federation-site-report")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.publish_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the journal failing: the next round tries again
                log.warning("federation.site_report_failed", site=self.site, error=repr(exc))
            await asyncio.sleep(self.interval)

    async def build(self) -> SiteReport:
        hub = self.hub
        now = datetime.now(UTC)
        region = load_region(hub.config.hub.region)
        cfg = hub.config.cameras
        cameras = await build_report(
            hub.journal,
            {rt.id: rt.entry.municipality or "" for rt in hub.units.cameras()},
            hub.camera_states.all(),
            region,
            since=now - PERIOD,
            until=now,
            generated_at=now,
            targets=cfg.targets,
            availability_target=cfg.availability_target,
            language=hub.config.hub.language,
        )
        sirens = sirens_report(
            {rt.id: rt.entry.municipality or "" for rt in hub.units.devices()},
            await latest_results(hub.journal),
            region,
            language=hub.config.hub.language,
        )
        # The districts this site keeps: those of its cameras, devices and roster.
        shifts = await hub.roster.shifts(since=now - STAFFING_PERIOD, until=now)
        mine = sorted(
            (
                {rt.entry.municipality for rt in [*hub.units.cameras(), *hub.units.devices()]}
                | {s.municipality for s in shifts}
            )
            - {None}
        )
        staffing = staffing_report(
            hub.roster.posts(mine),
            shifts,
            region,
            since=now - STAFFING_PERIOD,
            until=now,
            now=now,
            language=hub.config.hub.language,
        )
        return SiteReport(
            site=self.site,
            generated_at=now,
            interval=self.interval,
            cameras=cameras.districts,
            sirens=sirens,
            staffing=staffing.districts,
        )

    async def publish_once(self) -> None:
        report = await self.build()
        await self.hub.publish(
            Event(
                type=REPORT_TYPE,
                source=self.source,
                subject=self.site,
                severity=Severity.INFO,
                data=report,
            )
        )
        self.sent += 1


# -- remote incidents ---------------------------------------------------------------------------
INCIDENTS = "federation.incidents"
"""The followed sites' incidents as the region knows them: key ``<site>:<id>``."""


def remote_id(site: str, incident_id: str) -> str:
    return f"{site}:{incident_id}"


async def keep_incident(journal: Journal, site: str, event: Event) -> None:
    """A site's ``incident.*`` event as the region's record of that incident (a late,
    older event is kept out)."""
    from ..interfaces.incident import Incident, IncidentRecord, IncidentStatus

    if not event.subject:
        return
    incident = msgspec.convert(event.data, Incident)
    key = remote_id(site, event.subject)
    stored = await journal.get_record(INCIDENTS, key)
    current = msgspec.json.decode(stored.body, type=IncidentRecord) if stored else None
    if current is not None and current.updated_at >= event.time:
        return
    closed = incident.status is IncidentStatus.CLOSED
    record = IncidentRecord(
        id=key,
        incident=incident,
        municipality=event.municipality,
        severity=str(event.severity) if event.severity else None,
        created_at=current.created_at if current else event.time,
        updated_at=event.time,
        closed_at=(current.closed_at if current and current.closed_at else event.time)
        if closed
        else None,
        version=current.version + 1 if current else 1,
        last_event=event.id,
        site=site,
    )
    await journal.put_record(INCIDENTS, key, msgspec.json.encode(record))


async def remote_incidents(journal: Journal) -> list[Any]:
    from ..interfaces.incident import IncidentRecord

    found = []
    async for record in journal.all_records(INCIDENTS):
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            found.append(msgspec.json.decode(record.body, type=IncidentRecord))
    return found


# -- the region's side ------------------------------------------------------------------------
async def keep(journal: Journal, site: str, event: Event) -> None:
    """Store a followed site's report (the latest wins: an older one arriving late is kept
    out)."""
    report = msgspec.convert(event.data, SiteReport)
    if report.site != site:
        raise msgspec.ValidationError(f"a report of {report.site!r} from site {site!r}")
    stored = await journal.get_record(REPORTS, site)
    if stored is not None and _report.decode(stored.body).generated_at >= report.generated_at:
        return
    await journal.put_record(REPORTS, site, msgspec.json.encode(report))


async def site_reports(journal: Journal) -> dict[str, SiteReport]:
    found: dict[str, SiteReport] = {}
    async for record in journal.all_records(REPORTS):
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            found[record.key] = _report.decode(record.body)
    return found


def _stale(report: SiteReport, reachable: bool | None, now: datetime) -> bool:
    old = now - report.generated_at > timedelta(seconds=report.interval * STALE_AFTER)
    return old or reachable is False


def merge_camera_rows(
    report: CameraReport,
    sites: dict[str, SiteReport],
    *,
    reachable: dict[str, bool],
    language: str,
    municipalities: list[str] | None,
    now: datetime,
) -> CameraReport:
    """``report`` (this hub's own) with each followed site's rows for the municipalities it
    does not hold itself, marked with their site and time; the region's total recounted."""
    say = Messages(language)
    own = {r.municipality for r in report.districts if r.total or r.target is not None}
    rows = [r for r in report.districts]
    for site, remote in sorted(sites.items()):
        stale = _stale(remote, reachable.get(site), now)
        for row in remote.cameras:
            if row.municipality in own:
                continue
            if municipalities is not None and row.municipality not in municipalities:
                continue
            row = msgspec.structs.replace(
                row, site=site, as_of=remote.generated_at, stale=stale, why=list(row.why)
            )
            if stale:
                row.why.append(
                    say("report.site_stale", site=site, at=remote.generated_at.strftime("%H:%M"))
                )
            rows = [r for r in rows if r.municipality != row.municipality] + [row]
    total = msgspec.structs.replace(report.total)
    for name in ("total", "ok", "degraded", "offline", "unknown"):
        setattr(total, name, sum(getattr(r, name) for r in rows))
    weights = [(r.availability_pct, r.total) for r in rows if r.availability_pct is not None]
    if weights and sum(w for _, w in weights):
        total.availability_pct = round(
            sum(p * w for p, w in weights) / sum(w for _, w in weights), 2
        )
    lagging = sum(r.lagging for r in rows)
    total.lagging = bool(lagging)
    total.why = [say("report.lagging_total", n=lagging, of=len(rows))] if lagging else []
    return msgspec.structs.replace(
        report, districts=sorted(rows, key=lambda r: r.name), total=total
    )


def merge_siren_rows(
    rows: list[ReadinessRow],
    sites: dict[str, SiteReport],
    *,
    municipalities: list[str] | None,
) -> list[ReadinessRow]:
    """This hub's siren rows with each followed site's for the municipalities it does not
    hold (each row's ``technical_at`` says how old its figure is)."""
    own = {r.municipality for r in rows}
    merged = list(rows)
    for site, remote in sorted(sites.items()):
        for row in remote.sirens:
            if row.municipality in own:
                continue
            if municipalities is not None and row.municipality not in municipalities:
                continue
            merged.append(msgspec.structs.replace(row, site=site, as_of=remote.generated_at))
    return sorted(merged, key=lambda r: r.name)


def merge_staffing_rows(
    report: StaffingReport,
    sites: dict[str, SiteReport],
    *,
    held: dict[str, list[str]],
    kept_here: set[str],
    reachable: dict[str, bool],
    language: str,
    municipalities: list[str] | None,
    now: datetime,
) -> StaffingReport:
    """The region's staffing report with each followed site's rows for the municipalities
    the site holds (``held``: ``[federation] municipalities``), or that the region's own
    roster has no shift in (``kept_here`` has those it has): there the site's roster is the
    one that counts."""
    say = Messages(language)
    site_of = {m: site for site, slugs in held.items() for m in slugs}
    rows = {r.municipality: r for r in report.districts}
    for site, remote in sorted(sites.items()):
        stale = _stale(remote, reachable.get(site), now)
        for row in remote.staffing:
            if municipalities is not None and row.municipality not in municipalities:
                continue
            if site_of.get(row.municipality) != site and row.municipality in kept_here:
                continue  # the region keeps this district's roster itself
            row = msgspec.structs.replace(
                row, site=site, as_of=remote.generated_at, stale=stale, why=list(row.why)
            )
            if stale:
                row.why.append(
                    say("report.site_stale", site=site, at=remote.generated_at.strftime("%H:%M"))
                )
                row.lagging = True
            rows[row.municipality] = row
    districts = sorted(rows.values(), key=lambda r: r.name)
    return msgspec.structs.replace(
        report, districts=districts, lagging=sum(r.lagging for r in districts)
    )
