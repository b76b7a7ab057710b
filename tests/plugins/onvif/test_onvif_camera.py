"""The ``onvif.camera`` driver in a real hub, over real HTTP against the simulated ONVIF device
(``tests/fixtures/onvif_device.py``) whose stream URI points at the real RTSP server: one
camera with credentials (and a wrong clock), one without, one that drops its subscriptions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from nabat.interfaces import (
    AbsoluteMove,
    ContinuousMove,
    GotoHome,
    GotoPreset,
    NotSupported,
    RelativeMove,
    SetPreset,
    Stop,
    TransientError,
)
from nabat.store import EventQuery
from nabat.testing import eventually, record, run_hub


def _load_onvif_device() -> Any:
    name = "nabat_tests_onvif_device"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "fixtures" / "onvif_device.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


OnvifDevice = _load_onvif_device().OnvifDevice
ProfileSpec = _load_onvif_device().ProfileSpec
MOTION = "tns1:VideoSource/MotionAlarm"
SOURCE = {"VideoSourceConfigurationToken": "vsc1"}


def changed(recorder: Any) -> list[Any]:
    """The events that report a change (not the state a new subscription starts with)."""
    return [e for e in recorder.events if e.data.source.get("operation") == "Changed"]


def config(*instances: str) -> str:
    return """
[hub]
language = "en"
data_dir = "data"
retry_initial = 0.2
retry_max = 1.0
needs_auth_retry = 3600.0

[plugins.eventlog]
enabled = false

[plugins.onvif]
enabled = true

[plugins.watch.settings]
camera_interval = 3600.0
jitter = 0.0
fail_after = 1
recover_after = 1
""" + "\n".join(instances)


def instance(name: str, device: Any, **settings: Any) -> str:
    values = {"host": "127.0.0.1", "port": device.port, **settings}
    rendered = ", ".join(
        f"{k} = {v}" if isinstance(v, (int, float)) or v.startswith("{") else f'{k} = "{v}"'
        for k, v in values.items()
    )
    return (
        f'[instances.{name}]\nkind = "onvif.camera"\nmunicipality = "sochi"\n'
        f"settings = {{ {rendered} }}\n"
    )


async def test_a_camera_with_credentials_end_to_end(tmp_path, rtsp_server, monkeypatch):
    monkeypatch.setenv("ONVIF_TEST_PASSWORD", rtsp_server.password)
    async with OnvifDevice(
        username=rtsp_server.user,
        password=rtsp_server.password,
        rtsp_uri=rtsp_server.url("/secure"),
        clock_offset_s=3600,  # WS-Security would fail without the drift taken into account
        snapshot_auth="digest",
        max_subscriptions=1,  # a leaked subscription would make the next one fail
        profiles=(
            ProfileSpec("main", ptz=True),
            ProfileSpec("sub", width=640, height=360, uri=rtsp_server.url("/secure")),
        ),
    ) as device:
        cam = instance(
            "cam-auth",
            device,
            username=rtsp_server.user,
            password='{ env = "ONVIF_TEST_PASSWORD" }',
            subscription_s=2,
            pull_timeout_s=1,
        )
        async with run_hub(config(cam), tmp_path) as hub:
            seen = record(hub, "camera.>")
            assert hub.state_of("cam-auth") == "running", hub.status_of("cam-auth").reason
            camera = hub.instance("cam-auth")
            info = await camera.describe()
            assert (info.manufacturer, info.model, info.serial) == (
                "Nabat Test",
                "SimCam 1",
                "SN0001",
            )
            assert {"media", "ptz", "events", "snapshot"} <= info.capabilities
            assert info.clock_offset_s == pytest.approx(3600, abs=2)
            assert [p.token for p in await camera.profiles()] == ["main", "sub"]
            assert (await camera.stream_uri()).uri == rtsp_server.url("/secure")
            assert (await camera.stream_uri("sub")).uri == rtsp_server.url("/secure")

            # The clock drift is reported; health comes from decoding the secured stream.
            page = await hub.journal.query(EventQuery(types=("camera.clock.*",)))
            [drift] = [stored.event for stored in page.events]
            assert drift.type == "camera.clock.drift" and drift.subject == "cam-auth"
            assert drift.data.offset_s == pytest.approx(3600, abs=2)
            health = await eventually(
                lambda: [e for e in seen.events if e.type.startswith("camera.health.")],
                what="the first probe",
                timeout=20,
            )
            assert health[0].type == "camera.health.ok", health[0].data.reason
            assert health[0].data.codec

            # Snapshot from GetSnapshotUri with Digest auth.
            picture = await camera.snapshot()
            assert picture.content[:2] == b"\xff\xd8"
            assert ("Snapshot", {"profile": "main"}) in device.calls

            # PTZ: every command reaches the device as ONVIF asks.
            await camera.ptz(AbsoluteMove(pan=0.25, tilt=-0.5, zoom=0.75))
            assert device.ptz_position == pytest.approx((0.25, -0.5, 0.75))
            await camera.ptz(RelativeMove(pan=0.5))
            assert device.ptz_position[0] == pytest.approx(0.75)
            await camera.ptz(ContinuousMove(pan=0.5, timeout_s=5))
            await camera.ptz(Stop())
            assert device.ptz_velocity is None
            await camera.ptz(SetPreset(name="Gate"))
            presets = {p.name: p.token for p in await camera.presets()}
            assert "Gate" in presets
            await camera.ptz(GotoPreset(preset=presets["Preset 2"]))
            assert device.ptz_position == pytest.approx((-0.5, 0.25, 0.5))
            await camera.ptz(GotoHome())
            assert device.ptz_position == pytest.approx((0.0, 0.0, 0.0))
            with pytest.raises(TransientError, match=r"GotoPreset.*SOAP fault"):
                await camera.ptz(GotoPreset(preset="99"))
            with pytest.raises(NotSupported, match="'sub' has no PTZ"):
                await camera.ptz(Stop(profile="sub"))

            # Events: published as camera.event.motion; the subscription is renewed, and
            # re-created after the camera reboots.
            await device.wait_for_call("PullMessages")
            device.emit(MOTION, source=SOURCE, data={"State": "true"})
            motion = await eventually(
                lambda: [e for e in seen.events if e.type == "camera.event.motion"], what="motion"
            )
            assert motion[0].data.active is True and motion[0].data.source["topic"] == MOTION
            assert motion[0].subject == "cam-auth" and motion[0].municipality == "sochi"
            await device.wait_for_call("Renew", timeout=10)
            assert len(device.subscriptions) == 1

            device.reboot()
            await device.wait_for_call("CreatePullPointSubscription", 2, timeout=10)
            await eventually(lambda: len(device.subscriptions) == 1, what="a new subscription")
            device.emit(MOTION, source=SOURCE, data={"State": "false"})
            await eventually(
                lambda: any(
                    e.type == "camera.event.motion" and e.data.active is False for e in seen.events
                ),
                what="motion after the reboot",
            )
            assert camera.resubscriptions >= 1
            assert device.auth_failures == 0
        # Stopped: the camera's subscription was removed, not leaked.
        assert device.subscriptions == {}
        assert device.operations("Unsubscribe")


async def test_a_camera_without_credentials_or_ptz(tmp_path, rtsp_server):
    async with OnvifDevice(
        username=None,
        password=None,
        ptz=False,
        events=False,
        snapshot=False,
        profiles=(ProfileSpec("main", uri=rtsp_server.url("/black")),),
    ) as device:
        async with run_hub(config(instance("cam-open", device)), tmp_path) as hub:
            seen = record(hub, "camera.>")
            assert hub.state_of("cam-open") == "running", hub.status_of("cam-open").reason
            camera = hub.instance("cam-open")
            info = await camera.describe()
            assert "ptz" not in info.capabilities and "events" not in info.capabilities
            assert camera.events() is None
            with pytest.raises(NotSupported, match="no PTZ"):
                await camera.ptz(Stop())
            with pytest.raises(NotSupported):
                await camera.snapshot()  # the hub then encodes a frame of the stream
            picture = await hub.snapshots.get("cam-open", camera)
            assert picture.content[:2] == b"\xff\xd8"
            health = await eventually(
                lambda: [e for e in seen.events if e.type.startswith("camera.health.")],
                what="the first probe",
                timeout=20,
            )
            assert health[0].type == "camera.health.black"
            assert not [e for e in seen.events if e.type.startswith("camera.clock.")]


async def test_a_camera_that_drops_its_subscriptions_keeps_sending_events(
    tmp_path, rtsp_server, monkeypatch
):
    monkeypatch.setenv("DROP_PW", "secret")
    async with OnvifDevice(
        password="secret",
        drop_subscriptions_after=2,
        max_subscriptions=1,
        rtsp_uri=rtsp_server.url("/live"),
    ) as device:
        cam = instance(
            "cam-drop", device, username="admin", password='{ env = "DROP_PW" }', pull_timeout_s=1
        )
        async with run_hub(config(cam), tmp_path) as hub:
            seen = record(hub, "camera.event.*")
            for n in range(1, 7):
                state = n % 2 == 1
                pulls = len(device.operations("PullMessages"))
                await device.wait_for_call("PullMessages", pulls + 1, timeout=10)
                device.emit(MOTION, source=SOURCE, data={"State": "true" if state else "false"})
                # Emitted while a subscription was live: a change; while it was being
                # re-created: the initial state of the new one. Either way it arrives.
                await eventually(
                    lambda state=state: seen.events and seen.events[-1].data.active is state,
                    what=f"state {state} of emit {n}",
                )
            camera = hub.instance("cam-drop")
            assert camera.resubscriptions >= 2
            assert len(device.operations("CreatePullPointSubscription")) >= 3
            assert changed(seen)
        assert device.subscriptions == {}


async def test_bad_credentials_and_unreachable_cameras_are_classified(tmp_path, monkeypatch):
    monkeypatch.setenv("WRONG_PW", "not-it")
    async with OnvifDevice(password="right") as device:
        wrong = instance("cam-wrong", device, username="admin", password='{ env = "WRONG_PW" }')
        gone = instance("cam-gone", device).replace(f"port = {device.port}", "port = 9")
        async with run_hub(config(wrong, gone), tmp_path) as hub:
            await eventually(lambda: hub.state_of("cam-wrong") == "needs_auth", what="needs_auth")
            assert "rejected the credentials" in hub.status_of("cam-wrong").reason
            assert "not-it" not in hub.status_of("cam-wrong").reason
            await eventually(lambda: hub.state_of("cam-gone") == "retrying", what="retrying")
            assert "cannot connect" in hub.status_of("cam-gone").reason
            assert hub.status_of("cam-gone").retry_in_s is not None


async def test_a_profile_the_camera_lacks_is_a_named_configuration_error(tmp_path):
    async with OnvifDevice(username=None, password=None) as device:
        bad = instance("cam-profile", device, profile="nope")
        async with run_hub(config(bad), tmp_path) as hub:
            assert hub.state_of("cam-profile") == "failed"
            reason = hub.status_of("cam-profile").reason
            assert (
                "no media profile 'nope' (it has: main (H264 1920x1080), sub (H264 640x360))"
                in reason
            )


def test_inventory_rows_become_onvif_settings():
    from nabat_onvif.camera import OnvifCamera

    assert OnvifCamera.inventory_settings("10.20.0.7:8080", "admin", None) == {
        "host": "10.20.0.7",
        "port": 8080,
        "username": "admin",
        "password": None,
    }
    assert OnvifCamera.inventory_settings("cam-1.example.ru", None, None)["port"] == 80
    assert OnvifCamera.inventory_settings("[2001:db8::5]:81", None, None)["host"] == "2001:db8::5"
    assert OnvifCamera.inventory_settings("https://cam.example.ru", None, None)["port"] == 443
    with pytest.raises(ValueError, match="host\\[:port\\]"):
        OnvifCamera.inventory_settings("rtsp://10.0.0.5/stream", None, None)


@pytest.mark.parametrize("refusal", ["fault", "http401"])
async def test_a_camera_that_wants_credentials_for_its_clock(tmp_path, monkeypatch, refusal):
    """Unauthenticated GetSystemDateAndTime refused (NotAuthorized, or HTTP 401): asked once
    more with the credentials; only a refusal of those is needs_auth."""
    monkeypatch.setenv("CLOCK_PW", "secret")
    monkeypatch.setenv("CLOCK_WRONG", "not-it")
    async with OnvifDevice(password="secret", clock_auth=refusal, events=False) as device:
        right = instance("cam-clock", device, username="admin", password='{ env = "CLOCK_PW" }')
        wrong = instance("cam-bad", device, username="admin", password='{ env = "CLOCK_WRONG" }')
        async with run_hub(config(right), tmp_path) as hub:
            assert hub.state_of("cam-clock") == "running", hub.status_of("cam-clock").reason
            info = await hub.instance("cam-clock").describe()
            assert info.clock_offset_s == pytest.approx(0, abs=2)
            # One refusal: the unauthenticated clock call; the signed one was answered.
            assert device.auth_failures == 1
            assert device.operations("GetSystemDateAndTime")
        (tmp_path / "wrong").mkdir()
        async with run_hub(config(wrong), tmp_path / "wrong") as hub:
            await eventually(lambda: hub.state_of("cam-bad") == "needs_auth", what="needs_auth")
            reason = hub.status_of("cam-bad").reason
            assert reason.startswith("GetSystemDateAndTime: the camera rejected the credentials")


async def test_a_camera_far_off_in_time_that_wants_credentials_for_its_clock(
    tmp_path, rtsp_server, monkeypatch
):
    """Two hours behind and no clock without credentials: the signed clock call is refused
    for its timestamp until it is signed with the offset the camera's HTTP Date shows; every
    later request carries the measured offset."""
    monkeypatch.setenv("SKEW_PW", "secret")
    async with OnvifDevice(
        password="secret",
        clock_auth="fault",
        clock_offset_s=-7200,
        events=False,
        profiles=(ProfileSpec("main", ptz=True, uri=rtsp_server.url("/live")),),
    ) as device:
        cam = instance("cam-skew", device, username="admin", password='{ env = "SKEW_PW" }')
        async with run_hub(config(cam), tmp_path) as hub:
            seen = record(hub, "camera.>")
            assert hub.state_of("cam-skew") == "running", hub.status_of("cam-skew").reason
            camera = hub.instance("cam-skew")
            info = await camera.describe()
            assert info.clock_offset_s == pytest.approx(-7200, abs=2)
            assert (device.last_auth_error or "").startswith("Created is +7")  # 2 h ahead of it
            await camera.ptz(AbsoluteMove(pan=0.5, tilt=0.5))
            assert device.ptz_position[:2] == pytest.approx((0.5, 0.5))
            health = await eventually(
                lambda: [e for e in seen.events if e.type.startswith("camera.health.")],
                what="the first probe",
                timeout=20,
            )
            assert health[0].type == "camera.health.ok", health[0].data.reason
            page = await hub.journal.query(EventQuery(types=("camera.clock.*",)))
            assert [stored.event.type for stored in page.events] == ["camera.clock.drift"]
            # Refused: the unauthenticated clock call and the signed one without the offset.
            assert device.auth_failures == 2


async def test_profiles_choose_the_probe_snapshot_and_live_streams(tmp_path, rtsp_server):
    """An H.265 main stream, an H.264 sub-stream, a JPEG one and a profile without a video
    encoder: the probe reads the smallest H.264 one, snapshots come from the main one, live
    video is the H.264 one a browser plays; settings pick others by token or name."""
    profiles = (
        ProfileSpec(
            "p0",
            name="Main",
            encoding="H265",
            width=2560,
            height=1440,
            ptz=True,
            uri=rtsp_server.url("/black"),
        ),
        ProfileSpec(
            "p1", name="Sub", width=640, height=360, fps=None, uri=rtsp_server.url("/live")
        ),
        ProfileSpec(
            "p2", name="Jpeg", encoding="JPEG", width=320, height=240, uri=rtsp_server.url("/mjpeg")
        ),
        ProfileSpec("p3", name="Metadata", encoding=None),
    )
    async with OnvifDevice(username=None, password=None, events=False, profiles=profiles) as d:
        auto = instance("cam-auto", d)
        chosen = instance("cam-main", d, probe_profile="Main", live_profile="p2")
        bad = instance("cam-bad", d, snapshot_profile="nope")
        async with run_hub(config(auto, chosen, bad), tmp_path) as hub:
            seen = record(hub, "camera.health.*")
            camera = hub.instance("cam-auto")
            found = {p.token: p for p in await camera.profiles()}
            assert (found["p0"].encoding, found["p0"].width, found["p0"].height) == (
                "H265",
                2560,
                1440,
            )
            assert (found["p1"].encoding, found["p1"].fps, found["p1"].fps) == ("H264", None, None)
            assert found["p2"].fps == 25 and found["p3"].encoding == "" and not found["p3"].width
            assert {t: p.roles for t, p in found.items()} == {
                "p0": {"snapshot"},
                "p1": {"probe", "live"},
                "p2": frozenset(),
                "p3": frozenset(),
            }
            other = {p.token: p.roles for p in await hub.instance("cam-main").profiles()}
            assert other == {"p0": {"probe", "snapshot"}, "p1": set(), "p2": {"live"}, "p3": set()}

            states = await eventually(
                lambda: (
                    {e.subject: e.type for e in seen.events}
                    if len({e.subject for e in seen.events}) == 2
                    else None
                ),
                what="both cameras probed",
                timeout=20,
            )
            # The main stream is black: only the sub-stream's probe can be ok.
            assert states == {
                "cam-auto": "camera.health.ok",
                "cam-main": "camera.health.black",
            }
            [health] = [e.data for e in seen.events if e.subject == "cam-auto"]
            assert (health.codec, health.width, health.height) == ("h264", 320, 240)
            uris = [a["ProfileToken"] for a in d.operations("GetStreamUri")]
            assert "p1" in uris and uris.count("p0") == 1  # p0: cam-main's probe only

            await camera.snapshot()
            assert ("Snapshot", {"profile": "p0"}) in d.calls
            assert hub.state_of("cam-bad") == "failed"
            assert hub.status_of("cam-bad").reason.endswith(
                "snapshot_profile 'nope': the camera has no media profile with that token or "
                "name (it has: p0 (H265 2560x1440), p1 (H264 640x360), p2 (JPEG 320x240), p3)"
            )


async def test_odd_answers_degrade_one_feature_not_the_camera(tmp_path, caplog):
    """A SetPreset answer with an undeclared ``ptz:`` prefix (lxml: "Invalid tag name") is
    confirmed by the preset list; a clock answer without UTCDateTime leaves the drift unknown;
    the camera keeps running."""
    async with OnvifDevice(
        username=None,
        password=None,
        events=False,
        set_preset_prefix="ptz",
        omit=frozenset({"UTCDateTime"}),
    ) as device:
        async with run_hub(config(instance("cam-odd", device)), tmp_path) as hub:
            assert hub.state_of("cam-odd") == "running", hub.status_of("cam-odd").reason
            camera = hub.instance("cam-odd")
            assert (await camera.describe()).clock_offset_s is None
            await camera.ptz(SetPreset(name="Gate"))
            assert "Gate" in device.presets.values()
            [odd] = [r.fields for r in caplog.records if r.getMessage() == "onvif.odd_answer"]
            assert "Invalid tag name 'ptz:PresetToken'" in odd["error"]
            assert odd["outcome"].startswith("preset 'Gate' is saved")
            # Overwriting a preset token the camera lacks: a fault, named, not a 502 riddle.
            with pytest.raises(
                TransientError, match=r"SetPreset: the camera answered with a SOAP fault: .*NoToken"
            ):
                await camera.ptz(SetPreset(name="Other", preset="99"))
            assert hub.state_of("cam-odd") == "running"
