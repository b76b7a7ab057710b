"""Incidents over the API: opened by an operator or reported by events, the nearest cameras
linked with the snapshots they gave then, municipality from the location, district tokens
limited to theirs, closing."""

from __future__ import annotations

import pytest
from nabat.testing import eventually, record

# Krasnodar's centre and cameras 80 m, 300 m, 700 m and 5 km from it; one in Sochi.
HERE = {"lat": 45.0355, "lon": 38.9753}


@pytest.fixture
def api_discover():
    return True  # the installed simulator plugin


@pytest.fixture
def api_config():
    cameras = {
        "cam-80m": (45.0362, 38.9753),
        "cam-300m": (45.0382, 38.9753),
        "cam-700m": (45.0418, 38.9753),
        "cam-5km": (45.0805, 38.9753),
        "cam-sochi": (43.5855, 39.7231),
    }
    text = "[plugins.simulator]\n[incidents]\ncameras = 2\ncamera_radius = 1000\n"
    for name, (lat, lon) in cameras.items():
        muni = "sochi" if name == "cam-sochi" else "krasnodar"
        text += f"""
[instances.{name}]
kind = "simulator.camera"
municipality = "{muni}"
lat = {lat}
lon = {lon}
settings.fault_rate = 0.0
"""
    return text


async def test_an_operator_opens_an_incident_and_sees_the_nearest_cameras_as_they_were(api):
    changes = record(api.hub, "incident.*")
    async with await api.client("events:write", "events:read", "cameras:read") as http:
        r = await http.post(
            "/api/v1/incidents",
            json={
                "type": "traffic_accident",
                "title": "ДТП на ул. Красной",
                "location": HERE,
                "services": ["03", "02", "03"],
                "victims": 2,
            },
        )
        assert r.status_code == 201, r.text
        opened = r.json()
        incident_id = opened["id"]
        # The municipality comes from the outline the point lies in.
        assert opened["municipality"] == "krasnodar"
        assert opened["incident"]["services"] == ["02", "03"]
        # The two nearest within 1 km, nearest first, linked at once.
        linked = opened["incident"]["cameras"]
        assert [c["id"] for c in linked] == ["cam-80m", "cam-300m"]
        assert 70 < linked[0]["distance_m"] < 90

        # Their snapshots follow in an update.
        await eventually(
            lambda: [e for e in changes.events if e.type == "incident.updated"],
            what="the update with snapshots",
        )
        r = await http.get(f"/api/v1/incidents/{incident_id}")
        cameras = r.json()["incident"]["cameras"]
        assert all(c["snapshot"] for c in cameras), cameras
        picture = await http.get(cameras[0]["snapshot"])
        assert picture.status_code == 200
        assert picture.headers["content-type"] == "image/jpeg"
        assert picture.content[:2] == b"\xff\xd8"
        assert [e.type for e in changes.events] == ["incident.created", "incident.updated"]
        assert {e.subject for e in changes.events} == {incident_id}

        r = await http.post(f"/api/v1/incidents/{incident_id}/close")
        assert r.status_code == 200 and r.json()["closed_at"]
        await eventually(
            lambda: [e for e in changes.events if e.type == "incident.closed"], what="closed"
        )
        # Closing again changes nothing and publishes nothing.
        r = await http.post(f"/api/v1/incidents/{incident_id}/close")
        assert r.status_code == 200
        r = await http.get("/api/v1/incidents", params={"status": "closed"})
        assert [i["id"] for i in r.json()["items"]] == [incident_id]
        assert [e.type for e in changes.events].count("incident.closed") == 1


async def test_incidents_reported_by_events_are_kept_and_get_cameras(api):
    changes = record(api.hub, "incident.*")
    async with await api.client("events:write") as http:
        r = await http.post(
            "/api/v1/events",
            json={
                "specversion": "1.0",
                "id": "ext-1",
                "type": "incident.created",
                "source": "urn:agency:flood-watch",
                "subject": "flood-17",
                "data": {"type": "flood", "location": {"lat": 43.5856, "lon": 39.7230}},
            },
        )
        assert r.status_code == 202, r.text
    await eventually(
        lambda: [e for e in changes.events if e.type == "incident.updated"], what="cameras"
    )

    async def pictured():
        # The event is published before the record is written (the journal is the truth):
        # just after incident.updated the record may not show the cameras yet.
        kept = await api.hub.incidents.get("flood-17")
        cameras = kept.incident.cameras if kept else []
        return kept if cameras and cameras[0].snapshot_at else None

    found = await eventually(pictured, what="the snapshot")
    assert found.municipality == "sochi"
    assert [c.id for c in found.incident.cameras] == ["cam-sochi"]

    # A later report by event without cameras keeps the cameras and the snapshots taken then.
    async with await api.client("events:write") as http:
        r = await http.post(
            "/api/v1/events",
            json={
                "specversion": "1.0",
                "id": "ext-2",
                "type": "incident.updated",
                "source": "urn:agency:flood-watch",
                "subject": "flood-17",
                "data": {
                    "type": "flood",
                    "victims": 3,
                    "location": {"lat": 43.5856, "lon": 39.7230},
                },
            },
        )
        assert r.status_code == 202, r.text
    await _caught_up(api)
    updated = await api.hub.incidents.get("flood-17")
    assert updated.version == found.version + 1 and updated.incident.victims == 3
    assert updated.incident.cameras == found.incident.cameras

    # Another municipality's event cannot take the incident over or wipe it.
    async with await api.client("events:write", municipalities=("krasnodar",)) as http:
        r = await http.post(
            "/api/v1/events",
            json={
                "specversion": "1.0",
                "id": "ext-3",
                "type": "incident.closed",
                "source": "urn:agency:prank",
                "subject": "flood-17",
                "municipality": "krasnodar",
                "data": {"title": "gone"},
            },
        )
        assert r.status_code == 202, r.text
    await _caught_up(api)
    kept = await api.hub.incidents.get("flood-17")
    assert kept.municipality == "sochi" and kept.incident.status == "open"
    assert kept.incident.victims == 3 and kept.version == updated.version


async def _caught_up(api) -> None:
    """Wait until the incident records have seen every event appended so far."""
    last = await api.hub.journal.last_seq()

    async def done():
        state = await api.hub.journal.subscription("incidents")
        return state.cursor >= last

    await eventually(done, what="the incident records to catch up")


async def test_district_tokens_see_only_their_incidents(api):
    async with await api.client("events:write", "events:read") as http:
        for point in (HERE, {"lat": 43.5855, "lon": 39.7231}):
            r = await http.post("/api/v1/incidents", json={"title": "пожар", "location": point})
            assert r.status_code == 201, r.text
        sochi = r.json()["id"]
    async with await api.client("events:read", municipalities=("sochi",)) as http:
        r = await http.get("/api/v1/incidents")
        assert [i["id"] for i in r.json()["items"]] == [sochi]
        assert (
            await http.get("/api/v1/incidents", params={"municipality": "krasnodar"})
        ).status_code == 403
    async with await api.client("events:write", municipalities=("sochi",)) as http:
        r = await http.post("/api/v1/incidents", json={"title": "x", "location": HERE})
        assert r.status_code == 403


async def test_bad_incidents_are_refused_with_the_reason(api):
    async with await api.client("events:write") as http:
        r = await http.post("/api/v1/incidents", json={"description": "no title, no type"})
        assert r.status_code == 400 and "title" in r.text
        r = await http.post(
            "/api/v1/incidents", json={"title": "x", "location": {"lat": 95, "lon": 0}}
        )
        assert r.status_code == 400 and "lat" in r.text
        r = await http.post("/api/v1/incidents", json={"title": "x", "services": ["05"]})
        assert r.status_code == 400
        r = await http.post("/api/v1/incidents", json={"title": "x", "municipality": "atlantis"})
        assert r.status_code == 400 and "atlantis" in r.text
