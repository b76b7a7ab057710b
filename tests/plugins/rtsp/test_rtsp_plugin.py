"""The rtsp plugin's drivers in a real hub: RTSP cameras against gst-rtsp-server, HTTP-snapshot
cameras against a real HTTP server on a socket."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import av
import pytest
from nabat.cameras.snapshot import encode_jpeg
from nabat.interfaces import HealthState, Secret
from nabat.testing import record, run_hub
from nabat_rtsp.credentials import with_credentials
from nabat_rtsp.http_camera import HttpSnapshotCamera, HttpSnapshotSettings

CONFIG = """
[hub]
language = "en"
data_dir = "data"
[plugins.eventlog]
enabled = false
[plugins.rtsp]
[plugins.watch.settings]
camera_interval = 0.3
jitter = 0.0
fail_after = 1
recover_after = 1

[instances.cam-live]
kind = "rtsp.camera"
municipality = "sochi"
settings = {{ url = "{live}", connect_timeout = 3, read_timeout = 3 }}

[instances.cam-black]
kind = "rtsp.camera"
municipality = "sochi"
settings = {{ url = "{black}", connect_timeout = 3, read_timeout = 3 }}

[instances.cam-secure]
kind = "rtsp.camera"
municipality = "krasnodar"
settings = {{ url = "{secure}", username = "{user}", password = {{ env = "CAM_PASSWORD" }} }}

[instances.cam-wrong]
kind = "rtsp.camera"
municipality = "krasnodar"
settings = {{ url = "{secure}", username = "{user}", password = {{ env = "WRONG_PASSWORD" }} }}
"""


async def test_rtsp_cameras_report_their_real_health_and_give_snapshots(
    rtsp_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("CAM_PASSWORD", rtsp_server.password)
    monkeypatch.setenv("WRONG_PASSWORD", "guess")
    config = CONFIG.format(
        live=rtsp_server.url("live"),
        black=rtsp_server.url("black"),
        secure=rtsp_server.url("secure"),
        user=rtsp_server.user,
    )
    async with run_hub(config, tmp_path) as hub:
        events = record(hub, "camera.health.>")
        live = await events.wait_for("camera.health.ok", subject="cam-live", timeout=20)
        assert live.data.codec == "h264" and live.data.width == 320
        black = await events.wait_for("camera.health.black", subject="cam-black", timeout=20)
        assert "mean luma" in black.data.reason
        await events.wait_for("camera.health.ok", subject="cam-secure", timeout=20)
        wrong = await events.wait_for("camera.health.auth_failed", subject="cam-wrong", timeout=20)
        assert "guess" not in wrong.data.reason
        shot = await hub.instance("cam-live").snapshot()
        assert shot.content[:2] == b"\xff\xd8" and shot.width == 320


def test_credentials_go_into_the_url_only_when_used():
    url = with_credentials("rtsp://10.0.0.5:554/live", "admin", Secret("p@ss word"))
    assert url == "rtsp://admin:p%40ss%20word@10.0.0.5:554/live"
    assert with_credentials("rtsp://u:p@h/x", "other", Secret("y")) == "rtsp://u:p@h/x"
    assert with_credentials("rtsp://h/x", None, None) == "rtsp://h/x"


def _jpeg(level: int) -> bytes:
    frame = av.VideoFrame(160, 120, "yuv420p")
    for index, plane in enumerate(frame.planes):
        fill = level if index == 0 else 128
        plane.update(bytes([fill]) * plane.buffer_size)
    return encode_jpeg(frame)


class SnapshotServer:
    """A real HTTP server that answers like a cheap camera's /snapshot.jpg."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.count = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        self.count += 1
        if self.mode == "auth" and "authorization: basic" not in head:
            writer.write(
                b'HTTP/1.1 401 X\r\nwww-authenticate: Basic realm="cam"\r\n'
                b"content-length: 0\r\n\r\n"
            )
        else:
            if self.mode == "html":
                body, ctype = b"<html>login</html>", "text/html"
            else:
                level = {"ok": 60 + 40 * (self.count % 2), "frozen": 90, "black": 16}
                body, ctype = _jpeg(level.get(self.mode, 90)), "image/jpeg"
            writer.write(
                f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
                "connection: close\r\n\r\n".encode()
                + body
            )
        await writer.drain()
        writer.close()


class _Context:
    instance_id = "cam-http"
    timeout = 10.0


@pytest.mark.parametrize(
    ("mode", "state"),
    [
        ("ok", HealthState.OK),
        ("frozen", HealthState.FROZEN),
        ("black", HealthState.BLACK),
        ("auth", HealthState.AUTH_FAILED),
        ("html", HealthState.NO_SIGNAL),
        ("closed", HealthState.UNREACHABLE),
    ],
)
async def test_http_snapshot_camera_health(mode, state):
    server = SnapshotServer(mode)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    if mode == "closed":
        listener.close()
        await listener.wait_closed()
    try:
        settings = HttpSnapshotSettings(
            snapshot_url=f"http://127.0.0.1:{port}/snapshot.jpg",
            username="admin" if mode != "auth" else None,
            password=Secret("pw") if mode != "auth" else None,
            frame_gap=0.05,
            timeout=2,
        )
        camera = HttpSnapshotCamera(_Context(), settings)
        health = await camera.probe()
    finally:
        listener.close()
    assert health.state is state, health.reason
    assert health.checked_at <= datetime.now(UTC)
    if state is HealthState.OK:
        assert (health.width, health.height) == (160, 120) and server.count == 2
