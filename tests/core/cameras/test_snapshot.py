"""Snapshots encoded from a decoded frame: a real JPEG of the current picture."""

from __future__ import annotations

import io

import av
import pytest
from nabat.cameras.probe import ProbeSettings
from nabat.cameras.snapshot import grab_snapshot
from nabat.interfaces.errors import TransientError
from nabat.testing import free_port

FAST = ProbeSettings(connect_timeout=3, read_timeout=3, max_duration=8)


def _decode(jpeg: bytes):
    with av.open(io.BytesIO(jpeg), format="image2pipe") as container:
        return next(container.decode(video=0))


def test_a_snapshot_is_a_jpeg_of_the_stream(rtsp_server):
    shot = grab_snapshot(rtsp_server.url("live"), FAST)
    assert shot.content[:2] == b"\xff\xd8" and shot.content[-2:] == b"\xff\xd9"
    assert shot.content_type == "image/jpeg"
    frame = _decode(shot.content)
    assert (frame.width, frame.height) == (320, 240) == (shot.width, shot.height)


def test_a_snapshot_can_be_scaled_down_for_the_wall(rtsp_server):
    shot = grab_snapshot(rtsp_server.url("noise"), FAST, max_width=160)
    frame = _decode(shot.content)
    assert (frame.width, frame.height) == (160, 120) == (shot.width, shot.height)


def test_no_picture_is_a_transient_error_without_the_password():
    with pytest.raises(TransientError) as raised:
        grab_snapshot(f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/live", FAST)
    text = str(raised.value)
    assert "hunter2" not in text and "admin" not in text and "127.0.0.1" in text


def test_a_stream_that_ends_gives_no_snapshot(rtsp_server):
    with pytest.raises(TransientError, match="ended"):
        grab_snapshot(rtsp_server.url("dying"), ProbeSettings(warmup_frames=50))
