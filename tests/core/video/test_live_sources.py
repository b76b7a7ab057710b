"""Live video from cameras whose credentials are in their settings (an inventory row's
``env:`` reference), and codecs a browser cannot play — against the real RTSP server."""

from __future__ import annotations

import json

import pytest
import websockets
from nabat.cameras.inventory import parse_csv
from nabat.regions import load_region
from nabat.testing import eventually, load_config_text, run_api, run_hub

from .test_live import BASE, _frames, _read_stream, _token, _ws

HEADER = "id;name;municipality;driver;url;credentials"


@pytest.fixture
async def inventory_hub(tmp_path, rtsp_server, monkeypatch):
    monkeypatch.setenv("LIVE_CAM_OK", f"{rtsp_server.user}:{rtsp_server.password}")
    monkeypatch.setenv("LIVE_CAM_WRONG", f"{rtsp_server.user}:not-the-password")
    loaded = load_config_text(BASE, tmp_path)
    async with run_hub(loaded, discover_installed=True) as hub:
        rows = [
            f"inv-secure;Secure;sochi;rtsp.camera;{rtsp_server.url('/secure')};env:LIVE_CAM_OK",
            f"inv-wrong;Wrong;sochi;rtsp.camera;{rtsp_server.url('/secure')};env:LIVE_CAM_WRONG",
        ]
        slugs = load_region("krasnodar-krai").municipalities
        records, errors = parse_csv("\n".join([HEADER, *rows]) + "\n", slugs)
        assert not errors, errors
        await hub.inventory.import_rows(records)
        await hub.sync_inventory()
        await eventually(
            lambda: all(hub.state_of(c) == "running" for c in ("inv-secure", "inv-wrong")),
            timeout=20,
            what="the inventory cameras running",
        )
        async with run_api(hub) as server:
            yield hub, server


async def test_credentials_from_the_settings_play_live(inventory_hub, rtsp_server):
    _hub, server = inventory_hub
    token = await _token(server, "cameras:read")
    async with _ws(server, "inv-secure", token) as ws:
        first, init, frags = await _read_stream(ws, 3)
        assert first["type"] == "stream" and first["status"] == "live"
        assert _frames(init + b"".join(frags)) > 0
    assert rtsp_server.password not in json.dumps(first)


async def test_a_wrong_password_in_the_settings_is_final(inventory_hub, rtsp_server, caplog):
    hub, server = inventory_hub
    token = await _token(server, "cameras:read")
    reconnects = hub.video.reconnects
    async with _ws(server, "inv-wrong", token) as ws:
        message = json.loads(await ws.recv())
        assert message["type"] == "error" and message["kind"] == "camera-auth", message
        assert "not-the-password" not in message["detail"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 4502
    await eventually(
        lambda: not hub.video.upstreams and hub.video.connected() == 0,
        what="the failed upstream gone",
    )
    # No retry loop: one refused attempt, no stall, no reconnect.
    assert hub.video.reconnects == reconnects
    assert not [r for r in caplog.records if "upstream_stalled" in r.getMessage()]
    assert all("not-the-password" not in r.getMessage() for r in caplog.records)
