"""``/api/v1/cameras`` and ``/api/v1/reports/cameras`` over real HTTP, with configured and
imported cameras, a real RTSP server behind the snapshots, and tokens limited by scope and
municipality."""

from __future__ import annotations

import csv
import importlib.util
import io
import sys
from pathlib import Path
from typing import Any

import pytest
from nabat.cameras.inventory import parse_csv
from nabat.regions import load_region
from nabat.testing import eventually


def _load_onvif_device() -> Any:
    name = "nabat_tests_onvif_device"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "fixtures" / "onvif_device.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def api_discover():
    return True  # the installed rtsp and simulator plugins, and the built-in watch


@pytest.fixture
def api_base():
    """The watch stays on: it probes the cameras."""
    return """
[hub]
language = "en"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[plugins.eventlog]
enabled = false
[plugins.watch.settings]
camera_interval = 3600.0
jitter = 0.0
fail_after = 1
recover_after = 1
"""


@pytest.fixture
def api_config(rtsp_server):
    return f"""
[plugins.rtsp]
enabled = true
[plugins.onvif]
enabled = true
[plugins.simulator]
settings = {{ incident_every = 3600.0, exercise_every = 3600.0 }}
[cameras]
availability_target = 90.0
targets = {{ sochi = 5, krasnodar = 1 }}

[instances.sim-ptz]
kind = "simulator.camera"
name = "Sochi PTZ"
municipality = "sochi"
settings = {{ fault_rate = 0.0, ptz = true }}

[instances.rtsp-live]
kind = "rtsp.camera"
name = "Krasnodar live"
municipality = "krasnodar"
settings = {{ url = "{rtsp_server.url("/live")}" }}
"""


async def _import_secure(api, rtsp_server, monkeypatch):
    monkeypatch.setenv("API_CAM_SECRET", f"{rtsp_server.user}:{rtsp_server.password}")
    text = (
        "id;name;municipality;address;driver;url;credentials;tags\n"
        f"inv-secure;Sochi secure;sochi;Курортный пр-т, 1;rtsp.camera;"
        f"{rtsp_server.url('/secure')};env:API_CAM_SECRET;beach\n"
        f"inv-black;Sochi black;sochi;;rtsp.camera;{rtsp_server.url('/black')};;\n"
    )
    records, errors = parse_csv(text, load_region("krasnodar-krai").municipalities)
    assert not errors
    await api.hub.inventory.import_rows(records)
    await api.hub.sync_inventory()


async def test_cameras_health_snapshots_ptz_and_report(api, rtsp_server, monkeypatch):
    await _import_secure(api, rtsp_server, monkeypatch)
    reader = await api.client("cameras:read")
    states = api.hub.camera_states

    await eventually(
        lambda: (
            {k: s.state.value for k, s in states.all().items()}
            == {"sim-ptz": "ok", "rtsp-live": "ok", "inv-secure": "ok", "inv-black": "black"}
        ),
        what="every camera probed",
        timeout=30,
    )
    page = (await reader.get("/api/v1/cameras")).json()
    assert page["total"] == 4
    by_id = {c["id"]: c for c in page["items"]}
    secure = by_id["inv-secure"]
    assert secure["source"] == "inventory" and secure["tags"] == ["beach"]
    assert secure["status"] == "ok" and secure["health"]["codec"]
    assert secure["instance_state"] == "running" and secure["last_probe_at"]
    assert by_id["inv-black"]["status"] == "degraded"
    assert by_id["rtsp-live"]["source"] == "config"
    # Credentials never leave the hub.
    body = (await reader.get("/api/v1/cameras")).text
    assert rtsp_server.password not in body and "API_CAM_SECRET" not in body
    assert "rtsp://" not in body

    sochi = (await reader.get("/api/v1/cameras", params={"municipality": "sochi"})).json()
    assert [c["id"] for c in sochi["items"]] == ["inv-black", "inv-secure", "sim-ptz"]
    degraded = (await reader.get("/api/v1/cameras", params={"status": "degraded"})).json()
    assert [c["id"] for c in degraded["items"]] == ["inv-black"]
    black = (await reader.get("/api/v1/cameras", params={"state": "black"})).json()
    assert black["total"] == 1
    bad = await reader.get("/api/v1/cameras", params={"state": "purple"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "state"
    first = (await reader.get("/api/v1/cameras", params={"limit": 3})).json()
    rest = (await reader.get("/api/v1/cameras", params={"after": first["next_after"]})).json()
    assert [c["id"] for c in first["items"] + rest["items"]] == sorted(by_id)
    assert rest.get("next_after") is None

    # A district's token sees its own cameras only.
    district = await api.client("cameras:read", municipalities=("krasnodar",))
    mine = (await district.get("/api/v1/cameras")).json()
    assert [c["id"] for c in mine["items"]] == ["rtsp-live"]
    assert (await district.get("/api/v1/cameras/inv-secure")).status_code == 404
    assert (await reader.get("/api/v1/cameras/nope")).status_code == 404
    one = (await reader.get("/api/v1/cameras/inv-secure")).json()
    assert one["name"] == "Sochi secure" and one["address"] == "Курортный пр-т, 1"

    # Snapshots: encoded from the authenticated stream; cached with their age.
    shot = await reader.get("/api/v1/cameras/inv-secure/snapshot.jpg")
    assert shot.status_code == 200, shot.text
    assert shot.headers["content-type"] == "image/jpeg"
    assert shot.content[:3] == b"\xff\xd8\xff" and "last-modified" in shot.headers
    again = await reader.get("/api/v1/cameras/inv-secure/snapshot.jpg")
    assert again.content == shot.content and int(again.headers["age"]) >= 0
    sim = await reader.get("/api/v1/cameras/sim-ptz/snapshot.jpg")
    assert sim.status_code == 200 and sim.content[:2] == b"\xff\xd8"

    # PTZ: cameras:control only; 409 without PTZ; the command reaches the driver.
    body = {"action": "absolute", "pan": 0.5, "tilt": -0.25, "zoom": 0.1}
    assert (await reader.post("/api/v1/cameras/sim-ptz/ptz", json=body)).status_code == 403
    control = await api.client("cameras:control", "cameras:read")
    moved = await control.post("/api/v1/cameras/sim-ptz/ptz", json=body)
    assert moved.status_code == 204, moved.text
    assert api.hub.instance("sim-ptz")._position == pytest.approx((0.5, -0.25, 0.1))
    none = await control.post("/api/v1/cameras/inv-secure/ptz", json={"action": "stop"})
    assert none.status_code == 409 and "PTZ" in none.json()["detail"]
    wrong = await control.post("/api/v1/cameras/sim-ptz/ptz", json={"action": "dance"})
    assert wrong.status_code == 400
    for bad in (
        {"action": "absolute", "pan": 99, "tilt": 0},
        {"action": "continuous", "x": 1},
        {"action": "continuous", "pan": "NaN"},
    ):
        refused = await control.post("/api/v1/cameras/sim-ptz/ptz", json=bad)
        assert refused.status_code == 400, bad
    assert api.hub.instance("sim-ptz")._position == pytest.approx((0.5, -0.25, 0.1))
    presets = await control.get("/api/v1/cameras/sim-ptz/presets")
    assert presets.status_code == 200 and isinstance(presets.json(), list)

    # The district report, JSON and CSV.
    report = (await reader.get("/api/v1/reports/cameras")).json()
    rows = {r["municipality"]: r for r in report["districts"]}
    assert (rows["sochi"]["total"], rows["sochi"]["ok"], rows["sochi"]["degraded"]) == (3, 2, 1)
    assert rows["sochi"]["lagging"] and rows["sochi"]["target"] == 5
    assert rows["krasnodar"]["ok"] == 1 and not rows["krasnodar"]["lagging"]
    assert rows["krasnodar"]["availability_pct"] == 100.0
    assert report["total"]["total"] == 4
    as_csv = await reader.get("/api/v1/reports/cameras.csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {r["municipality"]: r["lagging"] for r in table}["sochi"] == "yes"
    only = (await reader.get("/api/v1/reports/cameras", params={"municipality": "sochi"})).json()
    assert [r["municipality"] for r in only["districts"]] == ["sochi"]
    nowhere = await reader.get("/api/v1/cameras", params={"municipality": "Sochi"})
    assert nowhere.status_code == 400
    limited = (await district.get("/api/v1/reports/cameras")).json()
    assert [r["municipality"] for r in limited["districts"]] == ["krasnodar"]
    naive = await reader.get("/api/v1/reports/cameras", params={"since": "2026-11-01T00:00:00"})
    assert naive.status_code == 400


async def test_a_camera_that_is_not_running_has_no_snapshot(api, monkeypatch):
    text = (
        "id;name;municipality;driver;url;credentials\n"
        "inv-noenv;No secret;sochi;rtsp.camera;rtsp://127.0.0.1:9/x;env:NABAT_UNSET_FOR_TEST\n"
    )
    records, _ = parse_csv(text, load_region("krasnodar-krai").municipalities)
    await api.hub.inventory.import_rows(records)
    await api.hub.sync_inventory()
    await eventually(lambda: api.hub.state_of("inv-noenv") == "needs_auth", what="needs_auth")
    reader = await api.client("cameras:read")
    view = (await reader.get("/api/v1/cameras/inv-noenv")).json()
    assert view["status"] == "unknown" and view["instance_state"] == "needs_auth"
    assert "NABAT_UNSET_FOR_TEST" in view["instance_reason"]
    assert view["profiles"] == []
    shot = await reader.get("/api/v1/cameras/inv-noenv/snapshot.jpg")
    assert shot.status_code == 503 and shot.headers["retry-after"]
    assert "needs_auth" in shot.json()["detail"]


async def test_an_onvif_camera_shows_its_profiles_and_probed_resolution(
    api, rtsp_server, monkeypatch
):
    """An inventory ONVIF camera with an H.265 main stream and an H.264 sub-stream: the
    detail shows every profile with its roles, and the probe's codec and resolution."""
    device_module = _load_onvif_device()
    spec = device_module.ProfileSpec
    monkeypatch.setenv("API_ONVIF_SECRET", f"admin:{rtsp_server.password}")
    profiles = (
        spec("main", name="Main", encoding="H265", width=2560, height=1440, ptz=True),
        spec("sub", name="Sub", width=640, height=360, fps=15, uri=rtsp_server.url("/live")),
    )
    async with device_module.OnvifDevice(
        username="admin", password=rtsp_server.password, events=False, profiles=profiles
    ) as device:
        text = (
            "id;name;municipality;driver;url;credentials\n"
            f"inv-onvif;Sochi ONVIF;sochi;onvif.camera;127.0.0.1:{device.port};"
            "env:API_ONVIF_SECRET\n"
        )
        records, errors = parse_csv(text, load_region("krasnodar-krai").municipalities)
        assert not errors
        await api.hub.inventory.import_rows(records)
        await api.hub.sync_inventory()
        states = api.hub.camera_states
        await eventually(
            lambda: states.get("inv-onvif") is not None, what="the ONVIF camera probed", timeout=30
        )
        reader = await api.client("cameras:read")
        one = (await reader.get("/api/v1/cameras/inv-onvif")).json()
        assert one["instance_state"] == "running", one["instance_reason"]
        health = one["health"]
        assert health["state"] == "ok", health["reason"]
        # The probe read the sub-stream (the real RTSP server's 320x240 picture).
        assert (health["codec"], health["width"], health["height"]) == ("h264", 320, 240)
        assert one["profiles"] == [
            {
                "token": "main",
                "name": "Main",
                "codec": "H265",
                "width": 2560,
                "height": 1440,
                "fps": 25.0,
                "roles": ["snapshot"],
            },
            {
                "token": "sub",
                "name": "Sub",
                "codec": "H264",
                "width": 640,
                "height": 360,
                "fps": 15.0,
                "roles": ["live", "probe"],
            },
        ]
        assert rtsp_server.password not in (await reader.get("/api/v1/cameras/inv-onvif")).text
        # Another driver's profiles have no roles (the hub picks nothing there).
        rtsp = (await reader.get("/api/v1/cameras/rtsp-live")).json()
        assert [(p["token"], p["roles"]) for p in rtsp["profiles"]] == [("main", [])]
        await api.hub.inventory.delete("inv-onvif")
        await api.hub.sync_inventory()
    # A camera that is not running has no profiles to show.
    gone = (await reader.get("/api/v1/cameras/inv-onvif")).status_code
    assert gone == 404
