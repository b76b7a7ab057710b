"""``/api/v1/.../exports``: evidence exports of recorded footage (docs/evidence.md).

``POST /api/v1/cameras/{id}/exports`` starts one (202): the footage of the period is put on
hold, the clip is cut and the manifest signed in a thread (:mod:`nabat.evidence`), and the
hold released. ``GET /api/v1/exports/{id}`` follows it; its files download from
``/api/v1/exports/{id}/files/{name}`` — a fixed list of names, never a client's path. Only
``cameras:export`` (a supervisor, an admin, or a token given it) may export or download, and
only cameras of its municipalities; every export and every download is audited.

An export's state is a record in the journal, so any hub process on the same database
answers for it; its files are under ``<data_dir>/evidence/exports/<id>``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from litestar.response import File

from ...evidence import Actor, CameraInfo, SegmentRef, export, load_or_create_key
from ...ids import uuid7
from ...logs import get_logger
from ..problems import ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo
from .cameras import CameraId, visible_camera

__all__ = ["HANDLERS"]

log = get_logger("nabat.evidence")

COLLECTION = "evidence.exports"
MAX_PERIOD = timedelta(hours=24)
HOLD_TTL = 6 * 3600.0
"""The footage's hold while an export is cut; it expires by itself should the hub die."""
FILES = ("clip.mp4", "manifest.json", "manifest.sig", "README.txt")
_TYPES = {
    "clip.mp4": "video/mp4",
    "manifest.json": "application/json",
    "manifest.sig": "text/plain",
    "README.txt": "text/plain; charset=utf-8",
}


class ExportRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    reason: Annotated[str, msgspec.Meta(min_length=3, max_length=2000)]
    """What it is for (a case number, the request it answers): in the signed manifest."""
    incident: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None


class ExportState(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    camera: str
    municipality: str | None
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    reason: str
    incident: str | None = None
    exported_by: str
    status: Literal["running", "done", "failed"]
    created: datetime
    finished: datetime | None = None
    detail: str = ""
    files: list[dict[str, Any]] = []
    """``name``, ``size``, ``sha256``, ``url`` once done."""
    fingerprint: str | None = None
    """The signing key's fingerprint: what a verifier pins."""
    first_frame: datetime | None = None
    last_frame: datetime | None = None
    gaps: list[dict[str, datetime]] = []


_decode = msgspec.json.Decoder(ExportState)


def _utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ProblemError(400, f"{name}: give a time zone (e.g. Z)", kind="invalid-parameter")
    return value.astimezone(UTC)


async def _save(api: ApiState, state: ExportState) -> None:
    await api.hub.journal.put_record(COLLECTION, state.id, msgspec.json.encode(state))


async def _state(api: ApiState, info: TokenInfo, export_id: str) -> ExportState:
    stored = await api.hub.journal.get_record(COLLECTION, export_id)
    state = _decode.decode(stored.body) if stored is not None else None
    if state is None or not info.sees(state.municipality):
        raise ProblemError(404, f"no export {export_id!r}", kind="not-found")
    return state


def _directory(api: ApiState, export_id: str) -> Path:
    return api.hub.data_dir / "evidence" / "exports" / export_id


@post(
    "/api/v1/cameras/{camera_id:str}/exports",
    opt={"scope": "cameras:export"},
    status_code=202,
    summary="Export recorded footage as signed evidence",
    description="Cuts the camera's footage of `from`–`to` (at most 24 h) into one MP4 with a "
    "manifest signed by the hub's Ed25519 key (docs/evidence.md). Answers 202 at once; follow "
    "`GET /api/v1/exports/{id}`. 404 when the camera has no footage in the period. Needs "
    "`cameras:export`.",
    responses=documented(400, 403, 404, 422),
    tags=["cameras"],
)
async def create_export(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    camera_id: CameraId,
    data: JSONBody[ExportRequest],
) -> ExportState:
    rt = visible_camera(api, request.user, camera_id)
    start, end = _utc("from", data.start), _utc("to", data.end)
    if end <= start:
        raise ProblemError(422, "'to' must be after 'from'", kind="invalid-period")
    if end - start > MAX_PERIOD:
        raise ProblemError(422, "an export covers at most 24 hours", kind="invalid-period")
    hub = api.hub
    segments = await hub.footage.between(rt.id, start, end)
    files = [(s, hub.recorder.file_of(s)) for s in segments]
    refs = [
        SegmentRef(
            camera_id=s.camera,
            start=s.start,
            end=s.end,
            path=str(path),
            size=s.size,
            sha256=s.sha256,
        )
        for s, path in files
        if path is not None
    ]
    if not refs:
        raise ProblemError(
            404, f"camera {rt.id} has no recorded footage in that period", kind="no-footage"
        )
    info = request.user
    actor = request.scope.get("nabat.actor") or f"token:{info.id}"
    export_id = uuid7()
    state = ExportState(
        id=export_id,
        camera=rt.id,
        municipality=rt.entry.municipality,
        start=start,
        end=end,
        reason=data.reason,
        incident=data.incident,
        exported_by=actor,
        status="running",
        created=datetime.now(UTC),
    )
    await _save(api, state)
    await hub.footage.hold(
        f"export:{export_id}", rt.id, start, end, reason=f"export {export_id}", ttl=HOLD_TTL
    )
    camera = CameraInfo(
        id=rt.id, name=rt.entry.name or rt.id, municipality=rt.entry.municipality or ""
    )
    hub.tasks.spawn(
        _run(api, state, refs, camera, Actor(id=actor, name=info.name)),
        name=f"export:{export_id}",
    )
    log.info("evidence.export_started", export=export_id, camera=rt.id, by=actor)
    return state


async def _run(
    api: ApiState, state: ExportState, refs: list[SegmentRef], camera: CameraInfo, actor: Actor
) -> None:
    hub = api.hub
    out = _directory(api, state.id)
    try:
        key = await asyncio.to_thread(load_or_create_key, hub.data_dir)
        done = await asyncio.to_thread(
            export,
            refs,
            state.start,
            state.end,
            out,
            key=key,
            hub=hub.name,
            camera=camera,
            reason=state.reason,
            exported_by=actor,
            incident_id=state.incident,
        )
        base = f"/api/v1/exports/{state.id}/files/"
        files = [
            {"name": f.name, "size": f.size, "sha256": f.sha256, "url": base + f.name}
            for f in done.manifest.files
        ] + [{"name": "manifest.json", "url": base + "manifest.json"}]
        files.append({"name": "manifest.sig", "url": base + "manifest.sig"})
        state = msgspec.structs.replace(
            state,
            status="done",
            finished=datetime.now(UTC),
            files=files,
            fingerprint=key.fingerprint,
            first_frame=done.clip.first_frame,
            last_frame=done.clip.last_frame,
            gaps=[{"from": g.start, "to": g.end} for g in done.clip.gaps],
        )
        log.info("evidence.exported", export=state.id, camera=state.camera, size=done.clip.size)
    except Exception as exc:  # a clear reason for the person who asked; the hub goes on
        log.warning("evidence.export_failed", export=state.id, error=repr(exc))
        state = msgspec.structs.replace(
            state, status="failed", finished=datetime.now(UTC), detail=str(exc)[:500]
        )
    finally:
        await hub.footage.release(f"export:{state.id}")
    await _save(api, state)


@get(
    "/api/v1/exports/{export_id:str}",
    opt={"scope": "cameras:export"},
    summary="An evidence export: its state, files and signing key fingerprint",
    responses=documented(403, 404),
    tags=["cameras"],
)
async def get_export(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    export_id: Annotated[str, PathParameter(max_length=64)],
) -> ExportState:
    return await _state(api, request.user, export_id)


@get(
    "/api/v1/exports/{export_id:str}/files/{name:str}",
    opt={"scope": "cameras:export"},
    summary="A file of a finished export",
    description="`clip.mp4`, `manifest.json`, `manifest.sig` or `README.txt`. Audited.",
    responses=documented(403, 404, 409),
    tags=["cameras"],
    media_type="application/octet-stream",
)
async def export_file(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    export_id: Annotated[str, PathParameter(max_length=64)],
    name: Annotated[str, PathParameter(max_length=32)],
) -> Response[Any]:
    state = await _state(api, request.user, export_id)
    if name not in FILES:
        raise ProblemError(404, f"an export has no file {name!r}", kind="not-found")
    if state.status != "done":
        raise ProblemError(409, f"export {export_id} is {state.status}", kind="not-ready")
    path = _directory(api, state.id) / name
    if not path.is_file():
        raise ProblemError(404, f"{name} of export {export_id} is gone", kind="not-found")
    client = request.client
    api.audit.record(
        request.scope.get("nabat.actor") or f"token:{request.user.id}",
        f"GET {request.url.path}",
        actor_name=request.user.name,
        status=200,
        request_id=request.scope.get("nabat.request_id"),
        remote=client.host if client else None,
        detail={"export": state.id, "camera": state.camera, "file": name},
    )
    return File(
        path=path,
        filename=f"{state.camera}-{state.id}-{name}",
        media_type=_TYPES[name],
        headers={"Cache-Control": "no-store"},
    )


HANDLERS = [create_export, get_export, export_file]
