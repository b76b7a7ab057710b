"""One camera's upstream: RTSP in, fragmented MP4 out, remuxed (``codec copy``), never decoded.

:func:`run_upstream` is blocking and runs in a thread of its own (see :mod:`nabat.video`). It
opens the camera's stream with FFmpeg (PyAV), checks that the video is H.264, and hands every
packet to FFmpeg's ``mp4`` muxer in fragmented mode: the init segment (``ftyp`` + ``moov``)
first, then a fragment (``moof`` + ``mdat``) at each key frame and every :data:`MUX_FRAGMENT`
seconds in between. Fragments are handed on in **batches** (several ``moof`` + ``mdat`` in one
message, which Media Source Extensions and MP4 readers take as they take one) of at most
``fragment_duration`` seconds, a batch never spanning a key frame — so a viewer gets a
message per ``fragment_duration`` (the hub's cost per message and viewer stays that of
``fragment_duration`` fragments), while during the first :data:`YOUNG_S` of a stream every
fragment goes at once: a viewer who just clicked waits for the camera's key frame and
``MUX_FRAGMENT``, not a whole ``fragment_duration``. (FFmpeg holds a fragment's packets until
it is cut, and its muxer cannot change its fragment length once started.)

When the camera stops sending (no packet for ``stall_timeout``), ends the stream or drops the
connection, the upstream reports ``stalled`` and reconnects with exponential backoff until
stopped. A reconnected stream with the same codec configuration goes on in the *same* fMP4
stream (timestamps rebased to continue where the last packet ended), so viewers keep their
decoder; a changed configuration starts a new epoch (new codec string and init segment).
Credentials refused and a codec browsers cannot play are final: retrying would not help.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..logs import get_logger
from ..masking import without_userinfo
from .fmp4 import BoxSplitter, mime_type

__all__ = ["MUX_FRAGMENT", "YOUNG_S", "Failure", "Sink", "UpstreamSettings", "run_upstream"]

MUX_FRAGMENT = 0.1
"""Seconds of the muxer's own fragments within a GOP (the batches are ``fragment_duration``)."""
YOUNG_S = 1.5
"""After a stream (re)starts, fragments go one by one this long: the first picture sooner."""

log = get_logger("nabat.video")


@dataclass(frozen=True)
class UpstreamSettings:
    transport: str = "tcp"
    connect_timeout: float = 10.0
    stall_timeout: float = 5.0
    reconnect_initial: float = 1.0
    reconnect_max: float = 30.0
    fragment_duration: float = 0.5


class Failure(Exception):
    """Why a camera cannot be served: ``kind`` for machines, the message for people."""

    def __init__(self, kind: str, detail: str, *, final: bool) -> None:
        super().__init__(detail)
        self.kind = kind
        self.final = final


@dataclass
class Sink:
    """Where the upstream's output goes; each callable is called on the upstream's thread
    (the service keeps what a new viewer needs and posts to the event loop what its viewers
    get)."""

    stream: Callable[[str, bytes, int], None]
    """(MIME type with codecs, init segment, epoch): a new fMP4 stream begins."""
    fragment: Callable[[bytes, bool, float], None]
    """(moof+mdat…, starts with a key frame, when (monotonic) its last fragment was cut: a
    batch handed on late — the camera stopped — still says when its video was)."""
    status: Callable[[str, str], None]
    """(state: ``live`` | ``stalled``, reason)."""
    failed: Callable[[Failure], None]
    """A final failure: the upstream ends after it."""


class _Writer:
    """The file the muxer writes into: bytes go straight to the splitter."""

    def __init__(self) -> None:
        self.splitter = BoxSplitter()
        self.done: list[tuple[str, bytes]] = []

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.done += self.splitter.feed(chunk)
        return len(chunk)


def _reason(exc: BaseException, url: str) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).replace(url, without_userinfo(url))


def classify(exc: BaseException, url: str) -> Failure:
    """An FFmpeg error as an operator-readable :class:`Failure` (never the password)."""
    import av

    if isinstance(exc, Failure):
        return exc
    reason = _reason(exc, url)
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return Failure("camera-auth", f"the camera refused the credentials ({reason})", final=True)
    if isinstance(exc, av.error.HTTPNotFoundError):
        return Failure("camera-offline", f"the camera has no such stream ({reason})", final=False)
    if isinstance(exc, av.error.ExitError | TimeoutError):
        return Failure("camera-stalled", "no video from the camera in time", final=False)
    if isinstance(exc, OSError):
        return Failure("camera-offline", f"the camera is unreachable ({reason})", final=False)
    return Failure("camera-error", f"the camera's stream failed ({reason})", final=False)


def check_codec(name: str) -> None:
    if name == "h264":
        return
    if name in ("hevc", "h265"):
        raise Failure(
            "codec-unsupported",
            "the camera sends H.265 (HEVC), which browsers cannot play; give the hub an "
            "H.264 stream or sub-stream (ONVIF: live_profile)",
            final=True,
        )
    raise Failure(
        "codec-unsupported",
        f"the camera sends {name or 'an unknown codec'}; live video needs H.264 (configure "
        "an H.264 stream or sub-stream)",
        final=True,
    )


class _Output:
    """The fMP4 muxer of one epoch, with the timeline it has reached."""

    def __init__(self, template: Any, settings: UpstreamSettings, epoch: int) -> None:
        import av

        self.writer = _Writer()
        options = {
            "movflags": "empty_moov+default_base_moof+frag_keyframe",
            "frag_duration": str(int(min(MUX_FRAGMENT, settings.fragment_duration) * 1_000_000)),
        }
        self.container = av.open(self.writer, "w", format="mp4", options=options)
        self.stream = self.container.add_stream_from_template(template)
        self.extradata = bytes(template.codec_context.extradata or b"")
        self.size = (template.codec_context.width, template.codec_context.height)
        self.time_base = template.time_base
        self.epoch = epoch
        self.next_dts: int | None = None
        """Where the next packet's dts goes (input time base), after a reconnect."""
        self.last_dts: int | None = None
        self.step = 0
        self.keys: list[bool] = []
        self.announced = False
        self.batch: list[bytes] = []
        self.batch_key = False
        self.batch_since = 0.0
        self.batch_last = 0.0
        self.young_until = 0.0
        """Until when (monotonic) fragments go one by one: a stream just (re)started."""

    def hand_on(self, sink: Sink, data: bytes, key: bool, limit: float) -> None:
        """Batch ``data`` (one fragment) and hand a batch on when it is due: before a key
        fragment (a batch starts at most at one), after ``limit`` seconds, or at once while
        the stream is young."""
        now = time.monotonic()
        if key and self.batch:
            self.flush(sink)
        if not self.batch:
            self.batch_key, self.batch_since = key, now
        self.batch.append(data)
        self.batch_last = now
        if now < self.young_until or now - self.batch_since >= limit - MUX_FRAGMENT / 2:
            self.flush(sink)

    def flush(self, sink: Sink) -> None:
        if self.batch:
            data = self.batch[0] if len(self.batch) == 1 else b"".join(self.batch)
            self.batch = []
            sink.fragment(data, self.batch_key, self.batch_last)

    def compatible(self, video: Any) -> bool:
        return (
            bytes(video.codec_context.extradata or b"") == self.extradata
            and (video.codec_context.width, video.codec_context.height) == self.size
            and video.time_base == self.time_base
        )

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # the trailer of a live stream is of no use to anyone
            pass


def _timestamped(packets: Any, video: Any, *, hold: int = 250) -> Any:
    """``packets`` (of ``video``), each with a dts and a pts, empty ones left out.

    FFmpeg's RTSP demuxer gives no timestamps to the packets it read before it could place
    them on the stream's clock (those buffered while probing the stream: the first key frame
    among them), and the muxer cannot take a packet without one. Dropping them, as the first
    version did, threw away the first GOP: a second of video at every connect, and the whole
    stream of a camera that sends one GOP and ends. As ``ffmpeg -c copy`` does, a missing dts
    is the pts (no B-frames) or the previous dts plus a frame; the packets before the first
    timestamp are placed a frame apart before it (at most ``hold`` of them are held)."""
    rate = video.guessed_rate or video.average_rate or 25
    step = max(1, round(1 / (rate * video.time_base))) if video.time_base else 1
    reorders = bool(getattr(video.codec_context, "has_b_frames", 0))
    pending: list[Any] = []
    last: int | None = None

    def placed(packet: Any, dts: int) -> Any:
        packet.dts = dts
        if packet.pts is None:
            packet.pts = dts
        return packet

    for packet in packets:
        if packet.size == 0:
            continue  # a demuxer's flush packet
        if packet.dts is not None:
            dts = packet.dts
        elif packet.pts is not None and not reorders:
            dts = packet.pts
        elif last is not None:
            dts = last + step
        elif len(pending) < hold:
            pending.append(packet)
            continue
        else:  # never a timestamp: a timeline of our own
            dts = len(pending) * step
        for i, early in enumerate(pending):
            yield placed(early, dts - (len(pending) - i) * step)
        pending = []
        last = dts
        yield placed(packet, dts)


def _sleep(stop: threading.Event, seconds: float) -> bool:
    """Wait ``seconds`` unless stopped; True if stopped."""
    return stop.wait(seconds)


def run_upstream(
    url: str, settings: UpstreamSettings, sink: Sink, stop: threading.Event, name: str
) -> dict[str, int]:
    """Stream ``url`` into ``sink`` until ``stop`` is set or a final failure; returns counters
    (``bytes_in``, ``reconnects``) for the caller's log."""
    import av

    safe = without_userinfo(url)
    options = {"analyzeduration": "500000", "probesize": "500000"}
    if url.startswith("rtsp"):
        options["rtsp_transport"] = settings.transport
    delay = settings.reconnect_initial
    output: _Output | None = None
    epoch = 0
    counters = {"bytes_in": 0, "reconnects": 0, "connects": 0}
    stalled = False
    try:
        while not stop.is_set():
            container = None
            try:
                started = time.monotonic()
                container = av.open(
                    url,
                    options=options,
                    timeout=(settings.connect_timeout, settings.stall_timeout),
                )
                video = next((s for s in container.streams if s.type == "video"), None)
                if video is None:
                    raise Failure("codec-unsupported", "the stream carries no video", final=True)
                check_codec(video.codec_context.name)
                counters["connects"] += 1
                log.info(
                    "video.upstream_open",
                    camera=name,
                    url=safe,
                    ms=round((time.monotonic() - started) * 1000),
                )
                if output is not None and not output.compatible(video):
                    output.flush(sink)
                    output.close()
                    output = None
                if output is None:
                    epoch += 1
                    output = _Output(video, settings, epoch)
                else:
                    output.next_dts = (
                        None if output.last_dts is None else output.last_dts + max(1, output.step)
                    )
                output.young_until = time.monotonic() + YOUNG_S
                offset: int | None = None
                for packet in _timestamped(container.demux(video), video):
                    if stop.is_set():
                        return counters
                    if offset is None:
                        if not packet.is_keyframe:
                            continue  # a viewer's decoder starts at a key frame
                        offset = 0 if output.next_dts is None else output.next_dts - packet.dts
                        if stalled:
                            stalled = False
                            sink.status("live", "the camera sends again")
                        delay = settings.reconnect_initial
                    counters["bytes_in"] += packet.size
                    dts = packet.dts + offset
                    if output.last_dts is not None and dts <= output.last_dts:
                        continue  # not monotonic (a camera's clock jump): drop, not corrupt
                    pts = packet.pts + offset if packet.pts is not None else dts
                    if output.last_dts is not None:
                        output.step = dts - output.last_dts
                    packet.dts, packet.pts = dts, pts
                    output.last_dts = dts
                    keys = output.keys
                    packet.stream = output.stream
                    output.container.mux(packet)
                    for kind, data in output.writer.done:
                        if kind == "init":
                            sink.stream(mime_type(data), data, output.epoch)
                        else:
                            output.hand_on(
                                sink, data, bool(keys and keys[0]), settings.fragment_duration
                            )
                            keys = []
                    if output.writer.done:
                        output.writer.done = []
                        output.keys = keys
                    output.keys.append(bool(packet.is_keyframe))
                raise Failure("camera-ended", "the camera ended the stream", final=False)
            except Exception as exc:
                if output is not None:
                    output.flush(sink)  # what the camera sent before it went away
                failure = classify(exc, url)
                if stop.is_set():
                    return counters
                if failure.final:
                    log.warning(
                        "video.upstream_failed",
                        camera=name,
                        url=safe,
                        kind=failure.kind,
                        reason=str(failure),
                    )
                    sink.failed(failure)
                    return counters
                log.warning(
                    "video.upstream_stalled",
                    camera=name,
                    url=safe,
                    kind=failure.kind,
                    reason=str(failure),
                    retry_in=delay,
                )
                stalled = True
                counters["reconnects"] += 1
                sink.status("stalled", f"{failure}; reconnecting in {delay:g} s")
            finally:
                if container is not None:
                    try:
                        container.close()
                    except Exception:
                        pass
            if _sleep(stop, delay):
                return counters
            delay = min(settings.reconnect_max, delay * 2)
        return counters
    finally:
        if output is not None:
            output.close()
