"""What the RTSP test server's mounts look like to an FFmpeg (PyAV) reader.

These pin down the behaviour camera-probe tests rely on, and show reader settings that never
hang: RTSP over TCP, FFmpeg's socket ``timeout`` (microseconds) plus PyAV's
``timeout=(open, read)`` interrupt, and a short probe (``analyzeduration``/``probesize``) so
opening takes ~0.2 s instead of ~3 s of buffering.
"""

from __future__ import annotations

import time
from itertools import pairwise

import av
import pytest

OPEN_TIMEOUT = 5.0
READ_TIMEOUT = 1.5
OPTIONS = {
    "rtsp_transport": "tcp",  # UDP on loopback can time out; TCP interleaved is reliable
    "timeout": "2000000",  # socket I/O timeout, microseconds (FFmpeg >= 5; no "stimeout")
    "analyzeduration": "100000",  # microseconds of stream to probe while opening
    "probesize": "32",
}
WARMUP = 3  # the first decoded frames of a fresh x264 session differ from the steady picture


def luma(frame: av.VideoFrame) -> bytes:
    """The Y plane without line padding (limited range: black is 16, white 235)."""
    plane = frame.planes[0]
    data, stride, width = bytes(plane), plane.line_size, frame.width
    return b"".join(data[row * stride : row * stride + width] for row in range(frame.height))


def open_stream(url: str) -> av.container.InputContainer:
    return av.open(url, options=OPTIONS, timeout=(OPEN_TIMEOUT, READ_TIMEOUT))


def read_luma(url: str, count: int, skip: int = WARMUP) -> list[bytes]:
    with open_stream(url) as container:
        frames = []
        for index, frame in enumerate(container.decode(video=0)):
            if index >= skip:
                frames.append(luma(frame))
            if len(frames) == count:
                return frames
    raise AssertionError(f"{url} ended after {len(frames)} frames, wanted {count}")


def mean(picture: bytes) -> float:
    return sum(picture) / len(picture)


def changed(a: bytes, b: bytes, threshold: int = 16) -> int:
    """Pixels whose luma differs by more than ``threshold`` (ignores coding noise)."""
    return sum(1 for x, y in zip(a, b, strict=True) if abs(x - y) > threshold)


def max_diff(a: bytes, b: bytes) -> int:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_live_picture_moves(rtsp_server):
    frames = read_luma(rtsp_server.url("/live"), 5)
    assert all(changed(a, b) > 100 for a, b in pairwise(frames)), "ball did not move"
    assert mean(frames[0]) > 60  # blue-grey background: not "black"


def test_black_is_black(rtsp_server):
    frames = read_luma(rtsp_server.url("/black"), 5)
    assert all(mean(f) < 20 for f in frames), [round(mean(f), 1) for f in frames]


def test_frozen_repeats_one_picture(rtsp_server):
    frames = read_luma(rtsp_server.url("/frozen"), 8)
    assert mean(frames[0]) > 60  # colour bars, not black
    # Not always byte-identical: each key frame (every 15th) re-encodes the still and shifts
    # a few pixels by a few levels. No pixel ever changes by more than ~8.
    assert all(changed(a, b, threshold=10) == 0 for a, b in pairwise(frames))
    assert max(max_diff(a, b) for a, b in pairwise(frames)) <= 10


def test_noise_changes_and_is_not_black(rtsp_server):
    a, b = read_luma(rtsp_server.url("/noise"), 2)
    assert mean(a) > 60
    assert changed(a, b) > len(a) // 2


def test_mjpeg_decodes(rtsp_server):
    with open_stream(rtsp_server.url("/mjpeg")) as c:
        assert c.streams.video[0].codec_context.name == "mjpeg"
        frames = [luma(f) for _, f in zip(range(3), c.decode(video=0), strict=False)]
    assert changed(frames[0], frames[-1]) > 100


def test_dying_ends_after_about_a_second(rtsp_server):
    """10 frames (1 s), then end of stream: RTCP BYE, which FFmpeg turns into a clean EOF."""
    started = time.monotonic()
    with open_stream(rtsp_server.url("/dying")) as c:
        count = sum(1 for _ in c.decode(video=0))  # ends without an exception
    elapsed = time.monotonic() - started
    assert 5 <= count <= 10
    assert elapsed < 3, f"took {elapsed:.1f}s"


def test_stalled_goes_silent_and_the_read_timeout_fires(rtsp_server):
    """10 frames, then nothing but RTCP: only a read timeout ends the read.

    FFmpeg hands out the last frame only when the next RTCP report arrives (1-3 s later), and
    PyAV's read timeout counts from the last packet returned, so the read ends 2.5-5.5 s in.
    """
    started = time.monotonic()
    count = 0
    with open_stream(rtsp_server.url("/stalled")) as c:
        # PyAV's read timeout raises ExitError; FFmpeg's socket timeout raises TimeoutError.
        with pytest.raises((av.ExitError, av.error.TimeoutError)):
            for _ in c.decode(video=0):
                count += 1
    elapsed = time.monotonic() - started
    assert count >= 5
    assert elapsed < 1 + 4 + READ_TIMEOUT + 1.5, f"took {elapsed:.1f}s"


def test_secure_needs_credentials(rtsp_server):
    for url in (rtsp_server.url("/secure"), rtsp_server.secure_url(password="wrong")):
        with pytest.raises(av.HTTPUnauthorizedError):  # 401, at once
            open_stream(url)
    frames = read_luma(rtsp_server.secure_url(), 2)
    assert changed(*frames) > 100


def test_unknown_mount_is_404(rtsp_server):
    with pytest.raises(av.HTTPNotFoundError):
        open_stream(rtsp_server.url("/nope"))
