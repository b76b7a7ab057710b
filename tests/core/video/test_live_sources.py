"""Live video from cameras whose credentials are in their settings (an inventory row's
``env:`` reference), and codecs a browser cannot play — against the real RTSP server."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

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


def _onvif_device() -> Any:
    name = "nabat_tests_onvif_device"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "fixtures" / "onvif_device.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


def _onvif(cid: str, port: int, **settings: str) -> str:
    extra = "".join(f', {k} = "{v}"' for k, v in settings.items())
    return f"""
[instances.{cid}]
kind = "onvif.camera"
municipality = "sochi"
settings = {{ host = "127.0.0.1", port = {port}{extra} }}
"""


async def _refused_as_h265(server, camera: str) -> dict:
    token = await _token(server, "cameras:read")
    async with _ws(server, camera, token) as ws:
        message = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert message["type"] == "error" and message["kind"] == "codec-unsupported", message
    assert closed.value.rcvd.code == 4415
    assert "H.265" in message["detail"] and "H.264 stream or sub-stream" in message["detail"]
    return message


async def test_an_h265_rtsp_camera_is_refused_naming_the_remedy(tmp_path, rtsp_server):
    """The RTSP server's /h265 mount really sends HEVC: found when the stream opens, final."""
    text = (
        BASE
        + f"""
[instances.cam-h265]
kind = "rtsp.camera"
municipality = "sochi"
settings = {{ url = "{rtsp_server.url("/h265")}" }}
"""
    )
    async with run_hub(load_config_text(text, tmp_path), discover_installed=True) as hub:
        async with run_api(hub) as server:
            await _refused_as_h265(server, "cam-h265")
            await eventually(
                lambda: not hub.video.upstreams and hub.video.connected() == 0,
                what="the refused upstream gone",
            )
            assert hub.video.reconnects == 0  # final: not retried


async def test_onvif_live_profile_h264_sub_stream_is_streamed_h265_refused_up_front(
    tmp_path, rtsp_server
):
    """An ONVIF camera whose main profile is H.265: with ``live_profile`` on its H.264
    sub-stream that sub-stream plays (the main's address does not even answer); with only the
    H.265 profile the hub refuses before connecting (the profile's codec is known)."""
    device_module = _onvif_device()
    spec = device_module.ProfileSpec
    unreachable = "rtsp://127.0.0.1:9/main"
    async with (
        device_module.OnvifDevice(
            username=None,
            password=None,
            rtsp_uri=unreachable,
            profiles=(
                spec("main", encoding="H265", uri=unreachable),
                spec("sub", width=320, height=240, uri=rtsp_server.url("/live")),
            ),
        ) as dual,
        device_module.OnvifDevice(
            username=None,
            password=None,
            rtsp_uri=unreachable,
            profiles=(spec("main", encoding="H265", uri=unreachable),),
        ) as hevc,
    ):
        text = BASE.replace("[plugins.rtsp]", "[plugins.onvif]\nenabled = true\n[plugins.rtsp]")
        text += _onvif("cam-dual", dual.port, live_profile="sub")
        text += _onvif("cam-hevc", hevc.port)
        async with run_hub(load_config_text(text, tmp_path), discover_installed=True) as hub:
            await eventually(
                lambda: all(hub.state_of(c) == "running" for c in ("cam-dual", "cam-hevc")),
                timeout=20,
                what="the ONVIF cameras running",
            )
            async with run_api(hub) as server:
                token = await _token(server, "cameras:read")
                async with _ws(server, "cam-dual", token) as ws:
                    first, init, frags = await _read_stream(ws, 3)
                    assert first["type"] == "stream", first
                    assert _frames(init + b"".join(frags)) > 0
                assert hub.video.reconnects == 0  # never tried the H.265 main stream
                await _refused_as_h265(server, "cam-hevc")
                assert hub.video.reconnects == 0  # refused before any connection
