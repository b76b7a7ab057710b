"""Snapshots encoded from a decoded frame, for cameras with no JPEG endpoint of their own.

The camera wall needs a current picture of every camera. ONVIF cameras usually offer a snapshot
URI; for the rest the hub opens the stream, skips the encoder's warm-up frames and encodes one
decoded frame as JPEG with FFmpeg's MJPEG encoder (through PyAV), optionally scaled down.
Blocking: run in a worker thread under the caller's concurrency limit.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from ..interfaces.camera import Snapshot
from ..interfaces.errors import TransientError
from ..masking import without_userinfo
from .probe import ProbeSettings

__all__ = ["encode_jpeg", "grab_snapshot"]


def encode_jpeg(frame: Any, *, max_width: int | None = None, quality: int = 5) -> bytes:
    """``frame`` (a PyAV VideoFrame) as JPEG; ``quality`` is FFmpeg's qscale (2 best, 31
    worst), ``max_width`` scales down keeping the aspect ratio."""
    import av

    width, height = frame.width, frame.height
    if max_width and width > max_width:
        height = max(2, round(height * max_width / width / 2) * 2)
        width = max_width
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"qmin": str(quality), "qmax": str(quality)}
    encoder.open()
    picture = frame.reformat(width=width, height=height, format="yuvj420p")
    picture.pts = 0
    data = b"".join(bytes(p) for p in encoder.encode(picture))
    data += b"".join(bytes(p) for p in encoder.encode(None))
    return data


def grab_snapshot(
    url: str, settings: ProbeSettings | None = None, *, max_width: int | None = None
) -> Snapshot:
    """A JPEG of the stream's current picture. Raises :class:`TransientError` (the URL's
    password masked) when no frame arrives in time."""
    import av

    settings = settings or ProbeSettings()
    options = {"analyzeduration": "100000", "probesize": "32"}
    if url.startswith("rtsp"):
        options["rtsp_transport"] = settings.transport
    started = time.monotonic()
    try:
        container = av.open(
            url, options=options, timeout=(settings.connect_timeout, settings.read_timeout)
        )
    except Exception as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise TransientError(f"cannot open {without_userinfo(url)}: {reason}") from None
    try:
        video = next((s for s in container.streams if s.type == "video"), None)
        if video is None:
            raise TransientError(f"{without_userinfo(url)} carries no video")
        seen = 0
        for frame in container.decode(video):
            seen += 1
            if seen > settings.warmup_frames or time.monotonic() - started > settings.max_duration:
                return Snapshot(
                    content=encode_jpeg(frame, max_width=max_width),
                    taken_at=datetime.now(UTC),
                    width=min(frame.width, max_width or frame.width),
                    height=(
                        frame.height
                        if not max_width or frame.width <= max_width
                        else max(2, round(frame.height * max_width / frame.width / 2) * 2)
                    ),
                )
        raise TransientError(f"{without_userinfo(url)} ended after {seen} frames")
    except TransientError:
        raise
    except Exception as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise TransientError(f"no picture from {without_userinfo(url)}: {reason}") from None
    finally:
        container.close()
