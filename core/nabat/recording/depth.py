"""Archive depth per district and camera: how far back each recorded camera's footage goes,
against ``[recording] depth_days``, with the days of the window that lack footage, and whether
its hash chain holds (a segment removed or altered by anyone but retention shows).

The cameras counted are those a continuous policy selects: the ones whose archive is meant to
be deep. A district lags when one of them is short of the depth, has a day without footage
in the window, or has a broken chain — the same flag, worded, as the camera report's.

Cost: each camera's segments are read once (a minute's segment is a record: 30 days are
43,200 per camera), measured at ~0.4 s per camera-month on SQLite. That is fine for a report
asked for now and then at a district of tens of cameras; hundreds of cameras, or a
region-wide report, want per-day summaries (next).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import msgspec

from ..i18n import Messages
from ..regions import Region
from .index import SegmentIndex

__all__ = ["CameraDepth", "DepthReport", "DistrictDepth", "depth_report"]

COVERED = 0.9
"""A day counts as recorded when footage covers this share of it (of the window's part)."""


class CameraDepth(msgspec.Struct, kw_only=True):
    camera: str
    municipality: str
    policy: str
    oldest: datetime | None = None
    newest: datetime | None = None
    depth_days: float = 0.0
    """From the oldest footage to now."""
    recorded_pct: float = 0.0
    """Share of the window (the target depth) covered by footage."""
    missing_days: list[date] = []
    """Days of the window with less than 90 % of footage."""
    segments: int = 0
    bytes: int = 0
    chain_ok: bool = True
    problems: list[str] = []
    meets: bool = False


class DistrictDepth(msgspec.Struct, kw_only=True):
    municipality: str
    name: str
    cameras: int = 0
    meeting: int = 0
    min_depth_days: float | None = None
    bytes: int = 0
    lagging: bool = False
    why: list[str] = []


class DepthReport(msgspec.Struct, kw_only=True):
    region: str
    generated_at: datetime
    target_days: float
    districts: list[DistrictDepth]
    cameras: list[CameraDepth]


async def _camera(
    index: SegmentIndex,
    camera: str,
    municipality: str,
    policy: str,
    now: datetime,
    target: float,
    slack: float,
) -> CameraDepth:
    window_start = now - timedelta(days=target)
    window_end = now - timedelta(seconds=slack)  # the segment being written is not indexed yet
    row = CameraDepth(camera=camera, municipality=municipality, policy=policy)
    covered: dict[date, float] = {}
    seconds = 0.0
    segments = [segment async for segment in index.all(camera)]
    for segment in segments:
        row.segments += 1
        row.bytes += segment.size
        row.oldest = segment.start if row.oldest is None else min(row.oldest, segment.start)
        row.newest = segment.end if row.newest is None else max(row.newest, segment.end)
        start, end = max(segment.start, window_start), min(segment.end, window_end)
        at = start
        while at < end:  # split over days
            day_end = datetime.combine(at.date() + timedelta(days=1), datetime.min.time(), UTC)
            part = min(end, day_end)
            covered[at.date()] = covered.get(at.date(), 0.0) + (part - at).total_seconds()
            seconds += (part - at).total_seconds()
            at = part
    if row.oldest is not None:
        row.depth_days = round((now - row.oldest).total_seconds() / 86400, 6)
    span = max(1.0, (window_end - window_start).total_seconds())
    row.recorded_pct = round(min(100.0, 100 * seconds / span), 1)
    day = window_start.date()
    while day <= window_end.date():
        day_start = max(window_start, datetime.combine(day, datetime.min.time(), UTC))
        day_end = min(
            window_end, datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
        )
        length = (day_end - day_start).total_seconds()
        if length > 0 and covered.get(day, 0.0) < COVERED * length:
            row.missing_days.append(day)
        day += timedelta(days=1)
    row.problems = await index.verify_chain(camera, segments)
    row.chain_ok = not row.problems
    row.meets = row.depth_days >= target and not row.missing_days and row.chain_ok
    return row


async def depth_report(
    index: SegmentIndex,
    cameras: Iterable[tuple[str, str, str]],
    region: Region,
    *,
    target_days: float,
    language: str,
    now: datetime | None = None,
    municipalities: Iterable[str] | None = None,
    slack: float = 120.0,
) -> DepthReport:
    """``cameras``: (camera id, municipality, policy name) of every continuously recorded
    camera. ``slack``: seconds before now not yet expected in the index (the segment being
    written: twice ``segment_seconds``)."""
    now = now or datetime.now(UTC)
    say = Messages(language)
    wanted = set(municipalities) if municipalities is not None else None
    rows = [
        await _camera(index, camera, municipality, policy, now, target_days, slack)
        for camera, municipality, policy in sorted(cameras)
        if wanted is None or municipality in wanted
    ]
    districts: dict[str, DistrictDepth] = {}
    for row in rows:
        m = region.municipalities.get(row.municipality)
        name = (m.name_ru if language == "ru" else m.name_en) if m else row.municipality
        district = districts.setdefault(
            row.municipality, DistrictDepth(municipality=row.municipality, name=name)
        )
        district.cameras += 1
        district.meeting += row.meets
        district.bytes += row.bytes
        district.min_depth_days = (
            row.depth_days
            if district.min_depth_days is None
            else min(district.min_depth_days, row.depth_days)
        )
    for district in districts.values():
        short = [r for r in rows if r.municipality == district.municipality]
        shallow = sum(r.depth_days < target_days for r in short)
        holes = sum(bool(r.missing_days) for r in short)
        broken = sum(not r.chain_ok for r in short)
        if shallow:
            district.why.append(
                say("report.recording_shallow", n=shallow, of=district.cameras, days=target_days)
            )
        if holes:
            district.why.append(say("report.recording_missing_days", n=holes))
        if broken:
            district.why.append(say("report.recording_broken_chain", n=broken))
        district.lagging = bool(district.why)
    return DepthReport(
        region=region.id,
        generated_at=now,
        target_days=target_days,
        districts=sorted(districts.values(), key=lambda d: d.name),
        cameras=rows,
    )
