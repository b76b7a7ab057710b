"""Event types the hub reports itself cannot be written through the ingest API: a token of
one municipality must not make another's dead camera show as working (or a silent siren as
sounding). Tried for every reserved family, with a district token and a regional one."""

from __future__ import annotations

from datetime import UTC, datetime

import nabat_police.plugin
import nabat_simulator.plugin
import pytest
from nabat.events import Event
from nabat.interfaces.camera import HealthState
from nabat.interfaces.payloads import CameraHealthChange


@pytest.fixture
def api_plugins():
    return {"simulator": nabat_simulator.plugin.SimulatorPlugin(), "police": nabat_police.plugin}


@pytest.fixture
def api_config():
    return """
[plugins.simulator]
settings = { incident_every = 0, exercise_every = 0 }
[plugins.police]
[instances.krd-cam]
kind = "simulator.camera"
municipality = "krasnodar"
settings = { fault_rate = 0.0 }
[cameras]
targets = { krasnodar = 1 }
"""


def health(camera: str, state: str, source: str) -> Event:
    now = datetime.now(UTC)
    return Event(
        type=f"camera.health.{state}",
        source=source,
        subject=camera,
        municipality="krasnodar",
        data=CameraHealthChange(
            camera=camera, state=HealthState(state), previous=None, checked_at=now
        ),
    )


FORGED = [
    (
        "camera.health.ok",
        {"camera": "krd-cam", "state": "ok", "checked_at": "2026-12-06T10:00:00Z"},
    ),
    ("camera.health.offline", {"camera": "krd-cam", "state": "offline"}),
    ("camera.event.motion", {"topic": "motion"}),
    ("camera.clock.ok", {}),
    ("siren.status.idle", {"device": "krd-siren", "state": "idle"}),
    ("siren.readiness.passed", {}),
    ("alert.device.activated", {"alert": "a-1", "device": "krd-siren", "outcome": "activated"}),
    ("alert.completed", {}),
    ("hub.unit.running", {}),
    ("recording.storage.recovered", {"storage": "video", "detail": "writable again"}),
    ("police.hotlist.hit", {"plate": "А123ВС93", "camera": "krd-cam"}),
    ("simulator.anything", {}),
]


def forged(i: int, event_type: str, data: dict, municipality: str) -> dict:
    return {
        "specversion": "1.0",
        "id": f"forged-{i}",
        "source": "/nabat/instances/krd-cam",  # even the camera's own source name
        "type": event_type,
        "municipality": municipality,
        "data": data,
    }


async def camera_state(client, camera: str) -> str | None:
    answer = await client.get(f"/api/v1/cameras/{camera}")
    assert answer.status_code == 200, answer.text
    return (answer.json().get("health") or {}).get("state")


async def test_no_token_can_forge_what_the_hub_reports_itself(api):
    hub = api.hub
    # The watch found the Krasnodar camera dead.
    await hub.publish(health("krd-cam", "unreachable", "/nabat/instances/krd-cam"))
    reader = await api.client("events:read", "cameras:read")
    assert await camera_state(reader, "krd-cam") == "unreachable"
    before = len((await reader.get("/api/v1/events", params={"limit": 500})).json()["events"])

    sochi = await api.client("events:write", municipalities=("sochi",))
    regional = await api.client("events:write", "admin")
    for client, municipality in ((sochi, "sochi"), (regional, "krasnodar")):
        for i, (event_type, data) in enumerate(FORGED):
            one = forged(i, event_type, data, municipality)
            answer = await client.post("/api/v1/events", json=one)
            assert answer.status_code == 403, (event_type, answer.text)
            problem = answer.json()
            assert problem["type"].endswith("reserved-type"), problem
            assert problem["errors"][0]["field"] == "type"
            assert "reserved" in problem["errors"][0]["reason"]
        # In a batch with good events, nothing of the batch is stored either.
        batch = [
            {
                **forged(90, "incident.created", {}, municipality),
                "id": "good-1",
                "source": "urn:agency:test",
            },
            forged(91, "camera.health.ok", FORGED[0][1], municipality),
        ]
        answer = await client.post("/api/v1/events", json=batch)
        assert answer.status_code == 403, answer.text
        assert [e["index"] for e in answer.json()["errors"]] == [1]

    assert await camera_state(reader, "krd-cam") == "unreachable"
    after = (await reader.get("/api/v1/events", params={"limit": 500})).json()["events"]
    assert len(after) == before  # not one forged event reached the journal
    report = (await reader.get("/api/v1/reports/cameras")).json()
    krd = next(d for d in report["districts"] if d["municipality"] == "krasnodar")
    assert krd["offline"] == 1 and krd["ok"] == 0

    # What outside callers are for still works: an incident of their own district.
    incident = {**forged(99, "incident.created", {"title": "ДТП"}, "sochi"), "source": "urn:x"}
    assert (await sochi.post("/api/v1/events", json=incident)).status_code == 202


async def test_a_health_change_not_from_the_camera_itself_is_not_believed(api):
    hub = api.hub
    await hub.publish(health("krd-cam", "unreachable", "/nabat/instances/krd-cam"))
    await hub.publish(health("krd-cam", "ok", "/nabat/instances/sochi-cam"))
    await hub.publish(health("krd-cam", "ok", "/plugins/someone"))
    await hub.bus.drain()
    assert hub.camera_states.get("krd-cam").state is HealthState.UNREACHABLE
    reader = await api.client("cameras:read", "events:read")
    report = (await reader.get("/api/v1/reports/cameras")).json()
    krd = next(d for d in report["districts"] if d["municipality"] == "krasnodar")
    assert krd["offline"] == 1 and krd["ok"] == 0


async def test_look_alike_types_and_the_hubs_own_sources_are_refused_too(api):
    sochi = await api.client("events:write", municipalities=("sochi",))
    look_alikes = ["Camera.health.ok", "CAMERA.HEALTH.OK", "camera", "Siren.Status.idle"]
    for i, event_type in enumerate(look_alikes):
        one = {**forged(i, event_type, {}, "sochi"), "source": "urn:agency:test"}
        answer = await sochi.post("/api/v1/events", json=one)
        assert answer.status_code == 403, (event_type, answer.text)
    homoglyph = {**forged(20, "сamera.health.ok", {}, "sochi"), "source": "urn:agency:test"}
    answer = await sochi.post("/api/v1/events", json=homoglyph)  # a Cyrillic «с»
    assert answer.status_code == 422 and "ASCII" in answer.json()["errors"][0]["reason"]
    # An event under a harmless type but with the hub's own (source, id) would take the place
    # of the hub's: a scheduled job's claim of its next slot, say (the journal keeps one event
    # per source and id, so the camera sweep would skip that run everywhere).
    for source, event_id in [
        ("/nabat/jobs/watch:cameras", "watch:cameras@1999999999"),
        ("/NABAT/instances/krd-cam", "x-1"),
        ("/nabat/rules/flood", "x-2"),
    ]:
        one = {**forged(30, "agency.note", {"run": "x"}, "sochi"), "source": source, "id": event_id}
        answer = await sochi.post("/api/v1/events", json=one)
        assert answer.status_code == 403, (source, answer.text)
        assert answer.json()["errors"][0]["field"] == "source"
    assert (
        await api.hub.journal.get("/nabat/jobs/watch:cameras", "watch:cameras@1999999999") is None
    )


async def test_no_caller_can_say_an_event_happened_at_another_site(api):
    # A followed site's events carry their site; a caller claiming one would slip past this
    # hub's rules and incidents (another site's events are not this hub's triggers) and
    # out of its up-path (they are not "ours").
    sochi = await api.client("events:write", municipalities=("sochi",))
    one = {**forged(40, "agency.note", {"x": 1}, "sochi"), "source": "urn:agency:test"}
    answer = await sochi.post("/api/v1/events", json={**one, "site": "site-b"})
    assert answer.status_code == 403, answer.text
    assert answer.json()["errors"][0]["field"] == "site"
    assert await api.hub.journal.get("urn:agency:test", one["id"]) is None
