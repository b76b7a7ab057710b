"""Stream health: open a camera's stream, decode a few frames, say honestly whether it works.

"Reachable" is not "working". A probe connects (RTSP over TCP by default, or HTTP), skips the
encoder's warm-up frames, decodes a handful more off the event loop, and classifies:

* ``ok`` — frames decode and change;
* ``black`` — frames decode but are (near) black: mean luma and its 99th percentile are low;
* ``frozen`` — frames decode but do not change (a stuck encoder, a still picture);
* ``no_signal`` — the stream opens but yields no decodable frames in time;
* ``unreachable`` — refused, timed out, no route, DNS;
* ``auth_failed`` — credentials rejected (401);
* ``unsupported_codec`` — no decoder for the stream, or no video in it.

Frames are measured at 64×36 grey (FFmpeg's scaler), so no image library is needed and a
probe costs little CPU beyond decoding. Every result carries the reason in words an operator
understands, the same as a stable ``reason_code`` for consoles' catalogs (no address in
either: an operator needs no internal URL), and what was measured (codec, resolution, fps, time
to the first frame).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from ..interfaces.camera import CameraHealth, HealthState
from ..masking import mask_urls

__all__ = [
    "FRAMES_REASON_CODE",
    "FrameStats",
    "ProbeSettings",
    "classify_frames",
    "frame_stats",
    "luma_thumbnail",
    "mask_urls",
    "probe_stream",
]

_THUMB_W, _THUMB_H = 64, 36


class ProbeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to probe one stream; defaults suit RTSP cameras on a district network."""

    transport: Literal["tcp", "udp"] = "tcp"
    """RTSP transport; TCP passes firewalls and NAT and loses nothing on loopback."""
    connect_timeout: float = 5.0
    read_timeout: float = 5.0
    """Longest wait for any one packet once connected."""
    max_duration: float = 12.0
    """Whole-probe limit: a stream that trickles frames cannot hold a probe slot forever."""
    warmup_frames: int = 3
    """Decoded frames skipped first: a fresh encoder session's first frames differ."""
    sample_frames: int = 5
    black_luma: float = 20.0
    """Mean luma (0-255) below which, with a dark 99th percentile, a picture is black."""
    black_p99: float = 40.0
    frozen_diff: float = 0.6
    """Mean absolute luma difference between consecutive sampled frames below which the
    picture is frozen (sensor noise alone keeps a live camera above ~1)."""

    @classmethod
    def for_camera(cls, settings: Any, timeout: float) -> ProbeSettings:
        """A driver's probe settings: its ``transport``, ``connect_timeout``,
        ``read_timeout``, ``warmup_frames`` and ``sample_frames``, the whole probe bounded a
        second inside the instance's ``timeout``."""
        return cls(
            transport=settings.transport,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_duration=max(1.0, timeout - 1.0),
            warmup_frames=settings.warmup_frames,
            sample_frames=settings.sample_frames,
        )


class FrameStats(msgspec.Struct, frozen=True):
    mean: float
    p99: float
    diff: float | None
    """Mean absolute difference to the previous sampled frame."""


def luma_thumbnail(frame: Any) -> bytes:
    """The frame as 64x36 grey bytes (row by row), what the classification measures."""
    small = frame.reformat(width=_THUMB_W, height=_THUMB_H, format="gray")
    plane = small.planes[0]
    data = bytes(plane)
    stride = plane.line_size
    if stride == _THUMB_W:
        return data
    return b"".join(data[row * stride : row * stride + _THUMB_W] for row in range(_THUMB_H))


def frame_stats(luma: bytes, previous: bytes | None) -> FrameStats:
    n = len(luma)
    mean = sum(luma) / n
    p99 = sorted(luma)[int(n * 0.99) - 1]
    diff = None
    if previous is not None:
        diff = sum(abs(a - b) for a, b in zip(luma, previous, strict=True)) / n
    return FrameStats(mean=mean, p99=float(p99), diff=diff)


FRAMES_REASON_CODE = {
    HealthState.OK: "picture_changing",
    HealthState.BLACK: "black_picture",
    HealthState.FROZEN: "frozen_picture",
    HealthState.NO_SIGNAL: "no_frames",
}
"""The ``reason_code`` of each verdict :func:`classify_frames` gives."""


def classify_frames(stats: list[FrameStats], settings: ProbeSettings) -> tuple[HealthState, str]:
    """The verdict on sampled frames (warm-up already skipped)."""
    if not stats:
        return HealthState.NO_SIGNAL, "the stream opened but delivered no decodable frame"
    mean = sum(s.mean for s in stats) / len(stats)
    p99 = max(s.p99 for s in stats)
    if mean < settings.black_luma and p99 < settings.black_p99:
        return HealthState.BLACK, f"black picture: mean luma {mean:.0f}/255"
    diffs = [s.diff for s in stats if s.diff is not None]
    if diffs and max(diffs) < settings.frozen_diff:
        return HealthState.FROZEN, (
            f"frozen picture: {len(stats)} frames differ by at most {max(diffs):.2f}/255"
        )
    return HealthState.OK, f"{len(stats)} frames decoded, picture changing"


def _classify_error(exc: BaseException) -> tuple[HealthState, str, str]:
    """State, reason code and reason of a failed open or read."""
    import av

    # FFmpeg's message without the URL (a port number must not read as an HTTP status).
    text = getattr(exc, "strerror", None) or str(exc)
    lowered = text.lower()
    if (
        isinstance(exc, av.error.HTTPUnauthorizedError)
        or "401" in text
        or "unauthorized" in lowered
    ):
        return (
            HealthState.AUTH_FAILED,
            "credentials_rejected",
            "credentials rejected (401 Unauthorized)",
        )
    if isinstance(exc, av.error.HTTPForbiddenError) or "forbidden" in lowered:
        return HealthState.AUTH_FAILED, "access_forbidden", "access forbidden (403)"
    if isinstance(exc, av.error.DecoderNotFoundError) or "decoder not found" in lowered:
        return HealthState.UNSUPPORTED_CODEC, "no_decoder", "no decoder for this stream's codec"
    if isinstance(exc, ConnectionRefusedError) or "refused" in lowered:
        return HealthState.UNREACHABLE, "connection_refused", "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError) or "reset by peer" in lowered:
        # It took the connection and dropped it: a relay whose far side is cut, a camera
        # rebooting, a device refusing one client too many.
        return HealthState.UNREACHABLE, "connection_reset", "the camera dropped the connection"
    if isinstance(exc, TimeoutError | av.error.ExitError) or "timed out" in lowered:
        return HealthState.UNREACHABLE, "no_answer", "no answer in time"
    if "name or service not known" in lowered or "no route" in lowered or "unreachable" in lowered:
        return HealthState.UNREACHABLE, "host_unreachable", text
    if isinstance(exc, av.error.HTTPNotFoundError) or "not found" in lowered:
        return HealthState.NO_SIGNAL, "stream_not_found", "the stream path does not exist (404)"
    if isinstance(exc, av.error.InvalidDataError):
        return HealthState.NO_SIGNAL, "undecodable", "the stream's data cannot be decoded"
    if isinstance(exc, OSError):
        return HealthState.UNREACHABLE, "network_error", text
    return HealthState.NO_SIGNAL, "stream_error", f"{type(exc).__name__}: {text}"


def probe_stream(url: str, settings: ProbeSettings | None = None) -> CameraHealth:
    """Probe ``url`` (blocking: run it in a worker thread). Never raises for a camera's fault;
    the result's ``reason`` names no address (URLs in library messages are cut to the host)."""
    import av

    settings = settings or ProbeSettings()
    started = time.monotonic()
    checked_at = datetime.now(UTC)
    # Small probe: without these FFmpeg buffers ~3 s of stream before returning from open.
    options = {"analyzeduration": "100000", "probesize": "32"}
    if url.startswith("rtsp"):
        options["rtsp_transport"] = settings.transport
        # Socket I/O timeout (µs): a backstop under PyAV's own open/read timeouts.
        options["timeout"] = str(int(settings.read_timeout * 2 * 1_000_000))

    def result(state: HealthState, code: str, reason: str, **measured: Any) -> CameraHealth:
        return CameraHealth(
            state=state, checked_at=checked_at, reason=reason, reason_code=code, **measured
        )

    try:
        container = av.open(
            url,
            options=options,
            timeout=(settings.connect_timeout, settings.read_timeout),
        )
    except Exception as exc:
        state, code, reason = _classify_error(exc)
        if state is HealthState.NO_SIGNAL and isinstance(exc, av.error.InvalidDataError):
            # At open time FFmpeg reports a failed connection or a peer that does not speak
            # RTSP/HTTP as "invalid data": for an operator, the camera is not answering.
            state, code = HealthState.UNREACHABLE, "no_valid_answer"
            reason = "no valid answer from the camera"
        return result(state, code, mask_urls(reason))
    try:
        video = next((s for s in container.streams if s.type == "video"), None)
        if video is None:
            return result(HealthState.UNSUPPORTED_CODEC, "no_video", "the stream carries no video")
        ctx = video.codec_context
        measured: dict[str, Any] = {"codec": ctx.name, "width": ctx.width or None}
        measured["height"] = ctx.height or None
        stats: list[FrameStats] = []
        previous: bytes | None = None
        seen = 0
        first_at: float | None = None
        times: list[float] = []
        ended: str | None = None  # why the stream stopped before enough frames arrived
        ended_code = ""
        try:
            for frame in container.decode(video):
                if first_at is None:
                    first_at = time.monotonic()
                    measured["latency_ms"] = round((first_at - started) * 1000, 1)
                    measured["width"] = frame.width
                    measured["height"] = frame.height
                seen += 1
                if frame.time is not None:
                    times.append(frame.time)
                if seen > settings.warmup_frames:
                    luma = luma_thumbnail(frame)
                    stats.append(frame_stats(luma, previous))
                    previous = luma
                    if len(stats) >= settings.sample_frames:
                        break
                if time.monotonic() - started > settings.max_duration:
                    break
            else:
                ended, ended_code = "the stream ended", "stream_ended"
        except Exception as exc:  # stalled or broke mid-way
            state, code, reason = _classify_error(exc)
            if seen == 0:
                return result(state, code, mask_urls(reason), **measured)
            ended, ended_code = f"the stream stalled ({mask_urls(reason)})", "stream_stalled"
        if len(times) >= 2 and times[-1] > times[0]:
            measured["fps"] = round((len(times) - 1) / (times[-1] - times[0]), 1)
        if ended is not None and len(stats) < settings.sample_frames:
            # A camera that gives a few frames and stops is not working, whatever they showed.
            return result(
                HealthState.NO_SIGNAL, ended_code, f"{ended} after {seen} frames", **measured
            )
        if not stats:
            return result(
                HealthState.NO_SIGNAL,
                "too_few_frames",
                f"only {seen} frames in {settings.max_duration:g} s",
                **measured,
            )
        state, reason = classify_frames(stats, settings)
        return result(state, FRAMES_REASON_CODE[state], reason, **measured)
    finally:
        container.close()
