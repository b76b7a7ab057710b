"""The district camera report: per municipality, how many cameras work now and how available
they were over a period, against the region's targets.

* **Now**: each camera's last reported health (:mod:`nabat.cameras.states`): ``ok``,
  ``degraded`` (black or frozen picture), ``offline`` (unreachable, no signal, rejected
  credentials, unsupported codec) or ``unknown`` (never probed: just imported, or its driver
  cannot start — see the camera's instance state).
* **Availability** over ``[since, until)`` (``until`` no later than now): the share of the
  time the cameras were ``ok``,
  from the journal of ``camera.health.*`` changes. A camera's state at ``since`` is the
  ``previous`` state of its first change after ``since`` (or, without changes, its current
  state if that began earlier). Time while a camera's state was unknown is left out, so a
  camera imported yesterday does not count as down for last week.
* **Lagging**: fewer ``ok`` cameras than the municipality's target (``[cameras] targets``), or
  availability under ``[cameras] availability_target``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from ..i18n import Messages
from ..interfaces.camera import HealthState
from ..interfaces.payloads import CameraHealthChange
from ..regions import Region
from ..store import EventQuery, Journal
from ..store.base import MAX_PAGE
from .states import CameraState, from_the_camera

__all__ = [
    "CSV_COLUMNS",
    "AvailabilitySeries",
    "CameraReport",
    "DistrictRow",
    "availability_series",
    "build_report",
    "to_csv",
]

MAX_BUCKETS = 400
"""Most points of a series (a year of days)."""

CSV_COLUMNS = (
    "municipality",
    "name",
    "total",
    "ok",
    "degraded",
    "offline",
    "unknown",
    "availability_pct",
    "target",
    "lagging",
    "why",
    "site",
    "as_of",
)


class DistrictRow(msgspec.Struct, kw_only=True):
    municipality: str
    """The municipality's slug (``total`` for the region's row)."""
    name: str
    total: int = 0
    ok: int = 0
    degraded: int = 0
    offline: int = 0
    unknown: int = 0
    availability_pct: float | None = None
    """Share of the period the cameras were ``ok``, where their state was known."""
    target: int | None = None
    lagging: bool = False
    why: list[str] = []
    """Why the district is lagging, in words."""
    site: str | None = None
    """At the region: the site whose hub holds the district (None: this hub's own)."""
    as_of: datetime | None = None
    """A site's row: when its hub computed it."""
    stale: bool = False
    """A site's row from a report too old, or from a site cut off now."""


class CameraReport(msgspec.Struct, kw_only=True):
    region: str
    since: datetime
    until: datetime
    generated_at: datetime
    availability_target: float
    districts: list[DistrictRow]
    total: DistrictRow


def bucket(state: HealthState | None) -> str:
    if state is None:
        return "unknown"
    if state is HealthState.OK:
        return "ok"
    return "degraded" if state.degraded else "offline"


@dataclass
class _Time:
    ok: float = 0.0
    known: float = 0.0


@dataclass
class _Timeline:
    changes: list[tuple[datetime, HealthState | None, HealthState]] = field(default_factory=list)


async def _changes(journal: Journal, since: datetime) -> dict[str, _Timeline]:
    """Every camera's health changes from ``since`` on, in journal order."""
    out: dict[str, _Timeline] = {}
    after: int | None = None
    while True:
        page = await journal.query(
            EventQuery(since=since, types=("camera.health.*",), after=after, limit=MAX_PAGE)
        )
        for stored in page.events:
            change = stored.event.data
            if isinstance(change, dict):  # read without the payload type registered
                try:
                    change = msgspec.convert(change, CameraHealthChange)
                except msgspec.ValidationError:
                    continue
            if isinstance(change, CameraHealthChange) and from_the_camera(stored.event, change):
                timeline = out.setdefault(change.camera, _Timeline())
                timeline.changes.append((stored.event.time, change.previous, change.state))
        if page.next_cursor is None or not page.events:
            return out
        after = page.events[-1].seq


def _availability(
    timeline: _Timeline | None,
    current: CameraState | None,
    since: datetime,
    until: datetime,
) -> _Time:
    if timeline is not None and timeline.changes:
        changes = sorted(timeline.changes, key=lambda c: c[0])
        state: HealthState | None = changes[0][1]
    else:
        changes = []
        state = current.state if current is not None and current.since <= since else None
    spent = _Time()

    def add(state: HealthState | None, seconds: float) -> None:
        if state is None or seconds <= 0:
            return
        spent.known += seconds
        if state is HealthState.OK:
            spent.ok += seconds

    at = since
    for when, _previous, new in changes:
        if when >= until:
            break
        if when > at:
            add(state, (when - at).total_seconds())
            at = when
        state = new
    add(state, (until - at).total_seconds())
    return spent


async def build_report(
    journal: Journal,
    cameras: Mapping[str, str],
    states: Mapping[str, CameraState],
    region: Region,
    *,
    since: datetime,
    until: datetime,
    generated_at: datetime,
    targets: Mapping[str, int],
    availability_target: float,
    language: str = "ru",
    municipalities: Iterable[str] | None = None,
) -> CameraReport:
    """The report for ``cameras`` (id → municipality slug). ``municipalities`` limits the rows
    (a district's token sees its own); by default every municipality with a camera or a
    target is listed."""
    if since >= until:
        raise ValueError("since must be before until")
    # Nothing is known of the future: a period that has not ended is reported up to now.
    until = min(until, generated_at)
    if since >= until:
        raise ValueError("the period has not begun yet")
    wanted = set(municipalities) if municipalities is not None else None
    say = Messages(language)
    timelines = await _changes(journal, since)
    rows: dict[str, DistrictRow] = {}
    times: dict[str, _Time] = {}

    def row(slug: str) -> DistrictRow:
        if slug not in rows:
            muni = region.municipalities.get(slug)
            rows[slug] = DistrictRow(
                municipality=slug,
                name=muni.name(language) if muni else slug,
                target=targets.get(slug),
            )
            times[slug] = _Time()
        return rows[slug]

    for slug in targets:
        if wanted is None or slug in wanted:
            row(slug)
    for camera_id, slug in cameras.items():
        if wanted is not None and slug not in wanted:
            continue
        r = row(slug)
        r.total += 1
        current = states.get(camera_id)
        kind = bucket(current.state if current else None)
        setattr(r, kind, getattr(r, kind) + 1)
        spent = _availability(timelines.get(camera_id), current, since, until)
        times[slug].ok += spent.ok
        times[slug].known += spent.known

    total = DistrictRow(municipality="total", name=say("report.total"), target=None)
    all_time = _Time()
    for slug, r in rows.items():
        spent = times[slug]
        if spent.known > 0:
            r.availability_pct = round(100.0 * spent.ok / spent.known, 2)
        if r.target is not None and r.ok < r.target:
            r.why.append(say("report.why_target", ok=r.ok, target=r.target))
        if r.availability_pct is not None and r.availability_pct < availability_target:
            r.why.append(
                say(
                    "report.why_availability",
                    pct=f"{r.availability_pct:g}",
                    target=f"{availability_target:g}",
                )
            )
        r.lagging = bool(r.why)
        for name in ("total", "ok", "degraded", "offline", "unknown"):
            setattr(total, name, getattr(total, name) + getattr(r, name))
        all_time.ok += spent.ok
        all_time.known += spent.known
    if all_time.known > 0:
        total.availability_pct = round(100.0 * all_time.ok / all_time.known, 2)
    lagging = sum(r.lagging for r in rows.values())
    total.lagging = bool(lagging)
    if lagging:
        total.why = [say("report.lagging_total", n=lagging, of=len(rows))]
    return CameraReport(
        region=region.id,
        since=since,
        until=until,
        generated_at=generated_at,
        availability_target=availability_target,
        districts=sorted(rows.values(), key=lambda r: r.name),
        total=total,
    )


class SeriesRow(msgspec.Struct, kw_only=True):
    municipality: str
    """The slug (``total`` for the region's line)."""
    name: str
    availability_pct: list[float | None]
    """One value per bucket; None where no camera's state was known."""


class AvailabilitySeries(msgspec.Struct, kw_only=True):
    region: str
    buckets: list[datetime]
    """Start of each bucket; each lasts ``step_s`` (the last one up to ``until``)."""
    step_s: float
    until: datetime
    availability_target: float
    districts: list[SeriesRow]
    total: SeriesRow


async def availability_series(
    journal: Journal,
    cameras: Mapping[str, str],
    states: Mapping[str, CameraState],
    region: Region,
    *,
    since: datetime,
    until: datetime,
    step: timedelta,
    generated_at: datetime,
    availability_target: float,
    language: str = "ru",
    municipalities: Iterable[str] | None = None,
) -> AvailabilitySeries:
    """Availability per municipality over time: the report's figure for each ``step`` of
    ``[since, until)``, from one read of the journal."""
    until = min(until, generated_at)
    if since >= until:
        raise ValueError("since must be before until and before now")
    if step.total_seconds() <= 0:
        raise ValueError("step must be positive")
    starts: list[datetime] = []
    at = since
    while at < until and len(starts) < MAX_BUCKETS:
        starts.append(at)
        at += step
    wanted = set(municipalities) if municipalities is not None else None
    timelines = await _changes(journal, since)
    per_slug: dict[str, list[_Time]] = {}
    for camera_id, slug in cameras.items():
        if wanted is not None and slug not in wanted:
            continue
        times = per_slug.setdefault(slug, [_Time() for _ in starts])
        for i, start in enumerate(starts):
            spent = _availability(
                timelines.get(camera_id), states.get(camera_id), start, min(start + step, until)
            )
            times[i].ok += spent.ok
            times[i].known += spent.known

    def pct(t: _Time) -> float | None:
        return round(100.0 * t.ok / t.known, 2) if t.known > 0 else None

    rows = []
    for slug, times in per_slug.items():
        muni = region.municipalities.get(slug)
        rows.append(
            SeriesRow(
                municipality=slug,
                name=muni.name(language) if muni else slug,
                availability_pct=[pct(t) for t in times],
            )
        )
    total = [_Time() for _ in starts]
    for times in per_slug.values():
        for i, t in enumerate(times):
            total[i].ok += t.ok
            total[i].known += t.known
    return AvailabilitySeries(
        region=region.id,
        buckets=starts,
        step_s=step.total_seconds(),
        until=until,
        availability_target=availability_target,
        districts=sorted(rows, key=lambda r: r.name),
        total=SeriesRow(
            municipality="total",
            name=Messages(language)("report.total"),
            availability_pct=[pct(t) for t in total],
        ),
    )


def to_csv(report: CameraReport) -> str:
    """The report as CSV (comma-separated, UTF-8): one row per district, then the total."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in [*report.districts, report.total]:
        writer.writerow(
            [
                r.municipality,
                r.name,
                r.total,
                r.ok,
                r.degraded,
                r.offline,
                r.unknown,
                "" if r.availability_pct is None else f"{r.availability_pct:.2f}",
                "" if r.target is None else r.target,
                "yes" if r.lagging else "no",
                "; ".join(r.why),
                r.site or "",
                r.as_of.isoformat() if r.as_of else "",
            ]
        )
    return buffer.getvalue()
