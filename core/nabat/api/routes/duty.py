"""An incident's handling against its norm (docs/duty.md): its clocks, checklist and
escalation; taking it, passing it to the services, the first report, ticking a step.

Reading needs ``events:read``, acting ``events:write``; a token limited to municipalities
reaches only their incidents (another district's is 404, as if it did not exist). Every action
is in the audit log with who did it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter

from ...config.model import EscalationStep, NormSettings, PostSettings
from ...duty import DutyError, EditedNorms, Handling
from ..problems import ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo
from .incidents import IncidentId, Service, visible_incident

__all__ = ["HANDLERS"]


class HandlingPage(msgspec.Struct, kw_only=True):
    items: list[Handling]


class Dispatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    services: Annotated[list[Service], msgspec.Meta(min_length=1, max_length=4)]


class Report(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class Tick(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    done: bool = True


def _by(token: TokenInfo) -> str:
    return f"{token.id} ({token.name})"


async def _act(
    request: Request[TokenInfo, Any, Any],
    api: ApiState,
    incident_id: str,
    action: Callable[[str], Awaitable[Handling]],
    **audit: Any,
) -> Handling:
    """One person's action on an incident they may see (404 otherwise), audited, with the
    duty service's refusal as a problem."""
    await visible_incident(api, request.user, incident_id)
    request.scope["nabat.audit"] = {"incident": incident_id, **audit}  # type: ignore[typeddict-unknown-key]
    try:
        return await action(_by(request.user))
    except DutyError as exc:
        kind = "not-found" if exc.status == 404 else "conflict"
        raise ProblemError(exc.status, str(exc), kind=kind) from None


@get(
    "/api/v1/duty/incidents",
    opt={"scope": "events:read"},
    summary="Open incidents' handling",
    description="Each open incident under a norm, with its clocks (due, done by whom, missed), "
    "checklist and escalation, the caller's municipalities only.",
    responses=documented(403),
    tags=["duty"],
)
async def list_handling(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> HandlingPage:
    found = await api.hub.duty.open()
    return HandlingPage(items=[h for h in found if request.user.sees(h.municipality)])


@get(
    "/api/v1/incidents/{incident_id:str}/handling",
    opt={"scope": "events:read"},
    summary="An incident's handling against its norm",
    responses=documented(403, 404),
    tags=["duty"],
)
async def get_handling(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], incident_id: IncidentId
) -> Handling:
    await visible_incident(api, request.user, incident_id)
    found = await api.hub.duty.get(incident_id)
    if found is None:
        raise ProblemError(404, f"incident {incident_id!r} has no handling norm", kind="not-found")
    return found


@post(
    "/api/v1/incidents/{incident_id:str}/acknowledge",
    opt={"scope": "events:write"},
    status_code=200,
    summary="Take the incident (and stop its escalation)",
    description="Stops the acknowledge clock, and an escalation under way: the person told "
    "has taken it. Taking it again changes nothing.",
    responses=documented(403, 404, 409),
    tags=["duty"],
)
async def acknowledge(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], incident_id: IncidentId
) -> Handling:
    return await _act(
        request, api, incident_id, lambda by: api.hub.duty.acknowledge(incident_id, by=by)
    )


@post(
    "/api/v1/incidents/{incident_id:str}/dispatch",
    opt={"scope": "events:write"},
    status_code=200,
    summary="Passed to the services",
    description="`services`: `01`–`04` it was passed to. Stops the dispatch clock.",
    responses=documented(403, 404, 409),
    tags=["duty"],
)
async def dispatch(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    incident_id: IncidentId,
    data: Dispatch,
) -> Handling:
    services = list(data.services)
    return await _act(
        request,
        api,
        incident_id,
        lambda by: api.hub.duty.dispatch(incident_id, services, by=by),
        services=services,
    )


@post(
    "/api/v1/incidents/{incident_id:str}/report",
    opt={"scope": "events:write"},
    status_code=200,
    summary="The first report went out",
    description="`text`: what was reported. Stops the first-report clock.",
    responses=documented(403, 404, 409),
    tags=["duty"],
)
async def first_report(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    incident_id: IncidentId,
    data: Report,
) -> Handling:
    return await _act(
        request, api, incident_id, lambda by: api.hub.duty.report(incident_id, data.text, by=by)
    )


@post(
    "/api/v1/incidents/{incident_id:str}/checklist/{step:str}",
    opt={"scope": "events:write"},
    status_code=200,
    summary="Tick (or untick) a checklist step",
    responses=documented(403, 404, 409),
    tags=["duty"],
)
async def tick_step(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    incident_id: IncidentId,
    step: Annotated[str, PathParameter(max_length=3, description="The step's number, from 0")],
    data: Tick,
) -> Handling:
    if not step.isdigit():
        await visible_incident(api, request.user, incident_id)
        raise ProblemError(404, f"no checklist step {step!r}", kind="not-found")
    index = int(step)
    return await _act(
        request,
        api,
        incident_id,
        lambda by: api.hub.duty.tick(incident_id, index, done=data.done, by=by),
        step=index,
        done=data.done,
    )


class NormsInForce(msgspec.Struct, kw_only=True):
    source: str
    """``configuration`` ([duty] in plugins.toml) or ``console`` (set by an administrator)."""
    norms: list[NormSettings]
    escalation: dict[str, list[EscalationStep]]
    posts: list[PostSettings]
    check_interval: float
    by: str = ""
    at: datetime | None = None


class NormsChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    norms: list[NormSettings] = []
    escalation: dict[str, list[EscalationStep]] = {}


async def _in_force(api: ApiState) -> NormsInForce:
    duty = api.hub.duty
    settings = await duty.refresh(force=True)
    edited = await duty.edited()
    return NormsInForce(
        source="console" if edited else "configuration",
        norms=settings.norms,
        escalation=settings.escalation,
        posts=settings.posts,
        check_interval=settings.check_interval,
        by=edited.by if edited else "",
        at=edited.at if edited else None,
    )


@get(
    "/api/v1/duty/norms",
    opt={"scope": "events:read"},
    summary="The handling norms, escalation chains and posts in force",
    responses=documented(403),
    tags=["duty"],
)
async def get_norms(api: NamedDependency[ApiState]) -> NormsInForce:
    return await _in_force(api)


@post(
    "/api/v1/duty/norms",
    opt={"scope": "admin"},
    status_code=200,
    summary="Set the handling norms and escalation chains",
    description="In place of the configuration's `[duty]` norms and chains, for every hub "
    "process within seconds; incidents already open keep the clocks they started with. Each "
    "chain a norm names must exist and each step's `notify` must be a notifier instance.",
    responses=documented(403, 422),
    tags=["duty"],
)
async def set_norms(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], data: NormsChange
) -> NormsInForce:
    from ...interfaces import Notifier

    notifiers = {
        rt.id
        for rt in api.hub.units
        if rt.driver_cls is not None and issubclass(rt.driver_cls, Notifier)
    }
    for chain, steps in data.escalation.items():
        for index, step in enumerate(steps):
            if step.notify not in notifiers:
                raise ProblemError(
                    422,
                    f"escalation.{chain}[{index}]: no notifier instance {step.notify!r}",
                    kind="invalid",
                )
    request.scope["nabat.audit"] = {  # type: ignore[typeddict-unknown-key]
        "norms": [n.name for n in data.norms],
        "chains": sorted(data.escalation),
    }
    try:
        await api.hub.duty.set_norms(
            EditedNorms(
                norms=data.norms,
                escalation=data.escalation,
                by=_by(request.user),
                at=datetime.now(UTC),
            )
        )
    except (ValueError, msgspec.ValidationError) as exc:
        raise ProblemError(422, str(exc), kind="invalid") from None
    return await _in_force(api)


@post(
    "/api/v1/duty/norms/reset",
    opt={"scope": "admin"},
    status_code=200,
    summary="Back to the configuration's handling norms",
    responses=documented(403),
    tags=["duty"],
)
async def reset_norms(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> NormsInForce:
    request.scope["nabat.audit"] = {"norms": "configuration"}  # type: ignore[typeddict-unknown-key]
    await api.hub.duty.set_norms(None)
    return await _in_force(api)


HANDLERS = [
    get_norms,
    set_norms,
    reset_norms,
    list_handling,
    get_handling,
    acknowledge,
    dispatch,
    first_report,
    tick_step,
]
