"""``/api/v1/incidents``: incidents from 112, rules and operators, with the nearest cameras.

Reading needs ``events:read`` (an incident carries the caller's number: personal data); a token
limited to municipalities sees only their incidents. The snapshots kept with an incident are
served as they were taken (``cameras:read``). Operators open incidents here (``events:write``);
connectors such as ``system112`` forward them to their systems.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from ...events import Severity
from ...ids import uuid7
from ...interfaces.incident import (
    MAX_VICTIMS,
    GeoPoint,
    Incident,
    IncidentRecord,
    IncidentStatus,
)
from ..problems import FieldError, ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo

__all__ = ["HANDLERS"]

IncidentId = Annotated[str, PathParameter(max_length=200)]
CameraId = Annotated[str, PathParameter(max_length=200)]
Service = Annotated[str, msgspec.Meta(pattern=r"^0[1-4]$")]
Text = Annotated[str, msgspec.Meta(max_length=4000)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class IncidentPage(msgspec.Struct, kw_only=True):
    items: list[IncidentRecord]


class IncidentRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An incident an operator opens. At least a title or a type."""

    title: Short | None = None
    type: Short | None = None
    description: Text | None = None
    address: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    location: GeoPoint | None = None
    caller: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    victims: Annotated[int, msgspec.Meta(ge=0, le=MAX_VICTIMS)] | None = None
    services: Annotated[list[Service], msgspec.Meta(max_length=4)] = []
    municipality: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    severity: Severity = Severity.MODERATE


async def visible_incident(api: ApiState, token: TokenInfo, incident_id: str) -> IncidentRecord:
    record = await api.hub.incidents.get(incident_id)
    if record is None and api.hub.follower is not None and ":" in incident_id:
        from ...federation.reports import INCIDENTS

        stored = await api.hub.journal.get_record(INCIDENTS, incident_id)
        if stored is not None:
            record = msgspec.json.decode(stored.body, type=IncidentRecord)
    if record is None or not token.sees(record.municipality):
        raise ProblemError(404, f"no incident {incident_id!r}", kind="not-found")
    return record


@get(
    "/api/v1/incidents",
    opt={"scope": "events:read"},
    summary="Incidents, the most recently changed first",
    responses=documented(403, 422),
    tags=["incidents"],
)
async def list_incidents(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    status: Annotated[IncidentStatus | None, QueryParameter()] = None,
    municipality: Annotated[str | None, QueryParameter(max_length=64)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> IncidentPage:
    token = request.user
    wanted: set[str] | None = None if token.regional else set(token.municipalities)
    if municipality is not None:
        if wanted is not None and municipality not in wanted:
            raise ProblemError(403, f"this token does not see {municipality!r}", kind="forbidden")
        wanted = {municipality}
    records = await api.hub.incidents.list(municipalities=wanted, status=status, limit=limit)
    if api.hub.follower is not None:  # the region: the sites' incidents too, with their site
        from ...federation.reports import remote_incidents

        records += [
            r
            for r in await remote_incidents(api.hub.journal)
            if (wanted is None or r.municipality in wanted)
            and (status is None or r.incident.status is status)
        ]
        records.sort(key=lambda r: (r.updated_at, r.id), reverse=True)
    return IncidentPage(items=records[:limit])


@get(
    "/api/v1/incidents/{incident_id:str}",
    opt={"scope": "events:read"},
    summary="One incident with its linked cameras",
    responses=documented(403, 404),
    tags=["incidents"],
)
async def get_incident(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], incident_id: IncidentId
) -> IncidentRecord:
    return await visible_incident(api, request.user, incident_id)


@get(
    "/api/v1/incidents/{incident_id:str}/cameras/{camera_id:str}/snapshot.jpg",
    opt={"scope": "cameras:read"},
    summary="The snapshot a linked camera gave when the incident was reported (JPEG)",
    description="Kept with the incident, not fetched live: it shows the scene as it was. "
    "`Last-Modified` is when it was taken.",
    responses=documented(403, 404),
    tags=["incidents"],
    media_type="image/jpeg",
)
async def incident_snapshot(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    incident_id: IncidentId,
    camera_id: CameraId,
) -> Response[bytes]:
    await visible_incident(api, request.user, incident_id)
    stored = await api.hub.incidents.snapshot(incident_id, camera_id)
    if stored is None:
        raise ProblemError(
            404, f"no snapshot of {camera_id!r} kept with {incident_id!r}", kind="not-found"
        )
    return Response(
        content=stored.body,
        media_type="image/jpeg",
        headers={
            "Cache-Control": "private, max-age=86400",
            "Last-Modified": format_datetime(stored.created.astimezone(UTC), usegmt=True),
        },
    )


@post(
    "/api/v1/incidents",
    opt={"scope": "events:write"},
    status_code=201,
    summary="Open an incident",
    description="Published as `incident.created`; the nearest cameras are linked when it has "
    "a location, and connectors (112, police) forward it to their systems. The municipality "
    "defaults to the one the location lies in.",
    responses=documented(400, 403),
    tags=["incidents"],
)
async def open_incident(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    data: JSONBody[IncidentRequest],
) -> IncidentRecord:
    token = request.user
    if data.title is None and data.type is None:
        raise ProblemError(
            400,
            "an incident needs a title or a type",
            errors=[FieldError(field="title", reason="give a title or a type")],
        )
    municipality = data.municipality
    if municipality is None and data.location is not None:
        municipality = api.hub.incidents.municipality_at(data.location)
    if municipality is not None and municipality not in api.municipalities:
        raise ProblemError(
            400,
            f"unknown municipality {municipality!r}",
            errors=[FieldError(field="municipality", reason="not a municipality of the region")],
        )
    if not token.regional and not token.sees(municipality):
        raise ProblemError(
            403, "this token may open incidents only in its municipalities", kind="forbidden"
        )
    incident_id = uuid7()
    request.scope["nabat.audit"] = {"incident": incident_id}  # type: ignore[typeddict-unknown-key]
    incident = Incident(
        title=data.title,
        type=data.type,
        description=data.description,
        address=data.address,
        location=data.location,
        caller=data.caller,
        victims=data.victims,
        services=sorted(set(data.services)),
        reported_at=datetime.now(UTC),
        origin=f"api:{token.name}",
    )
    _, record = await api.hub.incidents.report(
        incident_id,
        incident,
        source="/nabat/api",
        municipality=municipality,
        severity=data.severity,
    )
    return record


@post(
    "/api/v1/incidents/{incident_id:str}/close",
    opt={"scope": "events:write"},
    status_code=200,
    summary="Close an incident",
    responses=documented(403, 404),
    tags=["incidents"],
)
async def close_incident(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], incident_id: IncidentId
) -> IncidentRecord:
    await visible_incident(api, request.user, incident_id)
    request.scope["nabat.audit"] = {"incident": incident_id}  # type: ignore[typeddict-unknown-key]
    done = await api.hub.incidents.close_incident(incident_id, source="/nabat/api")
    if done is None:
        raise ProblemError(404, f"no incident {incident_id!r}", kind="not-found")
    return done[1]


HANDLERS = [list_incidents, get_incident, incident_snapshot, open_incident, close_incident]
