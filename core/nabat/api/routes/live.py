"""Live video WebSockets (docs/video.md, docs/api.md): two doors to :class:`nabat.video.LiveVideo`.

* ``/api/v1/cameras/{id}/live`` streams one camera per socket (scripts, other players).
* ``/api/v1/live`` carries every tile of a console over **one** socket. The client names each
  stream with an id of its own (``sid``) in ``watch`` / ``unwatch`` messages; the hub's text
  messages carry the ``sid``, and each binary message is the ``sid`` (4 bytes, big-endian)
  followed by fMP4 bytes. A refused watch is an ``error`` message with the HTTP status and the
  reason, which a refused handshake cannot give a browser (it sees only close 1006). A browser
  holds few connections per host; a wall of 16 tiles needs one.

Each view is authorised like a snapshot when it is asked for, and audited twice (when it
starts, and when it ends with its length and bytes): who watched which camera from when to
when. A socket held open re-checks its caller every :data:`RECHECK_S`: a revoked token or an
ended session closes it (4401/4403), and a camera the caller may no longer see stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import WebSocket, websocket
from litestar.di import NamedDependency

from ...video import LimitReached, Viewer
from ..gate import AccessMiddleware, deny_websocket
from ..problems import ProblemError
from ..state import ApiState
from ..tokens import TokenInfo
from .cameras import CameraId, running_camera, visible_camera

__all__ = ["RECHECK_S", "WEBSOCKETS"]

RECHECK_S = 30.0
"""How often an open socket re-checks its token or session (module-level: tests shorten it)."""

_CLOSE = {
    "camera-auth": 4502,
    "codec-unsupported": 4415,
    "camera-offline": 4504,
    "no-stream": 4501,
    "stopping": 1001,
    "internal": 1011,
}
_RETRY = {"camera-auth": False, "codec-unsupported": False, "no-stream": False}
"""Whether a client should try a camera again after the upstream ended with this kind."""
_WATCH_BURST = 32
_WATCH_RATE = 4.0
"""Watches a socket may ask for at once, and per second after: a wall of 16 tiles switching
layout fits; a client looping watch/unwatch (each opens a camera session and two audit
entries) is refused."""
_MAX_MESSAGE = 1024
"""A client's control message is a few dozen bytes; anything longer is refused unread."""


def _json(**message: Any) -> str:
    return msgspec.json.encode(message).decode()


class _ViewAudit:
    """A view's two audit entries: when it starts (status 101) and when it ends (200)."""

    def __init__(self, api: ApiState, socket: WebSocket[Any, Any, Any], camera_id: str) -> None:
        scope = socket.scope
        self.api, self.scope = api, scope
        info: TokenInfo = socket.user
        self.actor = scope.get("nabat.actor") or f"token:{info.id}"
        self.name = info.name
        self.camera_id = camera_id
        self.started = datetime.now(UTC)

    def _record(self, status: int, detail: dict[str, Any]) -> None:
        client = self.scope.get("client")
        self.api.audit.record(
            self.actor,
            f"WATCH /api/v1/cameras/{self.camera_id}/live",
            actor_name=self.name,
            status=status,
            request_id=self.scope.get("nabat.request_id"),
            remote=client[0] if client else None,
            detail={"camera": self.camera_id, "from": self.started.isoformat(), **detail},
        )

    def start(self, via: str) -> None:
        self._record(101, {"via": via})

    def end(self, viewer: Viewer, why: str) -> None:
        ended = datetime.now(UTC)
        self._record(
            200,
            {
                "to": ended.isoformat(),
                "seconds": round((ended - self.started).total_seconds()),
                "bytes": viewer.bytes_sent,
                "end": why[:200],
            },
        )


def _refusal(exc: LimitReached | ProblemError) -> ProblemError:
    if isinstance(exc, ProblemError):
        return exc
    return ProblemError(
        exc.status, str(exc), headers={"Retry-After": "10"}, kind=f"limit-{exc.limit}"
    )


def _view(api: ApiState, info: TokenInfo, camera_id: str, actor: str) -> tuple[str, Viewer]:
    """A new viewer of the camera for this caller; raises the problem that refuses it."""
    rt = visible_camera(api, info, camera_id)
    camera = running_camera(api, rt)
    try:
        return rt.id, api.hub.video.watch(rt.id, camera, user=actor)
    except LimitReached as exc:
        raise _refusal(exc) from None


@websocket("/api/v1/cameras/{camera_id:str}/live", opt={"scope": "cameras:read"})
async def live(
    socket: WebSocket[TokenInfo, Any, Any], api: NamedDependency[ApiState], camera_id: CameraId
) -> None:
    """Live video of one camera as fragmented MP4 over a WebSocket: a JSON ``stream`` message
    with the codec string, the init segment, fragments; JSON ``status`` messages on stall and
    resume; a JSON ``error`` message and a close code when it ends."""
    scope = socket.scope
    actor = scope.get("nabat.actor") or f"token:{socket.user.id}"
    try:
        camera_id, viewer = _view(api, socket.user, camera_id, actor)
    except ProblemError as exc:
        await deny_websocket(scope, socket.receive, socket.send, exc)
        return
    audit = _ViewAudit(api, socket, camera_id)
    audit.start("camera")
    end = "client left"
    try:
        await socket.accept()

        async def send() -> None:
            async for message in viewer.messages():
                if isinstance(message, bytes):
                    await socket.send_bytes(message)
                else:
                    await socket.send_text(message)

        async def receive() -> None:
            while (await socket.receive())["type"] != "websocket.disconnect":
                pass  # the client has nothing to say; only its leaving matters

        tasks = [
            asyncio.ensure_future(send()),
            asyncio.ensure_future(receive()),
            asyncio.ensure_future(api.closing.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if tasks[0] in done and viewer.end is not None:
            end = viewer.end.detail
            with contextlib.suppress(Exception):
                await socket.send_text(
                    _json(type="error", kind=viewer.end.kind, detail=viewer.end.detail)
                )
                await socket.close(_CLOSE.get(viewer.end.kind, 1011), viewer.end.detail[:120])
        elif tasks[2] in done:
            end = "the API is stopping"
            with contextlib.suppress(Exception):
                await socket.close(1001, end)
    finally:
        viewer.close()
        audit.end(viewer, end)


# -- one socket, many cameras -------------------------------------------------------------

Sid = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class Watch(msgspec.Struct, tag_field="op", tag="watch", forbid_unknown_fields=True):
    sid: Sid
    camera: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Unwatch(msgspec.Struct, tag_field="op", tag="unwatch", forbid_unknown_fields=True):
    sid: Sid


_decode = msgspec.json.Decoder(Watch | Unwatch)


class _Stream:
    def __init__(self, viewer: Viewer, audit: _ViewAudit) -> None:
        self.viewer, self.audit = viewer, audit
        self.task: asyncio.Task[None] | None = None
        self.why = "client left"


class _Mux:
    """One console's socket: its streams, each pumped by a task of its own, all sending
    through one lock (a WebSocket sends one message at a time)."""

    def __init__(self, socket: WebSocket[TokenInfo, Any, Any], api: ApiState) -> None:
        self.socket, self.api = socket, api
        self.streams: dict[int, _Stream] = {}
        self.lock = asyncio.Lock()
        self.allowance = float(_WATCH_BURST)
        self.checked = time.monotonic()

    @property
    def actor(self) -> str:
        return self.socket.scope.get("nabat.actor") or f"token:{self.socket.user.id}"

    async def send_text(self, text: str) -> None:
        async with self.lock:
            await self.socket.send_text(text)

    async def refuse(self, sid: int | None, exc: ProblemError) -> None:
        await self.send_text(
            _json(
                sid=sid,
                type="error",
                kind=exc.kind or "refused",
                status=exc.status_code,
                detail=exc.detail,
            )
        )

    async def handle(self, text: str) -> None:
        if len(text) > _MAX_MESSAGE:
            await self.refuse(None, ProblemError(413, "a control message is at most 1 KiB"))
            return
        try:
            command = _decode.decode(text)
        except msgspec.ValidationError as exc:
            await self.refuse(None, ProblemError(422, f"bad message: {exc}", kind="bad-message"))
            return
        except msgspec.DecodeError:
            await self.refuse(None, ProblemError(400, "not JSON", kind="bad-message"))
            return
        if isinstance(command, Watch):
            await self.watch(command)
        else:
            await self.unwatch(command.sid, "client stopped watching", reply=True)

    async def watch(self, command: Watch) -> None:
        sid = command.sid
        if sid in self.streams:
            await self.refuse(sid, ProblemError(409, f"stream {sid} is in use", kind="sid-in-use"))
            return
        now = time.monotonic()
        self.allowance = min(_WATCH_BURST, self.allowance + (now - self.checked) * _WATCH_RATE)
        self.checked = now
        if self.allowance < 1:
            detail = f"at most {_WATCH_RATE:g} watches per second on one socket; retry shortly"
            await self.refuse(sid, ProblemError(429, detail, kind="rate-limited"))
            return
        self.allowance -= 1
        try:
            camera_id, viewer = _view(self.api, self.socket.user, command.camera, self.actor)
        except ProblemError as exc:
            await self.refuse(sid, exc)
            return
        audit = _ViewAudit(self.api, self.socket, camera_id)
        audit.start("mux")
        stream = self.streams[sid] = _Stream(viewer, audit)
        stream.task = asyncio.get_running_loop().create_task(
            self.pump(sid, stream), name=f"live-mux:{sid}"
        )

    async def pump(self, sid: int, stream: _Stream) -> None:
        prefix = sid.to_bytes(4, "big")
        head = f'{{"sid":{sid},'
        viewer = stream.viewer
        try:
            async for message in viewer.messages():
                async with self.lock:
                    if isinstance(message, bytes):
                        await self.socket.send_bytes(prefix + message)
                    else:  # the upstream's JSON object, shared by its viewers: add our sid
                        await self.socket.send_text(head + message[1:])
            end = viewer.end
            if end is not None:
                stream.why = end.detail
                await self.send_text(
                    _json(
                        sid=sid,
                        type="error",
                        kind=end.kind,
                        detail=end.detail,
                        retry=_RETRY.get(end.kind, True),
                    )
                )
        finally:
            self._finish(sid, stream)

    def _finish(self, sid: int, stream: _Stream) -> None:
        if self.streams.get(sid) is stream:
            del self.streams[sid]
        stream.viewer.close()
        stream.audit.end(stream.viewer, stream.why)

    async def unwatch(self, sid: int, why: str, *, reply: bool = False) -> None:
        stream = self.streams.get(sid)
        if stream is None or stream.task is None:
            return
        stream.why = why
        stream.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream.task
        if reply:
            await self.send_text(_json(sid=sid, type="closed"))

    async def recheck(self, opt: dict[str, Any]) -> ProblemError:
        """Every :data:`RECHECK_S`, the caller again: the problem that ends the socket."""
        while True:
            await asyncio.sleep(RECHECK_S)
            try:
                await AccessMiddleware(self.api).authorize(self.socket.scope, opt)
            except ProblemError as exc:
                if exc.status_code in (401, 403):
                    return exc
                continue  # rate-limited: the caller is still who it was
            info: TokenInfo = self.socket.user  # authorize() put the fresh identity there
            for sid, stream in list(self.streams.items()):
                rt = self.api.hub.units.get(stream.viewer.camera_id)
                if rt is None or not info.sees(rt.entry.municipality):
                    await self.unwatch(sid, "no longer visible to the caller")
                    await self.refuse(
                        sid, ProblemError(404, f"no camera {stream.viewer.camera_id!r}")
                    )

    async def close(self) -> None:
        for sid in list(self.streams):
            await self.unwatch(sid, "client left")


@websocket("/api/v1/live", opt={"scope": "cameras:read"})
async def live_mux(socket: WebSocket[TokenInfo, Any, Any], api: NamedDependency[ApiState]) -> None:
    """Live video of many cameras over one WebSocket (docs/video.md): ``watch`` / ``unwatch``
    messages in, ``sid``-tagged JSON and ``sid``-prefixed fMP4 out."""
    await socket.accept()
    mux = _Mux(socket, api)
    opt = socket.scope["route_handler"].opt

    async def read() -> None:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await mux.refuse(None, ProblemError(400, "control messages are JSON text"))
                continue
            await mux.handle(text)

    tasks = [
        asyncio.ensure_future(read()),
        asyncio.ensure_future(api.closing.wait()),
        asyncio.ensure_future(mux.recheck(opt)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if tasks[1] in done or api.hub.video.stopping:
            with contextlib.suppress(Exception):
                await socket.close(1001, "the hub is stopping")
        elif tasks[2] in done and not tasks[2].cancelled() and tasks[2].exception() is None:
            problem = tasks[2].result()
            with contextlib.suppress(Exception):
                await mux.refuse(None, problem)
                await socket.close(4000 + problem.status_code, problem.detail[:120])
    finally:
        await mux.close()


WEBSOCKETS = [live, live_mux]
"""WebSocket routes: not in the OpenAPI document (docs/api.md describes them)."""
