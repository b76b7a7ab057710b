"""``/api/v1/cameras/{id}/recordings``: a camera's recorded footage — the timeline's data, the
segment files (HTTP range requests) and where to play from a given moment.

A segment is named by its start time in µs (the time part of its index key), never by a path:
the file is found through the index, under the storage path the index names. Authorised like
snapshots (``cameras:read``; another municipality's camera is 404). Each segment download is
audited once (a request without a range, or one starting at byte 0), not per range request.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Stream

from ...cameras.states import from_the_camera
from ...interfaces.payloads import CameraHealthChange
from ...recording.index import COLLECTION, Segment, gaps_of
from ...recording.segments import camera_dir
from ...store.base import MAX_PAGE, EventQuery
from ..gate import ACTOR, request_id_of
from ..problems import FieldError, ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo
from .cameras import CameraId, visible_camera

__all__ = ["HANDLERS"]

DEFAULT_SPAN = timedelta(hours=24)
MAX_SPAN = timedelta(days=31)
GAP_SLACK_S = 2.0
"""A hole shorter than this between segments is the rotation itself, not a gap."""
CHUNK = 256 * 1024
MAX_SEGMENTS = 100_000
"""31 days of 30 s segments, with room to spare."""
_FILE = re.compile(r"(\d{1,16})\.mp4")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_decode = msgspec.json.Decoder(Segment)


class SegmentView(msgspec.Struct, kw_only=True):
    start: datetime
    end: datetime
    size: int
    sha256: str
    url: str
    """The file: ``GET`` it (with ``Range`` if wanted); plays on its own (fMP4)."""


class GapView(msgspec.Struct, kw_only=True):
    start: datetime
    end: datetime


class HealthMark(msgspec.Struct, kw_only=True):
    time: datetime
    state: str
    """The camera's health state from then on (``ok``, ``offline``, ``black``, ``frozen``…)."""


class IncidentMark(msgspec.Struct, kw_only=True):
    id: str
    title: str | None = None
    at: datetime
    """When it was reported (else when the hub opened it)."""


class Recordings(msgspec.Struct, kw_only=True):
    since: datetime
    until: datetime
    segments: list[SegmentView]
    gaps: list[GapView]
    """Where no footage covers the period (up to now; the segment being written counts as a
    gap until it is finished)."""
    health: list[HealthMark]
    incidents: list[IncidentMark]


class Playback(msgspec.Struct, kw_only=True):
    url: str
    """The segment holding ``at`` (or the first after it)."""
    segment_start: datetime
    offset: float
    """Seconds into the segment where ``at`` is (0 when the footage begins after it)."""
    next: str | None
    """The following segment's file, to play on into; None when this is the last."""


def _start_us(segment: Segment) -> str:
    return segment.key.rsplit("/", 1)[1]


def _url(camera_id: str, segment: Segment) -> str:
    return f"/api/v1/cameras/{quote(camera_id, safe='')}/recordings/{_start_us(segment)}.mp4"


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ProblemError(
            400,
            f"{name} must carry a UTC offset",
            errors=[FieldError(field=name, reason="e.g. 2026-11-01T00:00:00Z")],
        )
    return value.astimezone(UTC)


@get(
    "/api/v1/cameras/{camera_id:str}/recordings",
    opt={"scope": "cameras:read"},
    summary="The camera's recorded footage over a period",
    description="Segments overlapping [`since`, `until`] (ISO 8601 with an offset; default: "
    "the 24 hours before `until`, which defaults to now; at most 31 days per call), each with "
    "the URL of its file; the gaps where nothing was recorded; the camera's health changes "
    "and the incidents linking this camera in the period — a timeline's data.",
    responses=documented(403, 404),
    tags=["cameras"],
)
async def list_recordings(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    camera_id: CameraId,
    since: Annotated[datetime | None, QueryParameter()] = None,
    until: Annotated[datetime | None, QueryParameter()] = None,
) -> Recordings:
    rt = visible_camera(api, request.user, camera_id)
    now = datetime.now(UTC)
    until = _aware("until", until) if until is not None else now
    since = _aware("since", since) if since is not None else until - DEFAULT_SPAN
    if since >= until:
        raise ProblemError(
            400,
            "since must be before until",
            errors=[FieldError(field="since", reason="the period is empty")],
        )
    if until - since > MAX_SPAN:
        raise ProblemError(
            400,
            "at most 31 days per call",
            errors=[FieldError(field="since", reason="ask for the period in parts")],
        )
    hub = api.hub
    segments = await hub.footage.between(rt.id, since, until, limit=MAX_SEGMENTS)
    gaps = gaps_of(segments, since, min(until, now), GAP_SLACK_S) if since < now else []
    return Recordings(
        since=since,
        until=until,
        segments=[
            SegmentView(start=s.start, end=s.end, size=s.size, sha256=s.sha256, url=_url(rt.id, s))
            for s in segments
        ],
        gaps=[GapView(start=g.start, end=g.end) for g in gaps],
        health=await _health(api, rt.id, rt.entry.municipality, since, until),
        incidents=await _incidents(api, rt.id, since, until),
    )


async def _health(
    api: ApiState, camera_id: str, municipality: str | None, since: datetime, until: datetime
) -> list[HealthMark]:
    marks: list[HealthMark] = []
    after: int | None = None
    while True:
        page = await api.hub.journal.query(
            EventQuery(
                since=since,
                until=until,
                types=("camera.health.*",),
                subject=camera_id,
                municipalities=(municipality,) if municipality else (),
                after=after,
                limit=MAX_PAGE,
            )
        )
        for stored in page.events:
            change = stored.event.data
            if isinstance(change, dict):
                try:
                    change = msgspec.convert(change, CameraHealthChange)
                except msgspec.ValidationError:
                    continue
            if (
                isinstance(change, CameraHealthChange)
                and change.camera == camera_id
                and from_the_camera(stored.event, change)
            ):
                marks.append(HealthMark(time=stored.event.time, state=str(change.state)))
        if page.next_cursor is None or not page.events:
            break
        after = page.events[-1].seq
    marks.sort(key=lambda m: m.time)
    return marks


async def _incidents(
    api: ApiState, camera_id: str, since: datetime, until: datetime
) -> list[IncidentMark]:
    found: list[IncidentMark] = []
    for record in await api.hub.incidents.list(limit=100_000):
        if not any(c.id == camera_id for c in record.incident.cameras):
            continue
        at = record.incident.reported_at or record.created_at
        if since <= at <= until:
            found.append(IncidentMark(id=record.id, title=record.incident.title, at=at))
    found.sort(key=lambda m: m.at)
    return found


async def _segment_at(api: ApiState, camera_id: str, start_us: int) -> Segment | None:
    stored = await api.hub.journal.get_record(
        COLLECTION, f"{camera_dir(camera_id)}/{start_us:016d}"
    )
    return _decode.decode(stored.body) if stored is not None else None


async def _after(api: ApiState, camera_id: str, key: str) -> Segment | None:
    found = await api.hub.journal.records(
        COLLECTION, prefix=camera_dir(camera_id) + "/", after=key, limit=1
    )
    return _decode.decode(found[0].body) if found else None


def _file_of(api: ApiState, segment: Segment) -> Path:
    """The segment's file, under the storage path the index names (never a client's path)."""
    for storage in api.hub.recorder.storages:
        if storage.name == segment.storage:
            root = storage.root.resolve()
            path = (root / segment.name).resolve()
            if path.is_relative_to(root) and path.is_file():
                return path
            break
    raise ProblemError(410, "the segment's file is gone", kind="segment-gone")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive, or None for the whole file; raises 416 for one it cannot
    serve (several ranges are not served: the whole file is asked for instead)."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        raise _unsatisfiable(size)
    if not match[1]:  # the last N bytes
        n = int(match[2])
        if n == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - n), size - 1
    first = int(match[1])
    last = int(match[2]) if match[2] else size - 1
    if first >= size or last < first:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> ProblemError:
    return ProblemError(
        416,
        f"the range is not within the file's {size} bytes",
        headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
        kind="range-not-satisfiable",
    )


async def _read(path: Path, first: int, last: int) -> AsyncIterator[bytes]:
    fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
    try:
        at = first
        while at <= last:
            chunk = await asyncio.to_thread(os.pread, fd, min(CHUNK, last + 1 - at), at)
            if not chunk:
                return
            at += len(chunk)
            yield chunk
    finally:
        os.close(fd)


@get(
    "/api/v1/cameras/{camera_id:str}/recordings/{file:str}",
    opt={"scope": "cameras:read"},
    summary="A recorded segment (fragmented MP4)",
    description="`file` is `<start_us>.mp4`, as in the list's `url`: the segment that began "
    "then (µs since the epoch). HTTP range requests (`Range: bytes=…`, 206 with "
    "`Content-Range`; 416 outside the file); `ETag` is the file's SHA-256 as indexed. "
    "404 for a camera not the caller's or a start that names no segment; 410 when the file "
    "is gone from its disk. Each download is audited.",
    responses=documented(403, 404, 410, 416),
    tags=["cameras"],
    media_type="video/mp4",
)
async def segment_file(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    camera_id: CameraId,
    file: Annotated[str, PathParameter(max_length=32)],
) -> Response[Any]:
    rt = visible_camera(api, request.user, camera_id)
    match = _FILE.fullmatch(file)
    segment = await _segment_at(api, rt.id, int(match[1])) if match else None
    if segment is None or segment.camera != rt.id:
        raise ProblemError(404, f"camera {rt.id} has no segment {file!r}", kind="not-found")
    path = await asyncio.to_thread(_file_of, api, segment)
    size = (await asyncio.to_thread(path.stat)).st_size
    etag = f'"{segment.sha256}"'
    headers = {"Accept-Ranges": "bytes", "ETag": etag, "Cache-Control": "private, max-age=3600"}
    if request.headers.get("if-none-match") == etag:
        return Response(content=b"", status_code=304, headers=headers)
    wanted = _byte_range(request.headers.get("range"), size)
    if request.headers.get("if-range") not in (None, etag):
        wanted = None  # the client's copy is not this file: send it whole
    first, last = wanted if wanted is not None else (0, size - 1)
    if first == 0:
        _audit(request, api, rt.id, segment, 206 if wanted is not None else 200)
    headers["Content-Length"] = str(last + 1 - first)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Stream(
        _read(path, first, last),
        status_code=206 if wanted is not None else 200,
        media_type="video/mp4",
        headers=headers,
    )


def _audit(
    request: Request[TokenInfo, Any, Any],
    api: ApiState,
    camera_id: str,
    segment: Segment,
    status: int,
) -> None:
    token = request.user
    client = request.scope.get("client")
    api.audit.record(
        request.scope.get(ACTOR) or f"token:{token.id}",  # type: ignore[arg-type]
        f"GET {request.scope['path']}",
        actor_name=token.name,
        status=status,
        request_id=request_id_of(request.scope),
        remote=client[0] if client else None,
        detail={
            "camera": camera_id,
            "segment": _start_us(segment),
            "start": segment.start.isoformat(),
            "sha256": segment.sha256,
        },
    )


@get(
    "/api/v1/cameras/{camera_id:str}/playback",
    opt={"scope": "cameras:read"},
    summary="Where to play the camera's footage from a moment",
    description="The segment holding `at` (or, in a gap, the first one after it), the offset "
    "in seconds into it, and the next segment's URL to play on into. 404 when nothing was "
    "recorded at or after `at`.",
    responses=documented(403, 404),
    tags=["cameras"],
)
async def playback(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    camera_id: CameraId,
    at: Annotated[datetime, QueryParameter()],
) -> Playback:
    rt = visible_camera(api, request.user, camera_id)
    at = _aware("at", at)
    holding = [s for s in await api.hub.footage.between(rt.id, at, at) if s.end > at]
    segment = holding[-1] if holding else None
    if segment is None:
        key = f"{camera_dir(rt.id)}/{int(at.timestamp() * 1_000_000):016d}"
        segment = await _after(api, rt.id, key)
    if segment is None:
        raise ProblemError(
            404, f"camera {rt.id} has no footage at or after {at.isoformat()}", kind="not-found"
        )
    following = await _after(api, rt.id, segment.key)
    return Playback(
        url=_url(rt.id, segment),
        segment_start=segment.start,
        offset=max(0.0, (at - segment.start).total_seconds()),
        next=_url(rt.id, following) if following is not None else None,
    )


HANDLERS = [list_recordings, segment_file, playback]
