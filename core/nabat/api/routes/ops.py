"""Operations: liveness, readiness, metrics, and who-am-I / audit for integrators and admins."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from ...interfaces.payloads import UnitState
from ..audit import AuditEntry
from ..metrics import CONTENT_TYPE
from ..problems import documented
from ..state import ApiState
from ..tokens import TokenInfo

__all__ = ["HANDLERS"]


class Health(msgspec.Struct, kw_only=True):
    status: str
    hub: str


class UnitReport(msgspec.Struct, kw_only=True, omit_defaults=True):
    kind: str
    name: str
    state: str
    since: datetime
    reason: str = ""


class Readiness(msgspec.Struct, kw_only=True):
    ready: bool
    """The journal answers: events can be accepted."""
    journal: str
    """``ok`` or the error."""
    journal_ms: float | None = None
    journal_down_since: datetime | None = None
    """When the journal stopped answering (the outage this process saw), while it lasts."""
    paused: list[str] = []
    """What waits for the journal meanwhile (each retries by itself; nothing is lost)."""
    degraded: list[str] = []
    """Units that are not running (failed, retrying, needs_auth)."""
    units: list[UnitReport] = []


class AuditPage(msgspec.Struct, kw_only=True):
    entries: list[AuditEntry]
    next_before: str | None
    """Pass as ``before`` for older entries; null at the oldest."""


@get(
    "/health",
    opt={"access": "public"},
    summary="Liveness",
    description="200 while the process serves requests. Needs no token.",
    tags=["operations"],
    security=[],
)
async def health(api: NamedDependency[ApiState]) -> Health:
    return Health(status="ok", hub=api.hub.name)


_PAUSED = (
    "ingest (503 with Retry-After)",
    "deliveries (subscriptions resume from their cursors)",
    "events from other hub processes (journal tail)",
    "scheduled jobs and sweeps (their results cannot be stored)",
)
_BAD = {UnitState.FAILED, UnitState.RETRYING, UnitState.NEEDS_AUTH}


@get(
    "/ready",
    opt={"scope": "ops:read"},
    summary="Readiness",
    description="200 when the journal answers (events can be accepted), 503 otherwise; lists "
    "every plugin's and instance's state. Units not running make it `degraded`, not unready.",
    responses=documented(403, 503),
    tags=["operations"],
)
async def ready(api: NamedDependency[ApiState]) -> Response[Readiness]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(5):
            await api.hub.journal.last_seq()
        journal, ok = "ok", True
        if api.hub.journal.health.down:  # reads pass, writes fail (a full disk)
            journal, ok = f"unavailable: {api.hub.journal.health.error}", False
    except Exception as exc:
        journal, ok = f"unavailable: {exc}", False
    elapsed = round((time.perf_counter() - started) * 1000, 2)
    units = sorted(api.hub.supervisor.units.values(), key=lambda u: (u.kind, u.name))
    report = Readiness(
        ready=ok,
        journal=journal,
        journal_ms=elapsed if ok else None,
        journal_down_since=None if ok else api.hub.journal.health.down_since,
        paused=[] if ok else list(_PAUSED),
        degraded=[f"{u.kind.value}:{u.name}" for u in units if u.state in _BAD],
        units=[
            UnitReport(
                kind=u.kind.value, name=u.name, state=u.state.value, since=u.since, reason=u.reason
            )
            for u in units
        ],
    )
    return Response(report, status_code=200 if ok else 503)


@get(
    "/metrics",
    opt={"scope": "ops:read"},
    summary="Prometheus metrics",
    responses=documented(403),
    tags=["operations"],
    media_type=CONTENT_TYPE,
)
async def metrics(api: NamedDependency[ApiState]) -> Response[str]:
    return Response(content=await api.metrics.render(), media_type=CONTENT_TYPE)


@get(
    "/api/v1/whoami",
    summary="The calling token's rights",
    description="Any valid token: its id, name, scopes and municipalities (never the secret).",
    responses=documented(),
    tags=["access"],
)
async def whoami(request: Request[TokenInfo, Any, Any]) -> TokenInfo:
    return request.user


@get(
    "/api/v1/audit",
    opt={"scope": "admin"},
    summary="The audit log, newest first",
    responses=documented(403),
    tags=["access"],
)
async def audit(
    api: NamedDependency[ApiState],
    before: Annotated[str | None, QueryParameter(max_length=64)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> AuditPage:
    await api.audit.flush()  # include the entries still queued (up to a second)
    entries, next_before = await api.audit.entries(before=before, limit=limit)
    return AuditPage(entries=entries, next_before=next_before)


HANDLERS = [health, ready, metrics, whoami, audit]
