"""Stream health against a real RTSP server (Debian's gst-rtsp-server): ok, black, frozen,
dying, protected, missing — and an HTTP endpoint that is not a stream."""

from __future__ import annotations

import asyncio
import time

from nabat.cameras.probe import FrameStats, ProbeSettings, classify_frames, probe_stream
from nabat.interfaces.camera import HealthState
from nabat.testing import free_port

FAST = ProbeSettings(connect_timeout=3, read_timeout=3, max_duration=8)


def probe(url: str, settings: ProbeSettings = FAST):
    started = time.monotonic()
    result = probe_stream(url, settings)
    return result, time.monotonic() - started


def test_a_live_stream_is_ok_with_what_was_measured(rtsp_server):
    result, _ = probe(rtsp_server.url("live"))
    assert result.state is HealthState.OK, result.reason
    assert result.codec == "h264"
    assert (result.width, result.height) == (320, 240)
    assert result.fps is not None and 5 <= result.fps <= 15
    assert result.latency_ms is not None and result.latency_ms > 0


def test_a_black_picture_is_black(rtsp_server):
    result, _ = probe(rtsp_server.url("black"))
    assert result.state is HealthState.BLACK, result.reason
    assert "mean luma" in result.reason


def test_a_still_picture_is_frozen(rtsp_server):
    result, _ = probe(rtsp_server.url("frozen"))
    assert result.state is HealthState.FROZEN, result.reason


def test_noise_is_not_mistaken_for_black_or_frozen(rtsp_server):
    result, _ = probe(rtsp_server.url("noise"))
    assert result.state is HealthState.OK, result.reason


def test_a_dying_stream_is_no_signal(rtsp_server):
    # /dying sends ~10 frames, then ends: too few past the warm-up to show a picture.
    result, took = probe(rtsp_server.url("dying"), ProbeSettings(warmup_frames=3, sample_frames=10))
    assert result.state is HealthState.NO_SIGNAL, result.reason
    assert took < 5


def test_a_stalled_stream_is_cut_off_by_the_time_limits(rtsp_server):
    # /stalled keeps the session open and sends nothing: a hung camera.
    settings = ProbeSettings(connect_timeout=3, read_timeout=2, max_duration=6, sample_frames=10)
    result, took = probe(rtsp_server.url("stalled"), settings)
    assert result.state in (HealthState.NO_SIGNAL, HealthState.UNREACHABLE), result.reason
    assert took < settings.max_duration + settings.read_timeout + 2


def test_wrong_or_missing_credentials_are_auth_failed_and_right_ones_work(rtsp_server):
    missing, _ = probe(rtsp_server.url("secure"))
    assert missing.state is HealthState.AUTH_FAILED, missing.reason
    wrong, _ = probe(rtsp_server.secure_url(password="not-the-password"))
    assert wrong.state is HealthState.AUTH_FAILED, wrong.reason
    assert "not-the-password" not in wrong.reason
    right, _ = probe(rtsp_server.secure_url())
    assert right.state is HealthState.OK, right.reason


def test_a_closed_port_is_unreachable_at_once():
    result, took = probe(f"rtsp://127.0.0.1:{free_port()}/live")
    assert result.state is HealthState.UNREACHABLE
    assert "refused" in result.reason and took < 2


async def test_a_silent_server_is_unreachable_after_the_connect_timeout():
    async def never_answer(reader, writer):
        await asyncio.sleep(30)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = ProbeSettings(connect_timeout=1.5, read_timeout=1.5, max_duration=4)
        result, took = await asyncio.to_thread(probe, f"rtsp://127.0.0.1:{port}/live", settings)
    finally:
        server.close()
    assert result.state is HealthState.UNREACHABLE, result.reason
    assert took < 6


def test_classification_thresholds():
    settings = ProbeSettings()
    black = [FrameStats(mean=3, p99=8, diff=0.0)] * 3
    assert classify_frames(black, settings)[0] is HealthState.BLACK
    # A dark night scene has bright spots (street lights): not black.
    night = [FrameStats(mean=12, p99=200, diff=2.0)] * 3
    assert classify_frames(night, settings)[0] is HealthState.OK
    frozen = [FrameStats(mean=120, p99=250, diff=None), *[FrameStats(120, 250, 0.1)] * 3]
    assert classify_frames(frozen, settings)[0] is HealthState.FROZEN
    assert classify_frames([], settings)[0] is HealthState.NO_SIGNAL


def test_an_mjpeg_stream_is_probed_too(rtsp_server):
    result, _ = probe(rtsp_server.url("mjpeg"))
    assert result.codec == "mjpeg"
    assert result.state in (HealthState.OK, HealthState.FROZEN), result.reason
