"""``/api/v1/sites``: the sites a regional hub follows, and their cameras on request.

A remote camera's snapshot, PTZ and presets go to its own site's hub by request/reply over
NATS (``docs/federation.md``) and come back within ``[federation] call_timeout``, or the
caller is told the site is cut off (503) or did not answer (504) — never a stale picture.
A token limited to municipalities sees a site only when it holds one of them, and the site
itself refuses a camera outside them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from ...federation.dispatch import CallAnswer, SiteUnavailable
from ...federation.taker import RemoteCamera
from ...interfaces.camera import PtzCommand, PtzPreset
from ..problems import ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo

__all__ = ["HANDLERS"]

SiteId = Annotated[str, PathParameter(max_length=64)]
CameraId = Annotated[str, PathParameter(max_length=128)]


class SiteView(msgspec.Struct, kw_only=True):
    site: str
    municipalities: list[str]
    reachable: bool | None
    """Whether the site answered the last link check (every few seconds); null: not asked
    yet, or this hub's own NATS is down."""
    last_event_at: datetime | None = None
    """When the last of its events reached this hub (since this hub started)."""
    events: int = 0
    """Its events stored here since this hub started."""


class SitePage(msgspec.Struct, kw_only=True):
    connected: bool
    """Whether this hub is connected to its NATS (if not, nothing is known of the sites)."""
    items: list[SiteView]


def _sites(api: ApiState) -> tuple[Any, Any]:
    hub = api.hub
    if hub.follower is None or hub.dispatcher is None:
        raise ProblemError(404, "this hub follows no sites ([federation] follow)", kind="not-found")
    return hub.follower, hub.dispatcher


def _reach(api: ApiState, token: TokenInfo, site: str) -> list[str] | None:
    """The municipalities of ``site`` the token may act in; None for a regional token. 404
    when the site is not followed or holds none of the token's municipalities."""
    follower, _ = _sites(api)
    if site not in follower.settings.follow:
        raise ProblemError(404, f"no site {site!r}", kind="not-found")
    if token.regional:
        return None
    mine = [m for m in follower.settings.municipalities.get(site, []) if token.sees(m)]
    if not mine:
        raise ProblemError(404, f"no site {site!r}", kind="not-found")
    return mine


@get(
    "/api/v1/sites",
    opt={"scope": "events:read"},
    summary="The sites this hub follows, and whether each is reachable now",
    description="A site is *cut off* when it does not answer the link check across its leaf "
    "link — its events wait at the site and arrive when the link returns.",
    responses=documented(403),
    tags=["sites"],
)
async def list_sites(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> SitePage:
    hub = api.hub
    follower = hub.follower
    if follower is None:
        return SitePage(connected=False, items=[])
    token = request.user
    items = []
    for site in follower.settings.follow:
        municipalities = follower.settings.municipalities.get(site, [])
        if not token.regional and not any(token.sees(m) for m in municipalities):
            continue
        items.append(
            SiteView(
                site=site,
                municipalities=municipalities,
                reachable=follower.reachable.get(site),
                last_event_at=follower.last_event_at.get(site),
                events=follower.stored_by_site.get(site, 0),
            )
        )
    return SitePage(connected=follower.connection.connected, items=items)


def _answer(site: str, answer: CallAnswer) -> CallAnswer:
    if answer.status < 300:
        return answer
    try:
        detail = msgspec.json.decode(answer.body).get("detail", "")
    except (msgspec.DecodeError, AttributeError):
        detail = ""
    raise ProblemError(
        answer.status, f"site {site}: {detail or 'the call failed'}", kind="remote-camera"
    )


async def _call(api: ApiState, token: TokenInfo, site: str, kind: str, camera: str, **kw: Any):
    reach = _reach(api, token, site)
    _, dispatcher = _sites(api)
    try:
        answer = await dispatcher.call(
            site, kind, camera, by=f"token:{token.id} ({token.name})", municipalities=reach, **kw
        )
    except SiteUnavailable as exc:
        headers = {"Retry-After": "30"} if exc.status == 503 else None
        raise ProblemError(exc.status, str(exc), headers=headers, kind="site-unavailable") from None
    return _answer(site, answer)


@get(
    "/api/v1/sites/{site:str}/cameras",
    opt={"scope": "cameras:read"},
    summary="A site's cameras with their health, as its own hub knows them now",
    description="Asked of the site across its link (503 when it is cut off: the district "
    "report keeps its last figures).",
    responses=documented(403, 404, 503, 504),
    tags=["sites"],
)
async def remote_cameras(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], site: SiteId
) -> list[RemoteCamera]:
    answer = await _call(api, request.user, site, "camera.list", "")
    return msgspec.json.decode(answer.body, type=list[RemoteCamera])


@get(
    "/api/v1/sites/{site:str}/cameras/{camera_id:str}/snapshot.jpg",
    opt={"scope": "cameras:read"},
    summary="A remote camera's current picture, from its own site's hub",
    description="Asked of the site across its link and answered within `[federation] "
    "call_timeout`; `Last-Modified` says when the picture was taken. 503 when the site is cut "
    "off, 504 when it did not answer in time.",
    responses=documented(403, 404, 409, 502, 503, 504),
    tags=["sites"],
    media_type="image/jpeg",
)
async def remote_snapshot(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    site: SiteId,
    camera_id: CameraId,
    max_age: Annotated[float | None, QueryParameter(ge=0, le=3600)] = None,
) -> Response[bytes]:
    answer = await _call(api, request.user, site, "camera.snapshot", camera_id, max_age=max_age)
    headers = {"Cache-Control": "no-store"}
    if taken := answer.headers.get("Nabat-Taken-At"):
        headers["Nabat-Taken-At"] = taken
    return Response(content=answer.body, media_type=answer.content_type, headers=headers)


@post(
    "/api/v1/sites/{site:str}/cameras/{camera_id:str}/ptz",
    opt={"scope": "cameras:control"},
    status_code=204,
    summary="Move a remote camera (PTZ), through its own site's hub",
    description="As `POST /api/v1/cameras/{id}/ptz`, carried to the camera's site; never queued: "
    "a site that is cut off answers 503 at once.",
    responses=documented(403, 404, 409, 422, 502, 503, 504),
    tags=["sites"],
)
async def remote_ptz(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    site: SiteId,
    camera_id: CameraId,
    data: JSONBody[PtzCommand],
) -> None:
    request.scope["nabat.audit"] = {  # type: ignore[typeddict-unknown-key]
        "site": site,
        "camera": camera_id,
        "action": type(data).__name__,
    }
    await _call(api, request.user, site, "camera.ptz", camera_id, ptz=msgspec.to_builtins(data))


@get(
    "/api/v1/sites/{site:str}/cameras/{camera_id:str}/presets",
    opt={"scope": "cameras:read"},
    summary="A remote camera's PTZ presets",
    responses=documented(403, 404, 409, 502, 503, 504),
    tags=["sites"],
)
async def remote_presets(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    site: SiteId,
    camera_id: CameraId,
) -> list[PtzPreset]:
    answer = await _call(api, request.user, site, "camera.presets", camera_id)
    return msgspec.json.decode(answer.body, type=list[PtzPreset])


HANDLERS = [list_sites, remote_cameras, remote_snapshot, remote_ptz, remote_presets]
