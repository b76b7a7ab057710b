"""Live video: one upstream per camera, shared by all its viewers (see :mod:`nabat.video`)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from ..cameras.credentials import with_credentials
from ..cameras.snapshot import encode_jpeg
from ..config.model import VideoSettings
from ..interfaces import NotSupported
from ..interfaces.camera import Camera, Snapshot
from ..logs import get_logger
from .remux import Failure, Sink, UpstreamSettings, run_upstream

__all__ = ["Fragment", "KeyFragment", "LimitReached", "LiveVideo", "Viewer"]

log = get_logger("nabat.video")


class LimitReached(Exception):
    """A ``[video]`` limit refuses a new viewer; ``status`` is 503 (the hub's capacity) or
    429 (the caller's own share)."""

    def __init__(self, limit: str, value: int, status: int, detail: str) -> None:
        super().__init__(detail)
        self.limit, self.value, self.status = limit, value, status


class Fragment(bytes):
    """A fragment of a recorded camera, with ``at``: when (monotonic) it was cut — what a
    recording stamps it with (it can be handed on seconds later when the camera stops).
    Plain ``bytes`` to everyone else."""

    at: float = 0.0


class KeyFragment(Fragment):
    """A fragment that starts with a key frame: where a recording may begin a new file."""


class _End:
    """The last item of a viewer's queue."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind, self.detail = kind, detail


Item = str | bytes | _End


@dataclass(eq=False)
class Viewer:
    """One viewer: iterate it for text (JSON) and binary (fMP4) messages, then close it."""

    camera_id: str
    user: str
    service: LiveVideo
    started: float = field(default_factory=time.time)
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)
    fragments: int = 0
    """Fragments queued and not yet sent."""
    waiting_key: bool = True
    bytes_sent: int = 0
    dropped: int = 0
    end: _End | None = None
    closed: bool = False
    system: bool = False
    """The hub's own viewer (a recording): outside the ``[video]`` limits of people."""

    async def messages(self) -> AsyncIterator[str | bytes]:
        while True:
            item = await self.queue.get()
            if isinstance(item, _End):
                self.end = item
                return
            if isinstance(item, bytes):
                self.fragments = max(0, self.fragments - 1)
                self.bytes_sent += len(item)
                self.service.bytes_sent += len(item)
            yield item

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.service.leave(self)

    def stop(self, reason: str) -> None:
        """End :meth:`messages` after what is queued (its reader then closes it)."""
        self.queue.put_nowait(_End("stopped", reason))


def _json(**message: Any) -> str:
    return msgspec.json.encode(message).decode()


class _Upstream:
    def __init__(self, service: LiveVideo, camera_id: str) -> None:
        self.service = service
        self.camera_id = camera_id
        self.viewers: set[Viewer] = set()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.header: list[Item] = []  # the stream message and the init segment
        self.gop: list[bytes] = []
        self.ring: deque[Fragment] = deque()
        """Recent fragments from a key fragment on, covering at least ``service.ring_seconds``
        (by their ``at``): a recording that starts now begins that far back."""
        self.key_at = datetime.now(UTC)
        """When the kept GOP's key frame arrived."""
        self.live = False
        self.idle: asyncio.TimerHandle | None = None
        self.failure: Failure | None = None
        self.done = asyncio.get_running_loop().create_future()

    # -- called on the loop (hopped over from the upstream's thread) ------------------------
    def on_stream(self, mime: str, init: bytes, epoch: int) -> None:
        self.header = [_json(type="stream", codec=mime, epoch=epoch, status="live"), init]
        self.gop = []
        self.ring.clear()
        self.live = True
        for viewer in self.viewers:
            viewer.waiting_key = True
            for item in self.header:
                viewer.queue.put_nowait(item)

    def on_fragment(self, data: bytes, key: bool, at: float) -> None:
        self.service.bytes_in += len(data)
        if key or self.recorded or self.service.ring_seconds > 0:
            data = (KeyFragment if key else Fragment)(data)
            data.at = at
        if isinstance(data, Fragment) and self.service.ring_seconds > 0:
            self._keep(data)
        if key:
            self.gop = [data]
            self.key_at = datetime.now(UTC)
        elif self.gop:
            self.gop.append(data)
        limit = self.service.settings.viewer_queue
        for viewer in self.viewers:
            if viewer.waiting_key and not key:
                continue
            if viewer.fragments >= (limit * 8 if viewer.system else limit):
                # A slow viewer (or a disk that stalls a recording): skip to the next key frame.
                viewer.waiting_key = True
                viewer.dropped += 1
                self.service.dropped += 1
                continue
            viewer.waiting_key = False
            viewer.fragments += 1
            viewer.queue.put_nowait(data)

    def on_status(self, state: str, reason: str) -> None:
        if state == "stalled":
            self.service.reconnects += 1
        message = _json(type="status", status=state, reason=reason)
        for viewer in self.viewers:
            viewer.queue.put_nowait(message)

    def on_failed(self, failure: Failure) -> None:
        self.failure = failure
        self.service.forget(self)
        for viewer in list(self.viewers):
            viewer.queue.put_nowait(_End(failure.kind, str(failure)))

    def on_done(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        self.service.closing.discard(self)

    @property
    def recorded(self) -> bool:
        """Held open by a recording (a system viewer)."""
        return any(v.system for v in self.viewers)

    def _keep(self, data: Fragment) -> None:
        ring = self.ring
        if not ring and not isinstance(data, KeyFragment):
            return  # the ring starts at a key frame
        ring.append(data)
        cutoff = data.at - self.service.ring_seconds
        while True:  # a later key fragment old enough makes all before it unneeded
            at = next((i for i in range(1, len(ring)) if isinstance(ring[i], KeyFragment)), 0)
            if not at or ring[at].at > cutoff:
                return
            for _ in range(at):
                ring.popleft()

    def preroll(self, seconds: float) -> list[Fragment]:
        """The ring from the newest key fragment at least ``seconds`` old (else the oldest);
        each fragment's ``at`` says when it was cut."""
        ring = list(self.ring)
        now = time.monotonic()
        start = 0
        for i, data in enumerate(ring):
            if isinstance(data, KeyFragment) and now - data.at >= seconds:
                start = i
        return ring[start:]

    def join(self, viewer: Viewer, preroll: float = 0.0) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self.viewers.add(viewer)
        for item in self.header:
            viewer.queue.put_nowait(item)
        if preroll > 0 and self.ring:  # a recording: from that far back
            viewer.waiting_key = False
            for data in self.preroll(preroll):
                viewer.fragments += 1
                viewer.queue.put_nowait(data)
        elif self.gop:  # the last GOP: a new viewer starts at once, at its key frame
            viewer.waiting_key = False
            for data in self.gop:
                viewer.fragments += 1
                viewer.queue.put_nowait(data)

    def start(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        def hop(fn: Any) -> Any:
            def call(*args: Any) -> None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                    loop.call_soon_threadsafe(fn, *args)

            return call

        sink = Sink(
            stream=hop(self.on_stream),
            fragment=hop(self.on_fragment),
            status=hop(self.on_status),
            failed=hop(self.on_failed),
        )
        done = hop(self.on_done)
        settings = self.service.upstream_settings

        def body() -> None:
            try:
                counters = run_upstream(url, settings, sink, self.stop, self.camera_id)
                log.info("video.upstream_closed", camera=self.camera_id, **counters)
            except Exception as exc:  # a bug, not a camera fault: say so, end the viewers
                log.error("video.upstream_crashed", camera=self.camera_id, exc_info=exc)
                sink.failed(
                    Failure("internal", "the restreamer failed; see the hub's log", final=True)
                )
            finally:
                done()

        self.thread = threading.Thread(target=body, name=f"video:{self.camera_id}", daemon=True)
        self.thread.start()


class LiveVideo:
    """The restreamer: viewers ask for a camera, the first one opens its upstream.

    Built by the hub from its ``[video]`` settings; knows nothing of the hub. The API gives it
    the camera's driver (already authorised) and the viewer's identity."""

    def __init__(self, settings: VideoSettings) -> None:
        self.settings = settings
        self.upstream_settings = UpstreamSettings(
            connect_timeout=settings.connect_timeout,
            stall_timeout=settings.stall_timeout,
            reconnect_initial=settings.reconnect_initial,
            reconnect_max=settings.reconnect_max,
            fragment_duration=settings.fragment_duration,
        )
        self.upstreams: dict[str, _Upstream] = {}
        self.closing: set[_Upstream] = set()
        """Upstreams told to stop whose thread has not ended yet."""
        self.per_user: dict[str, int] = {}
        self.bytes_in = 0
        self.bytes_sent = 0
        self.reconnects = 0
        self.dropped = 0
        self.opened = 0
        self.refused: dict[str, int] = {}
        self.ring_seconds = 0.0
        """Seconds of recent fragments each upstream keeps (a recording's pre-roll)."""
        self.stills = 0
        """Snapshots served from an open stream's key frame."""
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """The hub is stopping: no new viewers."""
        return self._stopping

    # -- what /metrics reads ----------------------------------------------------------------
    def viewers(self) -> int:
        return sum(len(up.viewers) for up in self.upstreams.values())

    def viewers_of(self, camera_id: str) -> int:
        up = self.upstreams.get(camera_id)
        return len(up.viewers) if up else 0

    def connected(self) -> int:
        """Upstream threads running (open RTSP sessions), closing ones included."""
        return sum(
            1
            for up in (*self.upstreams.values(), *self.closing)
            if up.thread is not None and up.thread.is_alive()
        )

    # -- a still from the open stream -------------------------------------------------------
    async def snapshot(self, camera_id: str, *, max_width: int | None = 640) -> Snapshot | None:
        """A JPEG of the last key frame of a camera being streamed, or None when it is not:
        a camera without a snapshot of its own then needs no second RTSP session (which
        would cost it — and, on many cameras, its viewers — a reconnect's pause)."""
        up = self.upstreams.get(camera_id)
        if up is None or not up.live or len(up.header) < 2 or not up.gop:
            return None
        init, key = up.header[1], up.gop[0]
        assert isinstance(init, bytes)
        try:
            # Decoding one key frame: in a thread (PyAV releases the GIL), never on the loop.
            content, width, height = await asyncio.to_thread(_key_frame_jpeg, init, key, max_width)
        except Exception as exc:  # the stream's own snapshot path is the fallback
            log.warning("video.snapshot_failed", camera=camera_id, error=repr(exc))
            return None
        self.stills += 1
        return Snapshot(content=content, taken_at=up.key_at, width=width, height=height)

    # -- viewers ----------------------------------------------------------------------------
    def _refuse(self, limit: str, value: int, status: int, detail: str) -> LimitReached:
        self.refused[limit] = self.refused.get(limit, 0) + 1
        return LimitReached(limit, value, status, detail)

    def watch(
        self,
        camera_id: str,
        camera: Camera,
        *,
        user: str,
        system: bool = False,
        preroll: float = 0.0,
    ) -> Viewer:
        """A new viewer of ``camera_id``; raises :class:`LimitReached` over a limit. The
        caller must :meth:`Viewer.close` it. A ``system`` viewer (a recording) is outside the
        limits, and the upstreams it holds do not count towards ``max_upstreams``: what is
        recorded is the configuration's choice, what is watched the people's. ``preroll``
        (system viewers): start that many seconds back, from the upstream's ring (each
        fragment's ``at`` says when it was cut)."""
        s = self.settings
        if self._stopping:
            raise LimitReached("stopping", 0, 503, "the hub is stopping")
        if system:
            return self._join(camera_id, camera, user, system=True, preroll=preroll)
        if self.per_user.get(user, 0) >= s.max_streams_per_user:
            raise self._refuse(
                "max_streams_per_user",
                s.max_streams_per_user,
                429,
                f"at most {s.max_streams_per_user} live streams per user or token "
                "([video] max_streams_per_user); close one first",
            )
        up = self.upstreams.get(camera_id)
        if up is not None and sum(not v.system for v in up.viewers) >= s.max_viewers_per_camera:
            raise self._refuse(
                "max_viewers_per_camera",
                s.max_viewers_per_camera,
                503,
                f"camera {camera_id} already has {s.max_viewers_per_camera} viewers "
                "([video] max_viewers_per_camera)",
            )
        if up is None:
            watched = sum(1 for u in self.upstreams.values() if not u.recorded)
            if watched >= s.max_upstreams:
                raise self._refuse(
                    "max_upstreams",
                    s.max_upstreams,
                    503,
                    f"the hub already streams {s.max_upstreams} cameras ([video] max_upstreams)",
                )
        return self._join(camera_id, camera, user, system=False)

    def _join(
        self, camera_id: str, camera: Camera, user: str, *, system: bool, preroll: float = 0.0
    ) -> Viewer:
        up = self.upstreams.get(camera_id)
        if up is None:
            up = self.upstreams[camera_id] = _Upstream(self, camera_id)
            self.opened += 1
            task = asyncio.get_running_loop().create_task(
                self._open(up, camera), name=f"video-open:{camera_id}"
            )
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        viewer = Viewer(camera_id=camera_id, user=user, service=self, system=system)
        self.per_user[user] = self.per_user.get(user, 0) + 1
        up.join(viewer, preroll)
        log.info("video.viewer_joined", camera=camera_id, user=user, viewers=len(up.viewers))
        return viewer

    async def _open(self, up: _Upstream, camera: Camera) -> None:
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                url, codec = await live_url(camera)
        except NotSupported as exc:
            detail = f"the camera gives no live stream: {exc}"
            up.on_failed(Failure("no-stream", detail, final=True))
            up.on_done()
            return
        except Exception as exc:
            detail = (
                "no stream address from the camera in time"
                if isinstance(exc, TimeoutError)
                else f"no stream address from the camera: {exc}"
            )
            up.on_failed(Failure("camera-offline", detail, final=True))
            up.on_done()
            return
        if codec in ("H265", "HEVC"):
            up.on_failed(
                Failure(
                    "codec-unsupported",
                    "the camera's live profile is H.265 (HEVC), which browsers cannot play; give "
                    "the hub an H.264 stream or sub-stream (ONVIF: live_profile)",
                    final=True,
                )
            )
            up.on_done()
            return
        if up.stop.is_set():  # every viewer left while the address was asked for
            up.on_done()
            return
        up.start(url, asyncio.get_running_loop())

    def leave(self, viewer: Viewer) -> None:
        left = self.per_user.get(viewer.user, 1) - 1
        if left > 0:
            self.per_user[viewer.user] = left
        else:
            self.per_user.pop(viewer.user, None)
        up = self.upstreams.get(viewer.camera_id)
        if up is None or viewer not in up.viewers:
            return
        up.viewers.discard(viewer)
        log.info(
            "video.viewer_left",
            camera=viewer.camera_id,
            user=viewer.user,
            viewers=len(up.viewers),
            bytes=viewer.bytes_sent,
        )
        if not up.viewers:
            up.idle = asyncio.get_running_loop().call_later(
                self.settings.idle_close, self._close_idle, up
            )

    def _close_idle(self, up: _Upstream) -> None:
        if up.viewers or self.upstreams.get(up.camera_id) is not up:
            return
        self.forget(up)

    def forget(self, up: _Upstream) -> None:
        """Stop ``up`` (its thread ends within a packet or ``stall_timeout``)."""
        if self.upstreams.get(up.camera_id) is up:
            del self.upstreams[up.camera_id]
        up.stop.set()
        if up.thread is not None and not up.done.done():
            self.closing.add(up)
        elif up.thread is None and not up.done.done():
            up.done.set_result(None)

    async def close(self) -> None:
        """End every viewer and upstream (the hub is stopping)."""
        self._stopping = True
        ups = [*self.upstreams.values(), *self.closing]
        for up in list(self.upstreams.values()):
            for viewer in up.viewers:
                viewer.queue.put_nowait(_End("stopping", "the hub is stopping"))
            self.forget(up)
        waiting = [up.done for up in ups if up.thread is not None]
        if waiting:
            timeout = self.settings.stall_timeout + self.settings.connect_timeout
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*waiting)


async def live_url(camera: Camera) -> tuple[str, str | None]:
    """The camera's live stream URL with its credentials, and the live profile's codec if
    the driver knows it: the profile whose ``roles`` include ``live`` (ONVIF), else the main
    stream."""
    profiles = await camera.profiles()
    live = next((p for p in profiles if "live" in p.roles), None)
    uri = await camera.stream_uri(live.token if live else None)
    return with_credentials(camera, uri.uri), (
        live.encoding.upper() if live and live.encoding else None
    )


def _key_frame_jpeg(init: bytes, fragment: bytes, max_width: int | None) -> tuple[bytes, int, int]:
    import av

    with av.open(io.BytesIO(init + fragment), format="mp4") as container:
        for frame in container.decode(video=0):
            return encode_jpeg(frame, max_width=max_width), frame.width, frame.height
    raise ValueError("the key frame's fragment held no picture")
