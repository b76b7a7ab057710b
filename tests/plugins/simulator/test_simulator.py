"""The simulator drives the real interfaces: the hub sees failing, recovering cameras and
answering sirens exactly as it would see hardware."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from nabat.interfaces import (
    ActivationOutcome,
    Alert,
    AlertDevice,
    Camera,
    CameraHealthChange,
    CapSeverity,
    Certainty,
    DeviceState,
    GotoHome,
    GotoPreset,
    HealthState,
    Info,
    MsgType,
    NotSupported,
    SetPreset,
    Status,
    TransientError,
    Urgency,
    WarningMessage,
)
from nabat.testing import record, run_hub

CONFIG = """
[hub]
language = "en"
data_dir = "data"

[plugins.simulator]
settings = {{ incident_every = {incident}, exercise_every = {exercise}, seed = 7 }}

[plugins.watch.settings]
camera_interval = 0.05
device_interval = 0.05
jitter = 0.0
fail_after = 1      # every simulated fault is reported (no hysteresis in these tests)
recover_after = 1

[plugins.eventlog]
enabled = false

[instances.cam-a]
kind = "simulator.camera"
municipality = "krasnodar"
settings = {{ fault_rate = 1.0, recover_rate = 1.0, faults = ["black"], ptz = true }}

[instances.cam-b]
kind = "simulator.camera"
municipality = "sochi"
settings = {{ fault_rate = 0.0 }}

[instances.siren-a]
kind = "simulator.siren"
municipality = "krasnodar"
settings = {{ response_delay = 0.01, mains_failure_rate = 0.0 }}
"""


def config(incident: float = 0, exercise: float = 0) -> str:
    return CONFIG.format(incident=incident or 3600, exercise=exercise or 3600)


def alert(identifier: str = "urn:test:1") -> Alert:
    return Alert(
        identifier=identifier,
        sender="test@nabat",
        sent=datetime.now(UTC).replace(microsecond=0),
        status=Status.EXERCISE,
        msg_type=MsgType.ALERT,
        info=[
            Info(
                event="Учебная тревога",
                urgency=Urgency.IMMEDIATE,
                severity=CapSeverity.MINOR,
                certainty=Certainty.POSSIBLE,
            )
        ],
    )


async def test_cameras_fail_and_recover_and_only_changes_are_published(tmp_path):
    async with run_hub(config(), tmp_path) as hub:
        events = record(hub, "camera.health.>")
        await events.wait_for("camera.health.ok", subject="cam-a", timeout=5)
        await events.wait_for("camera.health.black", subject="cam-a", timeout=5)
        await events.wait_for(
            "camera.health.ok",
            subject="cam-a",
            where=lambda e: e.data.previous == HealthState.BLACK,
            timeout=5,
        )
        cam_a = [e for e in events.events if e.subject == "cam-a"]
        # Only changes: no two consecutive events carry the same state.
        states = [e.data.state for e in cam_a]
        assert all(a != b for a, b in itertools.pairwise(states))
        assert all(isinstance(e.data, CameraHealthChange) for e in cam_a)
        black = next(e for e in cam_a if e.data.state == HealthState.BLACK)
        assert black.municipality == "krasnodar" and black.severity == "moderate"
        assert "luma" in black.data.reason
        # … and as the code a console shows in the operator's language; the state keeps it.
        assert black.data.reason_code == "black_picture"
        assert all(e.data.reason_code == "picture_changing" for e in cam_a if e.data.state == "ok")
        # The steady camera reported once and never again.
        cam_b = [e.data.state for e in events.events if e.subject == "cam-b"]
        assert cam_b in ([], [HealthState.OK])


async def test_camera_interface_snapshot_ptz_profiles(tmp_path):
    async with run_hub(config(), tmp_path) as hub:
        cam = hub.instance("cam-a")
        assert isinstance(cam, Camera)
        info = await cam.describe()
        assert "ptz" in info.capabilities
        profiles = await cam.profiles()
        assert profiles[0].token == "main" and profiles[0].width == 1920
        with pytest.raises(NotSupported, match="stream_url"):  # no video unless given one
            await cam.stream_uri()
        cam.state = HealthState.OK
        shot = await cam.snapshot()
        assert shot.content[:3] == b"\xff\xd8\xff" and shot.content_type == "image/jpeg"
        cam.state = HealthState.UNREACHABLE
        with pytest.raises(TransientError):
            await cam.snapshot()
        await cam.ptz(SetPreset(name="Перекрёсток", preset="p1"))
        await cam.ptz(GotoHome())
        await cam.ptz(GotoPreset(preset="p1"))
        assert [p.token for p in await cam.presets()] == ["p1"]
        with pytest.raises(NotSupported):
            await hub.instance("cam-b").ptz(GotoHome())


async def test_siren_activation_is_idempotent_and_status_reports_it(tmp_path):
    async with run_hub(config(), tmp_path) as hub:
        siren = hub.instance("siren-a")
        assert isinstance(siren, AlertDevice)
        first = await siren.activate(alert(), WarningMessage(signal_seconds=60))
        again = await siren.activate(alert(), WarningMessage(signal_seconds=60))
        assert first.outcome == ActivationOutcome.ACTIVATED
        assert again == first  # a retried command does not start a second signal
        status = await siren.status()
        assert status.state == DeviceState.ACTIVE and status.active_alert == "urn:test:1"
        cancelled = await siren.cancel("urn:test:1")
        assert cancelled.outcome == ActivationOutcome.CANCELLED and cancelled.detail == "stopped"
        assert (await siren.status()).state == DeviceState.IDLE
        assert (await siren.self_test()).passed


async def test_scenario_publishes_incidents_and_runs_siren_exercises(tmp_path):
    async with run_hub(config(incident=0.05, exercise=0.1), tmp_path) as hub:
        events = record(hub, "incident.>", "alert.>")
        incident = await events.wait_for("incident.created", timeout=5)
        assert incident.municipality in {"krasnodar", "sochi"}
        assert incident.data.services and incident.correlationid == incident.subject
        assert incident.data.type and incident.data.title
        issued = await events.wait_for("alert.issued", timeout=5)
        assert issued.data.status == Status.EXERCISE
        activated = await events.wait_for("alert.device.activated", subject="siren-a", timeout=5)
        assert activated.correlationid == issued.data.identifier
        assert activated.municipality == "krasnodar"


async def test_exercises_never_touch_sirens_that_are_not_simulated(tmp_path):
    """A demo exercise must not sound a real siren enabled beside the simulator."""
    config_text = (
        config(exercise=0.05)
        + """
    [plugins.example_siren]

    [instances.real-siren]
    kind = "example_siren.controller"
    municipality = "krasnodar"
    settings = { host = "127.0.0.1", port = PORT }
    """
    )
    import asyncio

    commands: list[str] = []

    async def controller(reader, writer):
        while line := await reader.readline():
            commands.append(line.decode().strip())
            reply = (
                "OK state=idle mains=1 battery=97 tamper=0 alert=-"
                if line.startswith(b"STATUS")
                else "OK"
            )
            writer.write((reply + "\n").encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(controller, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        async with run_hub(config_text.replace("PORT", str(port)), tmp_path) as hub:
            events = record(hub, "alert.>")
            await events.wait_for_count("alert.device.activated", 2, timeout=5)
            assert {e.subject for e in events.of_type("alert.device.*")} == {"siren-a"}
            assert hub.state_of("real-siren") == "running"
    assert not any(c.startswith("ACTIVATE") for c in commands)


PLACED = """
[hub]
language = "ru"
data_dir = "data"

[plugins.simulator]
settings = {{ incident_every = {every}, incident_lasts = {lasts}, exercise_every = 3600, seed = 3 }}

[plugins.eventlog]
enabled = false

[instances.krd-cam]
kind = "simulator.camera"
name = "Краснодар, ул. Красная"
municipality = "krasnodar"
lat = 45.0355
lon = 38.9753
settings = {{ fault_rate = 0.0 }}
"""


async def test_incidents_happen_near_a_camera_which_the_hub_links_and_they_close(tmp_path):
    """The demo shows the nearest-cameras feature: an incident has a place and an address
    a few hundred metres from a camera, the hub links that camera to it, and the simulator
    closes the incident after ``incident_lasts``."""
    from nabat.geo import distance_km
    from nabat.interfaces import IncidentStatus

    async with run_hub(PLACED.format(every=0.05, lasts=0.3), tmp_path) as hub:
        events = record(hub, "incident.>")
        created = await events.wait_for("incident.created", timeout=5)
        incident = created.data
        assert incident.location is not None
        assert incident.address.startswith("Краснодар, ул. Красная, д. ")
        metres = 1000 * distance_km(incident.location.lat, incident.location.lon, 45.0355, 38.9753)
        assert 40 <= metres <= 410
        assert [c.id for c in incident.cameras] == ["krd-cam"]
        closed = await events.wait_for("incident.closed", subject=created.subject, timeout=5)
        assert closed.data.status is IncidentStatus.CLOSED
        assert closed.data.location == incident.location  # the whole incident, closed


async def test_incidents_left_open_by_a_stopped_demo_are_closed_by_the_next_run(tmp_path):
    # The first run stops with its incident open (it lasts 3 s)…
    async with run_hub(PLACED.format(every=0.05, lasts=3), tmp_path) as hub:
        events = record(hub, "incident.>")
        created = await events.wait_for("incident.created", timeout=5)
        card = created.subject
    assert not [e for e in events.of_type("incident.closed") if e.subject == card]
    # … the next one, which reports none of its own, closes it when its time is up.
    async with run_hub(PLACED.format(every=3600, lasts=3), tmp_path) as hub:
        events = record(hub, "incident.closed")
        closed = await events.wait_for("incident.closed", subject=card, timeout=10)
        assert closed.data.external_id == card
