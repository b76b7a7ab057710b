"""The staffing report: per municipality, which posts nobody is on duty at now, and how many
hours each post went uncovered over a period — the region's check that every ЕДДС and 112
post is staffed. A municipality with a post unstaffed now, or uncovered hours in the period,
is lagging, with the reasons in words (like the camera report)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import msgspec

from ..i18n import Messages
from ..regions import Region
from .roster import Post, Shift

__all__ = ["PostRow", "StaffingReport", "StaffingRow", "staffing_report", "uncovered_seconds"]


class PostRow(msgspec.Struct, kw_only=True):
    post: str
    name: str
    seats: int
    on_duty: list[str] = []
    """Who is on this post now (logins)."""
    staffed_now: bool = False
    uncovered_hours: float = 0.0
    """Hours of the period with fewer people on the post than its seats."""


class StaffingRow(msgspec.Struct, kw_only=True):
    municipality: str
    name: str
    posts: list[PostRow] = []
    unstaffed_now: list[str] = []
    """The posts nobody (or too few) is on now."""
    uncovered_hours: float = 0.0
    lagging: bool = False
    why: list[str] = []
    site: str | None = None
    """At the region: the site whose hub keeps this district's roster (None: this hub's)."""
    as_of: datetime | None = None
    stale: bool = False


class StaffingReport(msgspec.Struct, kw_only=True):
    region: str
    since: datetime
    until: datetime
    generated_at: datetime
    districts: list[StaffingRow]
    lagging: int = 0
    """How many municipalities are lagging."""


def uncovered_seconds(shifts: list[Shift], seats: int, since: datetime, until: datetime) -> float:
    """Seconds of [since, until) with fewer than ``seats`` of ``shifts`` under way."""
    edges: list[tuple[datetime, int]] = []
    for s in shifts:
        start, end = max(s.start, since), min(s.end, until)
        if start < end:
            edges += [(start, 1), (end, -1)]
    edges.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    uncovered, count, at = 0.0, 0, since
    for moment, step in edges:
        if count < seats:
            uncovered += (moment - at).total_seconds()
        count += step
        at = moment
    if count < seats:
        uncovered += (until - at).total_seconds()
    return uncovered


def staffing_report(
    posts: list[Post],
    shifts: list[Shift],
    region: Region,
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    language: str = "ru",
) -> StaffingReport:
    t = Messages(language)
    by_post: dict[tuple[str, str], list[Shift]] = defaultdict(list)
    for shift in shifts:
        by_post[(shift.municipality, shift.post)].append(shift)
    rows: dict[str, StaffingRow] = {}
    for post in posts:
        muni = region.municipalities.get(post.municipality)
        row = rows.setdefault(
            post.municipality,
            StaffingRow(
                municipality=post.municipality,
                name=muni.name(language) if muni else post.municipality,
            ),
        )
        mine = by_post.get((post.municipality, post.id), [])
        now_on = sorted(s.login for s in mine if s.covers(now))
        hours = round(uncovered_seconds(mine, post.seats, since, until) / 3600.0, 2)
        entry = PostRow(
            post=post.id,
            name=post.name,
            seats=post.seats,
            on_duty=now_on,
            staffed_now=len(now_on) >= post.seats,
            uncovered_hours=hours,
        )
        row.posts.append(entry)
        row.uncovered_hours = round(row.uncovered_hours + hours, 2)
        if not entry.staffed_now:
            row.unstaffed_now.append(post.id)
            row.why.append(t("report.staffing.unstaffed_now", post=post.name))
        if hours > 0:
            row.why.append(t("report.staffing.uncovered", post=post.name, hours=f"{hours:g}"))
    for row in rows.values():
        row.lagging = bool(row.why)
    districts = sorted(rows.values(), key=lambda r: r.name)
    return StaffingReport(
        region=region.id,
        since=since,
        until=until,
        generated_at=now,
        districts=districts,
        lagging=sum(r.lagging for r in districts),
    )
