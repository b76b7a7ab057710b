"""Inventory cameras become driver instances: probed by the sweeps like configured ones,
started, restarted and stopped as the inventory changes — against a real RTSP server."""

from __future__ import annotations

from nabat.cameras.inventory import parse_csv
from nabat.regions import load_region
from nabat.testing import eventually, record, run_hub

SLUGS = load_region("krasnodar-krai").municipalities
HEADER = "id;name;municipality;driver;url;credentials"

CONFIG = """
[hub]
language = "en"
data_dir = "data"

[cameras]
inventory_refresh = 3600.0

[plugins.eventlog]
enabled = false

[plugins.rtsp]
enabled = true

[plugins.simulator]
settings = { incident_every = 3600.0, exercise_every = 3600.0 }

[plugins.watch.settings]
camera_interval = 3600.0
jitter = 0.0
fail_after = 1
recover_after = 1

[instances.cfg-cam]
kind = "simulator.camera"
municipality = "sochi"
settings = { fault_rate = 0.0 }
"""


async def _import(hub, *rows: str) -> None:
    records, errors = parse_csv("\n".join([HEADER, *rows]) + "\n", SLUGS)
    assert not errors, errors
    await hub.inventory.import_rows(records)


async def test_imported_cameras_are_probed_restarted_and_stopped(
    tmp_path, rtsp_server, monkeypatch
):
    monkeypatch.setenv("CAM_SECURE", f"{rtsp_server.user}:{rtsp_server.password}")
    monkeypatch.setenv("CAM_WRONG", f"{rtsp_server.user}:not-the-password")
    async with run_hub(CONFIG, tmp_path) as hub:
        health = record(hub, "camera.health.*")
        await _import(
            hub,
            f"inv-live;Live;krasnodar;rtsp.camera;{rtsp_server.url('/live')};",
            f"inv-black;Black;krasnodar;rtsp.camera;{rtsp_server.url('/black')};",
            f"inv-secure;Secure;sochi;rtsp.camera;{rtsp_server.url('/secure')};env:CAM_SECURE",
            f"inv-wrong;Wrong;sochi;rtsp.camera;{rtsp_server.url('/secure')};env:CAM_WRONG",
            "inv-noenv;No env;sochi;rtsp.camera;rtsp://127.0.0.1:9/x;env:NABAT_TEST_UNSET_VAR",
            "inv-kind;Bad kind;sochi;acme.camera;rtsp://127.0.0.1:9/x;",
            "inv-off;Plugin off;sochi;example_siren.camera;rtsp://127.0.0.1:9/x;",
            "cfg-cam;Shadowed;sochi;rtsp.camera;rtsp://127.0.0.1:9/x;",
        )
        counts = await hub.sync_inventory()
        assert counts == {"added": 7, "changed": 0, "removed": 0}
        assert await hub.sync_inventory() == {"added": 0, "changed": 0, "removed": 0}
        assert hub.fleet.shadowed == {"cfg-cam"}  # only the real clash, not every running camera

        def states() -> dict[str, str]:
            return {e.subject: e.type.rsplit(".", 1)[1] for e in health.events}

        want = {
            "inv-live": "ok",
            "inv-black": "black",
            "inv-secure": "ok",
            "inv-wrong": "auth_failed",
        }
        await eventually(
            lambda: all(states().get(k) == v for k, v in want.items()),
            what=f"first probes {want}",
            timeout=30,
        )
        wrong = next(e for e in health.events if e.subject == "inv-wrong")
        assert rtsp_server.user not in wrong.data.reason  # the address only, no user name
        # Rejected credentials need an operator: needs_auth, retried with a fresh secret.
        await eventually(lambda: hub.state_of("inv-wrong") == "needs_auth", what="needs_auth")
        secure = next(e for e in health.events if e.subject == "inv-secure")
        assert secure.municipality == "sochi" and secure.data.codec
        # An unreadable credential reference: needs_auth, naming the variable, not a secret.
        await eventually(lambda: hub.state_of("inv-noenv") == "needs_auth", what="needs_auth")
        assert "NABAT_TEST_UNSET_VAR" in hub.status_of("inv-noenv").reason
        assert hub.state_of("inv-kind") == "failed"
        assert "acme.camera" in hub.status_of("inv-kind").reason
        assert hub.state_of("inv-off") == "failed"
        assert "not enabled" in hub.status_of("inv-off").reason
        # plugins.toml wins on an id clash.
        assert hub.units.get("cfg-cam").record is None
        assert hub.instance("cfg-cam").context.municipality == "sochi"

        # Change one row, delete another: restarted and stopped; the rest untouched.
        live_driver = hub.instance("inv-live")
        black_driver = hub.instance("inv-black")
        await _import(hub, f"inv-black;Black;krasnodar;rtsp.camera;{rtsp_server.url('/live')};")
        assert await hub.inventory.delete("inv-wrong")
        counts = await hub.sync_inventory()
        assert counts == {"added": 0, "changed": 1, "removed": 1}
        assert "inv-wrong" not in hub.units
        assert hub.supervisor.status(*_instance("inv-wrong")) is None
        assert hub.instance("inv-live") is live_driver
        await eventually(
            lambda: hub.state_of("inv-black") == "running", what="the changed camera restarted"
        )
        assert hub.instance("inv-black") is not black_driver
        assert await hub.sync_inventory() == {"added": 0, "changed": 0, "removed": 0}


def _instance(name: str):
    from nabat.interfaces.payloads import UnitKind

    return UnitKind.INSTANCE, name


async def test_a_hub_starts_the_cameras_already_in_its_inventory(tmp_path):
    rows = [f"sim-{i:03d};Sim {i};tuapsinsky;simulator.camera;10.0.0.{i}:80;" for i in range(1, 21)]
    async with run_hub(CONFIG, tmp_path) as hub:
        await _import(hub, *rows)
    async with run_hub(CONFIG, tmp_path) as hub:
        assert all(hub.state_of(f"sim-{i:03d}") == "running" for i in range(1, 21))
        cameras = hub.instances(municipality="tuapsinsky")
        assert len(cameras) == 20
        assert cameras[0].context.name.startswith("Sim ")


async def test_a_restart_does_not_announce_unchanged_cameras_again(tmp_path):
    async with run_hub(CONFIG, tmp_path) as hub:
        health = record(hub, "camera.health.*")
        first = await eventually(
            lambda: [e for e in health.events if e.subject == "cfg-cam"], what="first report"
        )
        assert first[0].type == "camera.health.ok"
    async with run_hub(CONFIG, tmp_path) as hub:
        assert hub.last_health("cfg-cam") == "ok"
        health = record(hub, "camera.health.*")
        watcher = hub.plugins["watch"].obj.watcher
        tracker = await eventually(
            lambda: watcher.trackers.get("cfg-cam"), what="the first probe after the restart"
        )
        await watcher.probe_camera(hub.instance("cfg-cam"))  # and one more, for good measure
        assert tracker.reported == "ok"
        await hub.bus.drain()
        assert [e for e in health.events if e.subject == "cfg-cam"] == []
