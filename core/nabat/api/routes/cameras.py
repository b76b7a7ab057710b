"""``/api/v1/cameras``: every camera with its honest health, snapshots, PTZ; the district report.

Credentials never leave the hub: a camera's view carries no URL with user info, no password,
no credentials reference.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from ...cameras.failures import camera_failure
from ...cameras.report import (
    AvailabilitySeries,
    CameraReport,
    availability_series,
    bucket,
    build_report,
    to_csv,
)
from ...cameras.states import CameraState
from ...interfaces import Camera
from ...interfaces.camera import HealthState, MediaProfile, ProfileRole, PtzCommand, PtzPreset
from ...interfaces.payloads import UnitKind, UnitState
from ...regions import load_region
from ..problems import FieldError, ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo

if TYPE_CHECKING:
    from ...instances import Instance

__all__ = ["HANDLERS", "CameraId", "report_municipalities", "running_camera", "visible_camera"]

Status = Literal["ok", "degraded", "offline", "unknown"]
_STATES = tuple(state.value for state in HealthState)


class CameraView(msgspec.Struct, kw_only=True):
    id: str
    name: str
    municipality: str | None
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    driver: str
    source: Literal["inventory", "config"]
    tags: list[str] = []
    status: Status
    """``ok``; ``degraded`` (black or frozen picture); ``offline``; ``unknown`` (not probed
    yet — see ``instance_state``)."""
    health: CameraState | None = None
    last_probe_at: datetime | None = None
    """When the camera was last probed (every probe; ``health`` changes only on a change)."""
    instance_state: str
    """The driver instance: ``running``, ``retrying``, ``needs_auth``, ``failed``…"""
    instance_reason: str = ""


class ProfileView(msgspec.Struct, kw_only=True):
    """One of a camera's media profiles (main stream, sub-stream…)."""

    token: str
    name: str = ""
    codec: str | None = None
    """``H264``, ``H265``, ``JPEG``, ``MPEG4``; None when the camera does not say."""
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    roles: list[ProfileRole] = []
    """What the hub takes this profile for: ``probe``, ``snapshot``, ``live``."""


class CameraDetail(CameraView, kw_only=True):
    profiles: list[ProfileView] = []
    """The media profiles of a running camera whose driver knows them; empty otherwise."""


def _profile_view(profile: MediaProfile) -> ProfileView:
    return ProfileView(
        token=profile.token,
        name=profile.name,
        codec=profile.encoding or None,
        width=profile.width,
        height=profile.height,
        fps=profile.fps,
        roles=sorted(profile.roles),
    )


class CameraPage(msgspec.Struct, kw_only=True):
    items: list[CameraView]
    total: int
    """Cameras matching the filters (all pages)."""
    next_after: str | None = None
    """Pass as ``after`` for the next page; absent on the last one."""


def _view(api: ApiState, rt: Instance) -> CameraView:
    hub = api.hub
    record = rt.record
    current = hub.camera_states.get(rt.id)
    unit = hub.supervisor.status(UnitKind.INSTANCE, rt.id)
    return CameraView(
        id=rt.id,
        name=rt.entry.name or rt.id,
        municipality=rt.entry.municipality,
        address=record.address if record else "",
        lat=rt.entry.lat,
        lon=rt.entry.lon,
        driver=rt.entry.kind,
        source="inventory" if record else "config",
        tags=list(record.tags) if record else [],
        status=bucket(current.state if current else None),  # type: ignore[arg-type]
        health=current,
        last_probe_at=hub.camera_states.probed.get(rt.id),
        instance_state=unit.state.value if unit else "unknown",
        instance_reason=unit.reason if unit else "",
    )


def visible_camera(api: ApiState, token: TokenInfo, camera_id: str) -> Instance:
    """The camera's instance if the caller may see it; else 404, as for a camera that does not
    exist (another municipality's cameras are not even confirmed to exist)."""
    rt = api.hub.units.get(camera_id)
    if rt is None or not rt.is_camera or not token.sees(rt.entry.municipality):
        raise ProblemError(404, f"no camera {camera_id!r}", kind="not-found")
    return rt


def running_camera(api: ApiState, rt: Instance) -> Camera:
    """The camera's driver while its instance runs; else 503 with the instance's state."""
    unit = api.hub.supervisor.status(UnitKind.INSTANCE, rt.id)
    driver = rt.driver
    if unit is None or unit.state is not UnitState.RUNNING or not isinstance(driver, Camera):
        state = unit.state.value if unit else "not started"
        why = f": {unit.reason}" if unit and unit.reason else ""
        raise ProblemError(
            503,
            f"camera {rt.id} is {state}{why}",
            headers={"Retry-After": "30"},
            kind="camera-unavailable",
        )
    return driver


def _camera_failed(rt: Instance, exc: BaseException) -> ProblemError:
    failure = camera_failure(rt.id, exc)
    return ProblemError(failure.status, failure.detail, kind=failure.kind)


CameraId = Annotated[str, PathParameter(max_length=128)]


@get(
    "/api/v1/cameras",
    opt={"scope": "cameras:read"},
    summary="Cameras with their health",
    description="Configured and imported cameras in id order, paged with `after`. `status` "
    "filters by summary (`ok`, `degraded`, `offline`, `unknown`), `state` by the exact health "
    "state. A token limited to municipalities sees only their cameras.",
    responses=documented(403),
    tags=["cameras"],
)
async def list_cameras(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    municipality: Annotated[str | None, QueryParameter(max_length=64)] = None,
    status: Annotated[Status | None, QueryParameter()] = None,
    health: Annotated[str | None, QueryParameter(name="state", max_length=32)] = None,
    after: Annotated[str | None, QueryParameter(max_length=128)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=5000)] = 500,
) -> CameraPage:
    if health is not None and health not in _STATES:
        raise ProblemError(
            400,
            f"unknown state {health!r}",
            errors=[FieldError(field="state", reason=f"one of {', '.join(_STATES)}")],
        )
    if municipality is not None:
        _municipalities(api, [municipality])
    token = request.user
    matching: list[CameraView] = []
    for rt in sorted(api.hub.units.cameras(), key=lambda rt: rt.id):
        slug = rt.entry.municipality
        if not token.sees(slug) or (municipality is not None and slug != municipality):
            continue
        view = _view(api, rt)
        if status is not None and view.status != status:
            continue
        if health is not None and (view.health is None or view.health.state != health):
            continue
        matching.append(view)
    start = 0
    if after is not None:
        start = next((i for i, v in enumerate(matching) if v.id > after), len(matching))
    items = matching[start : start + limit]
    more = start + limit < len(matching)
    return CameraPage(items=items, total=len(matching), next_after=items[-1].id if more else None)


@get(
    "/api/v1/cameras/{camera_id:str}",
    opt={"scope": "cameras:read"},
    summary="One camera with its health",
    description="As in the list, plus `profiles`: the camera's media profiles (codec, "
    "resolution, frame rate) and the roles the hub gives them (`probe`, `snapshot`, `live`).",
    responses=documented(403, 404),
    tags=["cameras"],
)
async def get_camera(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], camera_id: CameraId
) -> CameraDetail:
    rt = visible_camera(api, request.user, camera_id)
    view = _view(api, rt)
    profiles: list[ProfileView] = []
    unit = api.hub.supervisor.status(UnitKind.INSTANCE, rt.id)
    if unit is not None and unit.state is UnitState.RUNNING and isinstance(rt.driver, Camera):
        try:
            async with asyncio.timeout(rt.entry.timeout):
                profiles = [_profile_view(p) for p in await rt.driver.profiles()]
        except Exception:  # the camera's view must not fail for its profiles
            profiles = []
    return CameraDetail(**msgspec.structs.asdict(view), profiles=profiles)


@get(
    "/api/v1/cameras/{camera_id:str}/snapshot.jpg",
    opt={"scope": "cameras:read"},
    summary="The camera's current picture (JPEG)",
    description="From the camera's own snapshot URI, or encoded from a decoded frame. Served "
    "from a cache younger than `max_age` seconds; `Age` and `Last-Modified` say how old the "
    "picture is. 503 while the camera is not running, 502/504 when it fails to give one.",
    responses={**documented(403, 404, 409, 502, 503, 504)},
    tags=["cameras"],
    media_type="image/jpeg",
)
async def snapshot(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    camera_id: CameraId,
    max_age: Annotated[float | None, QueryParameter(ge=0, le=3600)] = None,
) -> Response[bytes]:
    rt = visible_camera(api, request.user, camera_id)
    camera = running_camera(api, rt)
    try:
        picture = await api.hub.snapshots.get(rt.id, camera, max_age=max_age)
    except Exception as exc:
        raise _camera_failed(rt, exc) from None
    age_s = max(0.0, (datetime.now(UTC) - picture.taken_at).total_seconds())
    age = int(age_s)
    return Response(
        content=picture.content,
        media_type=picture.content_type,
        headers={
            "Cache-Control": "no-store",
            "Age": str(age),
            # Readable by the page's script (Resource Timing) for an <img>: the console shows
            # each picture's age without fetching it by hand.
            "Server-Timing": f"age;dur={age_s * 1000:.0f}",
            "Last-Modified": format_datetime(picture.taken_at.astimezone(UTC), usegmt=True),
        },
    )


@post(
    "/api/v1/cameras/{camera_id:str}/ptz",
    opt={"scope": "cameras:control"},
    status_code=204,
    summary="Move the camera (PTZ)",
    description="`action`: `continuous`, `relative`, `absolute`, `goto_preset`, `set_preset`, "
    "`home` or `stop`. 409 when the camera has no PTZ.",
    responses=documented(403, 404, 409, 422, 502, 503, 504),
    tags=["cameras"],
)
async def ptz(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    camera_id: CameraId,
    data: JSONBody[PtzCommand],
) -> None:
    rt = visible_camera(api, request.user, camera_id)
    camera = running_camera(api, rt)
    request.scope["nabat.audit"] = {"camera": rt.id, "action": type(data).__name__}  # type: ignore[typeddict-unknown-key]
    try:
        async with asyncio.timeout(rt.entry.timeout):
            await camera.ptz(data)
    except Exception as exc:
        raise _camera_failed(rt, exc) from None


@get(
    "/api/v1/cameras/{camera_id:str}/presets",
    opt={"scope": "cameras:read"},
    summary="The camera's PTZ presets",
    responses=documented(403, 404, 409, 502, 503, 504),
    tags=["cameras"],
)
async def presets(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], camera_id: CameraId
) -> list[PtzPreset]:
    rt = visible_camera(api, request.user, camera_id)
    camera = running_camera(api, rt)
    try:
        async with asyncio.timeout(rt.entry.timeout):
            return await camera.presets()
    except Exception as exc:
        raise _camera_failed(rt, exc) from None


async def _report(
    request: Request[TokenInfo, Any, Any],
    api: ApiState,
    since: datetime | None,
    until: datetime | None,
    municipalities: list[str] | None,
) -> CameraReport:
    now = datetime.now(UTC)
    until = until or now
    since = since or until - timedelta(days=7)
    wanted = _checked_period(request, api, since, until, now, municipalities)
    hub = api.hub
    cfg = hub.config.cameras
    report = await build_report(
        hub.journal,
        {rt.id: rt.entry.municipality or "" for rt in hub.units.cameras()},
        hub.camera_states.all(),
        load_region(hub.config.hub.region),
        since=since,
        until=until,
        generated_at=now,
        targets=cfg.targets,
        availability_target=cfg.availability_target,
        language=hub.config.hub.language,
        municipalities=wanted,
    )
    if hub.follower is not None:  # the region: every district, the sites' ones as they say
        from ...federation.reports import merge_camera_rows, site_reports

        report = merge_camera_rows(
            report,
            await site_reports(hub.journal),
            reachable=hub.follower.reachable,
            language=hub.config.hub.language,
            municipalities=wanted,
            now=now,
        )
    return report


def _checked_period(
    request: Request[TokenInfo, Any, Any],
    api: ApiState,
    since: datetime,
    until: datetime,
    now: datetime,
    municipalities: list[str] | None,
) -> list[str] | None:
    """The municipalities a report covers, after checking its period; a district token's
    report is its own."""
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise ProblemError(
                400,
                f"{name} must carry a UTC offset",
                errors=[FieldError(field=name, reason="e.g. 2026-11-01T00:00:00Z")],
            )
    if since >= min(until, now):
        raise ProblemError(
            400,
            "since must be before until and before now",
            errors=[FieldError(field="since", reason="the period has not begun")],
        )
    return report_municipalities(api, request.user, municipalities)


def _municipalities(api: ApiState, given: list[str] | None) -> list[str] | None:
    unknown = [m for m in given or () if m not in api.municipalities]
    if unknown:
        raise ProblemError(
            400,
            f"not municipalities of this region: {', '.join(unknown)}",
            errors=[FieldError(field="municipality", reason="a municipality slug")],
        )
    return list(given) if given else None


def report_municipalities(
    api: ApiState, token: TokenInfo, given: list[str] | None
) -> list[str] | None:
    """The municipalities a report covers: those asked for (400 naming any unknown), limited
    to a district token's own (a district token's report is its own); None: the region."""
    wanted = _municipalities(api, given)
    if not token.regional:
        wanted = [m for m in (wanted or token.municipalities) if m in token.municipalities]
    return wanted


Municipalities = Annotated[list[str] | None, QueryParameter(name="municipality", max_items=100)]


_REPORT = (
    "Per municipality: cameras total, ok, degraded, offline, unknown; availability over the "
    "period (default: the 7 days before `until`, which defaults to now) from the journal of "
    "health changes; the target and whether the district is lagging."
)


@get(
    "/api/v1/reports/cameras",
    opt={"scope": "cameras:read"},
    summary="District camera report",
    description=_REPORT + " The same as CSV: `/api/v1/reports/cameras.csv`.",
    responses=documented(403),
    tags=["cameras"],
)
async def camera_report(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    since: Annotated[datetime | None, QueryParameter()] = None,
    until: Annotated[datetime | None, QueryParameter()] = None,
    municipality: Municipalities = None,
) -> CameraReport:
    return await _report(request, api, since, until, municipality)


@get(
    "/api/v1/reports/cameras.csv",
    opt={"scope": "cameras:read"},
    summary="District camera report (CSV)",
    description=_REPORT,
    responses=documented(403),
    tags=["cameras"],
    media_type="text/csv",
)
async def camera_report_csv(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    since: Annotated[datetime | None, QueryParameter()] = None,
    until: Annotated[datetime | None, QueryParameter()] = None,
    municipality: Municipalities = None,
) -> Response[bytes]:
    report = await _report(request, api, since, until, municipality)
    return Response(
        content=to_csv(report).encode("utf-8"),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="cameras-report.csv"'},
    )


@get(
    "/api/v1/reports/cameras/history",
    opt={"scope": "cameras:read"},
    summary="Camera availability per municipality over time",
    description="The report's availability for each `step_hours` of the period (default: "
    "the 30 days before `until`, by day), per municipality and for the region, for charts. "
    "At most 400 points.",
    responses=documented(400, 403),
    tags=["cameras"],
)
async def camera_history(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    since: Annotated[datetime | None, QueryParameter()] = None,
    until: Annotated[datetime | None, QueryParameter()] = None,
    step_hours: Annotated[float, QueryParameter(gt=0, le=24 * 31)] = 24.0,
    municipality: Municipalities = None,
) -> AvailabilitySeries:
    now = datetime.now(UTC)
    until = until or now
    since = since or until - timedelta(days=30)
    wanted = _checked_period(request, api, since, until, now, municipality)
    hub = api.hub
    try:
        return await availability_series(
            hub.journal,
            {rt.id: rt.entry.municipality or "" for rt in hub.units.cameras()},
            hub.camera_states.all(),
            load_region(hub.config.hub.region),
            since=since,
            until=until,
            step=timedelta(hours=step_hours),
            generated_at=now,
            availability_target=hub.config.cameras.availability_target,
            language=hub.config.hub.language,
            municipalities=wanted,
        )
    except ValueError as exc:
        raise ProblemError(400, str(exc)) from None


HANDLERS = [
    camera_history,
    list_cameras,
    get_camera,
    snapshot,
    ptz,
    presets,
    camera_report,
    camera_report_csv,
]
