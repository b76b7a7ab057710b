"""The duty roster, shift handovers and the staffing report (docs/duty.md).

Reading needs ``events:read`` and shows the caller's municipalities only; the roster is
changed by ``admin`` tokens (the console's admin page); a handover is made and accepted by
the people on duty (``events:write``) of its municipality.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from ...duty.handover import Handover, HandoverError
from ...duty.roster import Post, RosterError, Shift
from ...duty.staffing import StaffingReport, staffing_report
from ...regions import load_region
from ..problems import ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo

__all__ = ["HANDLERS"]

Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Moment = Annotated[datetime, msgspec.Meta(tz=True)]


def _by(token: TokenInfo) -> str:
    return f"{token.id} ({token.name})"


def _reach(token: TokenInfo, municipality: str) -> None:
    if not token.sees(municipality):
        raise ProblemError(404, f"no municipality {municipality!r} here", kind="not-found")


class ShiftPage(msgspec.Struct, kw_only=True):
    items: list[Shift]


class NewShift(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    municipality: Slug
    post: Slug
    login: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    start: Moment
    end: Moment


@get(
    "/api/v1/roster",
    opt={"scope": "events:read"},
    summary="The duty roster",
    description="Shifts overlapping [`since`, `until`) (default: from now to a week ahead), in "
    "start order, the caller's municipalities only.",
    responses=documented(403),
    tags=["duty"],
)
async def list_roster(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    since: Annotated[datetime | None, QueryParameter()] = None,
    until: Annotated[datetime | None, QueryParameter()] = None,
    municipality: Annotated[str | None, QueryParameter(max_length=64)] = None,
) -> ShiftPage:
    now = datetime.now(UTC)
    found = await api.hub.roster.shifts(
        municipalities=[municipality] if municipality else None,
        since=since or now,
        until=until or now + timedelta(days=7),
    )
    return ShiftPage(items=[s for s in found if request.user.sees(s.municipality)])


@get(
    "/api/v1/roster/posts",
    opt={"scope": "events:read"},
    summary="The duty posts of each municipality",
    responses=documented(403),
    tags=["duty"],
)
async def list_posts(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> list[Post]:
    return [p for p in api.hub.roster.posts() if request.user.sees(p.municipality)]


@post(
    "/api/v1/roster",
    opt={"scope": "admin"},
    status_code=201,
    summary="Put a shift on the roster",
    description="`login` (a console account) on `post` of `municipality` from `start` to `end` "
    "(at most 7 days). 409 when the person is on another shift then.",
    responses=documented(403, 409, 422),
    tags=["duty"],
)
async def add_shift(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], data: NewShift
) -> Shift:
    request.scope["nabat.audit"] = {  # type: ignore[typeddict-unknown-key]
        "municipality": data.municipality,
        "post": data.post,
        "login": data.login,
        "start": data.start.isoformat(),
        "end": data.end.isoformat(),
    }
    try:
        return await api.hub.roster.add(
            municipality=data.municipality,
            post=data.post,
            login=data.login,
            start=data.start,
            end=data.end,
            by=_by(request.user),
        )
    except RosterError as exc:
        kind = {404: "not-found", 409: "conflict"}.get(exc.status, "invalid")
        raise ProblemError(exc.status, str(exc), kind=kind) from None


@post(
    "/api/v1/roster/{shift_id:str}/delete",
    opt={"scope": "admin"},
    status_code=200,
    summary="Take a shift off the roster",
    responses=documented(403, 404),
    tags=["duty"],
)
async def remove_shift(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    shift_id: Annotated[str, PathParameter(max_length=64)],
) -> Shift:
    request.scope["nabat.audit"] = {"shift": shift_id}  # type: ignore[typeddict-unknown-key]
    found = await api.hub.roster.remove(shift_id)
    if found is None:
        raise ProblemError(404, f"no shift {shift_id!r}", kind="not-found")
    return found


@get(
    "/api/v1/reports/staffing",
    opt={"scope": "events:read"},
    summary="Staffing per municipality",
    description="Each municipality's posts: who is on duty now, whether each is staffed, and "
    "the hours it went uncovered over [`since`, `until`) (default: the last 7 days). A "
    "municipality with a post unstaffed now or uncovered hours is `lagging`, with `why`.",
    responses=documented(403, 422),
    tags=["duty", "reports"],
)
async def staffing_route(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    since: Annotated[datetime | None, QueryParameter()] = None,
    until: Annotated[datetime | None, QueryParameter()] = None,
    municipality: Annotated[list[str] | None, QueryParameter(max_items=100)] = None,
) -> StaffingReport:
    now = datetime.now(UTC)
    end = until or now
    start = since or end - timedelta(days=7)
    if start.tzinfo is None or end.tzinfo is None:
        raise ProblemError(422, "since and until need a UTC offset", kind="invalid")
    if start >= end:
        raise ProblemError(422, "since must be before until", kind="invalid")
    hub = api.hub
    wanted = None if request.user.regional else list(request.user.municipalities)
    if municipality:
        region = load_region(hub.config.hub.region)
        unknown = [m for m in municipality if m not in region]
        if unknown:
            raise ProblemError(
                422, f"not municipalities of {region.id}: {', '.join(unknown)}", kind="invalid"
            )
        wanted = [m for m in municipality if wanted is None or m in wanted]
    shifts = await hub.roster.shifts(municipalities=wanted, since=start, until=end)
    report = staffing_report(
        hub.roster.posts(wanted),
        shifts,
        load_region(hub.config.hub.region),
        since=start,
        until=end,
        now=now,
        language=hub.config.hub.language,
    )
    if hub.follower is not None:  # the region: each site's districts as its roster says
        from ...federation.reports import merge_staffing_rows, site_reports

        report = merge_staffing_rows(
            report,
            await site_reports(hub.journal),
            held=hub.config.federation.municipalities,
            kept_here={s.municipality for s in shifts},
            reachable=dict(hub.follower.reachable),
            language=hub.config.hub.language,
            municipalities=wanted,
            now=now,
        )
    return report


async def _visible_handover(api: ApiState, token: TokenInfo, handover_id: str) -> Handover:
    """The handover, if the caller may see its municipality (404 otherwise)."""
    found = await api.hub.handovers.get(handover_id)
    if found is None or not token.sees(found.municipality):
        raise ProblemError(404, f"no handover {handover_id!r}", kind="not-found")
    return found


class HandoverPage(msgspec.Struct, kw_only=True):
    items: list[Handover]


class NewHandover(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    municipality: Slug
    post: Slug | None = None
    notes: Annotated[str, msgspec.Meta(max_length=8000)] = ""


@get(
    "/api/v1/handovers",
    opt={"scope": "events:read"},
    summary="Shift handovers, the newest first",
    responses=documented(403),
    tags=["duty"],
)
async def list_handovers(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> HandoverPage:
    token = request.user
    wanted = None if token.regional else list(token.municipalities)
    return HandoverPage(items=await api.hub.handovers.list(wanted))


@get(
    "/api/v1/handovers/{handover_id:str}",
    opt={"scope": "events:read"},
    summary="One shift handover",
    responses=documented(403, 404),
    tags=["duty"],
)
async def get_handover(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    handover_id: Annotated[str, PathParameter(max_length=128)],
) -> Handover:
    return await _visible_handover(api, request.user, handover_id)


@post(
    "/api/v1/handovers",
    opt={"scope": "events:write"},
    status_code=201,
    summary="Hand the shift over",
    description="What the shift passes on in `municipality` now — open incidents with their "
    "clocks, cameras down, sirens not ready, alerts in progress — with the outgoing "
    "operator's `notes`, for the incoming one to accept.",
    responses=documented(403, 404, 422),
    tags=["duty"],
)
async def create_handover(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], data: NewHandover
) -> Handover:
    _reach(request.user, data.municipality)
    if data.municipality not in load_region(api.hub.config.hub.region):
        raise ProblemError(404, f"no municipality {data.municipality!r}", kind="not-found")
    request.scope["nabat.audit"] = {"municipality": data.municipality}  # type: ignore[typeddict-unknown-key]
    try:
        return await api.hub.handovers.create(
            data.municipality, by=_by(request.user), notes=data.notes, post=data.post
        )
    except HandoverError as exc:
        raise ProblemError(exc.status, str(exc), kind="invalid") from None


@post(
    "/api/v1/handovers/{handover_id:str}/accept",
    opt={"scope": "events:write"},
    status_code=200,
    summary="Accept a shift handover (the incoming operator)",
    responses=documented(403, 404, 409),
    tags=["duty"],
)
async def accept_handover(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    handover_id: Annotated[str, PathParameter(max_length=128)],
) -> Handover:
    await _visible_handover(api, request.user, handover_id)
    request.scope["nabat.audit"] = {"handover": handover_id}  # type: ignore[typeddict-unknown-key]
    try:
        return await api.hub.handovers.accept(handover_id, by=_by(request.user))
    except HandoverError as exc:
        raise ProblemError(
            exc.status, str(exc), kind="conflict" if exc.status == 409 else "not-found"
        ) from None


HANDLERS = [
    list_roster,
    list_posts,
    add_shift,
    remove_shift,
    staffing_route,
    list_handovers,
    get_handover,
    create_handover,
    accept_handover,
]
