"""Live video: one upstream per camera, shared by all its viewers (see :mod:`nabat.video`)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from ..cameras.credentials import with_credentials
from ..cameras.snapshot import encode_jpeg
from ..config.model import VideoSettings
from ..interfaces import NotSupported
from ..interfaces.camera import Camera, Snapshot
from ..logs import get_logger
from .remux import Failure, Sink, UpstreamSettings
from .workers import InProcess, UpstreamHost, VideoWorkers, default_workers

__all__ = ["LimitReached", "LiveVideo", "Ring", "Tap", "Viewer"]

log = get_logger("nabat.video")


class LimitReached(Exception):
    """A ``[video]`` limit refuses a new viewer; ``status`` is 503 (the hub's capacity) or
    429 (the caller's own share)."""

    def __init__(self, limit: str, value: int, status: int, detail: str) -> None:
        super().__init__(detail)
        self.limit, self.value, self.status = limit, value, status


class Tap(Protocol):
    """A consumer the upstream calls on its own thread (a recording): no hop onto the event
    loop per fragment. Calls come one at a time, in the stream's order; they must be quick
    (hand blocking work on: one thread serves every camera of a video worker) and may come
    after the tap's viewer left (ignore them then). One that raises is logged and skipped,
    never the upstream's end."""

    def begin(self, header: tuple[str, bytes, int] | None, backlog: list[Ring]) -> None:
        """Joined (on the loop, under the upstream's lock): the current stream's (MIME type,
        init segment, epoch) if it began, and the pre-roll asked for from the ring."""

    def stream(self, mime: str, init: bytes, epoch: int) -> None:
        """A new fMP4 stream begins (a new configuration after a reconnect)."""

    def fragment(self, data: bytes, key: bool, at: float) -> None:
        """Fragments (``moof`` + ``mdat``…); ``key``: they start with a key frame; ``at``: when
        (monotonic) the last of them was cut."""

    def status(self, state: str, reason: str) -> None:
        """``live`` or ``stalled`` (the camera stopped sending)."""


Ring = tuple[bytes, bool, float]
"""A fragment kept for pre-roll: (data, starts with a key frame, when it was cut)."""


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
    tap: Tap | None = None
    """Takes the stream on the upstream's thread instead of this viewer's queue (which then
    carries only status messages and the end)."""
    after: int = 0
    """The upstream's sequence number this viewer's start covered (the kept header and GOP):
    what was posted to the loop before it joined is not sent twice."""

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
    """One camera's upstream and its viewers.

    The upstream runs in a video worker process (:mod:`nabat.video.workers`); its output
    comes in on that worker's reader thread ("the upstream's thread" below), which keeps
    what a new viewer starts from (the stream's header, its last GOP, the pre-roll ring)
    under :attr:`lock`, calls the taps (recordings) itself, and posts
    to the event loop only while a viewer with a queue (a person) is there: a camera only
    recorded costs the loop nothing per fragment. Each thing posted carries a sequence number
    so that a viewer whose start already covered it (it joined between the post and its
    running) does not get it twice."""

    def __init__(self, service: LiveVideo, camera_id: str) -> None:
        self.service = service
        self.camera_id = camera_id
        self.viewers: set[Viewer] = set()
        self.stopped = False
        """Told to stop (every viewer left, or the hub stops)."""
        self.stopper: Callable[[], None] | None = None
        """Stops the upstream, once it is started."""
        self.loop = asyncio.get_running_loop()
        self.lock = threading.Lock()
        # -- under the lock (written by the upstream's thread) --
        self.header: tuple[str, bytes, int] | None = None
        """(MIME type with codecs, init segment, epoch) of the current stream."""
        self.gop: list[bytes] = []
        self.ring: deque[Ring] = deque()
        """Recent fragments from a key fragment on, covering at least ``service.ring_seconds``
        (by their cut time): a recording that starts now begins that far back."""
        self.key_at = datetime.now(UTC)
        """When the kept GOP's key frame arrived."""
        self.seq = 0
        self.epochs = 0
        """Streams begun: the epoch viewers see grows even when a new worker starts over."""
        self.bytes_in = 0
        self.taps: tuple[Tap, ...] = ()
        self.watching = 0
        """Viewers with a queue: while none, nothing is posted to the loop per fragment."""
        # -- on the loop --
        self.live = False
        self.idle: asyncio.TimerHandle | None = None
        self.failure: Failure | None = None
        self.done = self.loop.create_future()

    # -- called on the upstream's thread ----------------------------------------------------
    def _post(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self.loop.call_soon_threadsafe(fn, *args)

    def _tap(self, tap: Tap, method: str, *args: Any) -> None:
        try:
            getattr(tap, method)(*args)
        except Exception as exc:  # a recording's bug: that recording, not the stream
            log.error("video.tap_failed", camera=self.camera_id, call=method, exc_info=exc)

    def t_stream(self, mime: str, init: bytes, _epoch: int) -> None:
        with self.lock:
            self.seq += 1
            self.epochs += 1
            seq, epoch = self.seq, self.epochs
            self.header = (mime, init, epoch)
            self.gop = []
            self.ring.clear()
            taps = self.taps
        for tap in taps:
            self._tap(tap, "stream", mime, init, epoch)
        self._post(self.on_stream, mime, init, epoch, seq)

    def t_fragment(self, data: bytes, key: bool, at: float) -> None:
        ring_seconds = self.service.ring_seconds
        with self.lock:
            self.seq += 1
            seq = self.seq
            self.bytes_in += len(data)
            if key:
                self.gop = [data]
                self.key_at = datetime.now(UTC)
            elif self.gop:
                self.gop.append(data)
            if ring_seconds > 0:
                self._keep((data, key, at), ring_seconds)
            taps, watching = self.taps, self.watching
        for tap in taps:
            self._tap(tap, "fragment", data, key, at)
        if watching:
            self._post(self.on_fragment, data, key, seq)

    def t_status(self, state: str, reason: str) -> None:
        with self.lock:
            taps = self.taps
        for tap in taps:
            self._tap(tap, "status", state, reason)
        self._post(self.on_status, state, reason)

    def _keep(self, item: Ring, seconds: float) -> None:
        ring = self.ring
        if not ring and not item[1]:
            return  # the ring starts at a key frame
        ring.append(item)
        cutoff = item[2] - seconds
        while True:  # a later key fragment old enough makes all before it unneeded
            at = next((i for i in range(1, len(ring)) if ring[i][1]), 0)
            if not at or ring[at][2] > cutoff:
                return
            for _ in range(at):
                ring.popleft()

    # -- on the loop ------------------------------------------------------------------------
    def on_stream(self, mime: str, init: bytes, epoch: int, seq: int) -> None:
        self.live = True
        message = _json(type="stream", codec=mime, epoch=epoch, status="live")
        for viewer in self.viewers:
            if viewer.tap is not None or viewer.after >= seq:
                continue
            viewer.waiting_key = True
            viewer.queue.put_nowait(message)
            viewer.queue.put_nowait(init)

    def on_fragment(self, data: bytes, key: bool, seq: int) -> None:
        limit = self.service.settings.viewer_queue
        for viewer in self.viewers:
            if viewer.tap is not None or viewer.after >= seq:
                continue
            if viewer.waiting_key and not key:
                continue
            if viewer.fragments >= limit:
                # A slow viewer: skip to the next key frame.
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

    def kept(self) -> tuple[tuple[str, bytes, int] | None, bytes | None, datetime]:
        """(header, the last GOP's key fragment, when it came): for a still."""
        with self.lock:
            return self.header, (self.gop[0] if self.gop else None), self.key_at

    def _preroll(self, seconds: float) -> list[Ring]:
        """The ring from the newest key fragment at least ``seconds`` old (else the oldest)."""
        ring = list(self.ring)
        now = time.monotonic()
        start = 0
        for i, (_, key, at) in enumerate(ring):
            if key and now - at >= seconds:
                start = i
        return ring[start:]

    def join(self, viewer: Viewer, preroll: float = 0.0) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self.viewers.add(viewer)
        tap = viewer.tap
        with self.lock:
            viewer.after = self.seq
            header, gop = self.header, list(self.gop)
            if tap is not None:
                backlog = self._preroll(preroll) if preroll > 0 else []
                self._tap(tap, "begin", header, backlog)
                self.taps = (*self.taps, tap)
            else:
                self.watching += 1
        if tap is not None or header is None:
            return
        mime, init, epoch = header
        viewer.queue.put_nowait(_json(type="stream", codec=mime, epoch=epoch, status="live"))
        viewer.queue.put_nowait(init)
        if gop:  # the last GOP: a new viewer starts at once, at its key frame
            viewer.waiting_key = False
            for data in gop:
                viewer.fragments += 1
                viewer.queue.put_nowait(data)

    def part(self, viewer: Viewer) -> None:
        """``viewer`` leaves: its tap is called no more once this returns (but for a call
        already under way on the upstream's thread)."""
        self.viewers.discard(viewer)
        with self.lock:
            if viewer.tap is not None:
                self.taps = tuple(t for t in self.taps if t is not viewer.tap)
            else:
                self.watching -= 1

    def start(self, url: str) -> None:
        sink = Sink(
            stream=self.t_stream,
            fragment=self.t_fragment,
            status=self.t_status,
            failed=lambda failure: self._post(self.on_failed, failure),
        )
        self.stopper = self.service.host.start(
            self.camera_id,
            url,
            self.service.upstream_settings,
            sink,
            lambda: self._post(self.on_done),
        )

    @property
    def running(self) -> bool:
        """Started and not yet ended (an open RTSP session, or one being retried)."""
        return self.stopper is not None and not self.done.done()

    def halt(self) -> None:
        self.stopped = True
        if self.stopper is not None:
            self.stopper()


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
        workers = default_workers() if settings.workers is None else settings.workers
        self.host: UpstreamHost = VideoWorkers(workers) if workers else InProcess()
        self.upstreams: dict[str, _Upstream] = {}
        self.closing: set[_Upstream] = set()
        """Upstreams told to stop that have not ended yet."""
        self.per_user: dict[str, int] = {}
        self.bytes_closed = 0
        """fMP4 bytes of upstreams gone (their own count is on each)."""
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
    @property
    def bytes_in(self) -> int:
        """fMP4 bytes the upstreams produced."""
        return self.bytes_closed + sum(up.bytes_in for up in self.upstreams.values())

    def viewers(self) -> int:
        return sum(len(up.viewers) for up in self.upstreams.values())

    def viewers_of(self, camera_id: str) -> int:
        up = self.upstreams.get(camera_id)
        return len(up.viewers) if up else 0

    def connected(self) -> int:
        """Upstreams running (open RTSP sessions), closing ones included."""
        return sum(1 for up in (*self.upstreams.values(), *self.closing) if up.running)

    @property
    def worker_restarts(self) -> int:
        """Upstreams opened again because their worker process died."""
        return self.host.restarts

    # -- a still from the open stream -------------------------------------------------------
    async def snapshot(self, camera_id: str, *, max_width: int | None = 640) -> Snapshot | None:
        """A JPEG of the last key frame of a camera being streamed, or None when it is not:
        a camera without a snapshot of its own then needs no second RTSP session (which
        would cost it — and, on many cameras, its viewers — a reconnect's pause)."""
        up = self.upstreams.get(camera_id)
        if up is None or not up.live:
            return None
        header, key, key_at = up.kept()
        if header is None or key is None:
            return None
        init = header[1]
        try:
            # Decoding one key frame: in a thread (PyAV releases the GIL), never on the loop.
            content, width, height = await asyncio.to_thread(_key_frame_jpeg, init, key, max_width)
        except Exception as exc:  # the stream's own snapshot path is the fallback
            log.warning("video.snapshot_failed", camera=camera_id, error=repr(exc))
            return None
        self.stills += 1
        return Snapshot(content=content, taken_at=key_at, width=width, height=height)

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
        tap: Tap | None = None,
    ) -> Viewer:
        """A new viewer of ``camera_id``; raises :class:`LimitReached` over a limit. The
        caller must :meth:`Viewer.close` it. A ``system`` viewer (a recording) is outside the
        limits, and the upstreams it holds do not count towards ``max_upstreams``: what is
        recorded is the configuration's choice, what is watched the people's; it takes the
        stream through its ``tap``, on the upstream's thread, starting ``preroll`` seconds
        back (from the upstream's ring)."""
        s = self.settings
        if self._stopping:
            raise LimitReached("stopping", 0, 503, "the hub is stopping")
        if system:
            if tap is None:
                raise ValueError("a system viewer takes the stream through a tap")
            return self._join(camera_id, camera, user, tap=tap, preroll=preroll)
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
        return self._join(camera_id, camera, user)

    def _join(
        self,
        camera_id: str,
        camera: Camera,
        user: str,
        *,
        tap: Tap | None = None,
        preroll: float = 0.0,
    ) -> Viewer:
        up = self.upstreams.get(camera_id)
        if up is None:
            up = self.upstreams[camera_id] = _Upstream(self, camera_id)
            self.opened += 1
            task = asyncio.get_running_loop().create_task(
                self._open(up, camera), name=f"video-open:{camera_id}"
            )
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        viewer = Viewer(
            camera_id=camera_id, user=user, service=self, system=tap is not None, tap=tap
        )
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
        if up.stopped:  # every viewer left while the address was asked for
            up.on_done()
            return
        up.start(url)

    def leave(self, viewer: Viewer) -> None:
        left = self.per_user.get(viewer.user, 1) - 1
        if left > 0:
            self.per_user[viewer.user] = left
        else:
            self.per_user.pop(viewer.user, None)
        up = self.upstreams.get(viewer.camera_id)
        if up is None or viewer not in up.viewers:
            return
        up.part(viewer)
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
        """Stop ``up`` (it ends within a packet or ``stall_timeout``)."""
        if self.upstreams.get(up.camera_id) is up:
            del self.upstreams[up.camera_id]
            self.bytes_closed += up.bytes_in
        up.halt()
        if up.running:
            self.closing.add(up)
        elif not up.done.done():
            up.done.set_result(None)

    async def close(self) -> None:
        """End every viewer and upstream (the hub is stopping)."""
        self._stopping = True
        ups = [*self.upstreams.values(), *self.closing]
        for up in list(self.upstreams.values()):
            for viewer in up.viewers:
                viewer.queue.put_nowait(_End("stopping", "the hub is stopping"))
            self.forget(up)
        waiting = [up.done for up in ups if up.running]
        if waiting:
            timeout = self.settings.stall_timeout + self.settings.connect_timeout
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*waiting)
        await asyncio.to_thread(self.host.close)


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
