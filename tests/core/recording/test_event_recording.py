"""Event recording for real: an incident records its nearest cameras from the pre-roll (the
open stream's ring) to the post-roll; a rule's ``record`` action does the same for a camera's
own event; footage of an open incident or an export in progress survives retention until
released."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import websockets
from nabat.events import Event
from nabat.interfaces import GeoPoint, Incident
from nabat.testing import eventually, load_config_text, run_api, run_hub


def _config(rtsp_server) -> str:
    return f"""
[hub]
language = "en"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[plugins.rtsp]
[video]
idle_close = 0.5
[recording]
segment_seconds = 30
sync_seconds = 1
[[recording.storage]]
path = "video"
quota_gb = 1
min_free_gb = 0
[[recording.policy]]
name = "events"
mode = "event"
pre_roll = 4
post_roll = 3
retention_days = 0.0001

[[rules]]
name = "gunshot"
when = {{ type = ["sensor.gunshot"] }}
then = [ {{ record = {{ policy = "events", seconds = 2 }} }} ]
cooldown = 0

[instances.cam-a]
kind = "rtsp.camera"
municipality = "krasnodar"
lat = 45.0356
lon = 38.9754
settings = {{ url = "{rtsp_server.url("/live?cam=ev-a")}" }}

[instances.cam-b]
kind = "rtsp.camera"
municipality = "krasnodar"
lat = 45.2
lon = 39.2
settings = {{ url = "{rtsp_server.url("/live?cam=ev-b")}" }}
"""


async def _segments(hub, camera: str) -> list:
    return [s async for s in hub.footage.all(camera)]


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


async def _done(hub, camera: str):
    """The camera's event recording has ended and left its segment(s)."""
    if camera in hub.recorder.events:
        return None
    found = await _segments(hub, camera)
    return found or None


async def test_an_incident_records_its_cameras_from_the_pre_roll(tmp_path, rtsp_server):
    loaded = load_config_text(_config(rtsp_server), tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        # Someone is watching cam-a: its stream is open and its ring fills.
        token, _ = await server.state.tokens.create("viewer", ["cameras:read"])
        url = server.url.replace("http://", "ws://") + "/api/v1/cameras/cam-a/live"
        # The test reads none of the fragments: max_queue=None, or the client stops reading the
        # socket once 16 are queued, never sees the server's answer to its close frame and
        # waits out close_timeout (10 s) on leaving the block.
        async with websockets.connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=2**24,
            max_queue=None,
        ):
            await eventually(
                lambda: _ring_age(hub, "cam-a") >= 4.0, timeout=20, what="4 s in the ring"
            )
            reported = datetime.now(UTC)
            await hub.incidents.report(
                "inc-1",
                Incident(title="ДТП", location=GeoPoint(45.0357, 38.9755)),
                source="urn:test",
            )
            await eventually(lambda: "cam-a" in hub.recorder.events, what="recording started")
            assert "cam-b" not in hub.recorder.events  # 20 km away: not linked
            started = time.monotonic()
            found = await eventually(lambda: _done(hub, "cam-a"), timeout=30, what="it ended")
        took = time.monotonic() - started
        assert 2.5 <= took <= 15, took  # the post-roll (3 s), not forever
        segment = found[0]
        # It begins before the incident was reported: the pre-roll from the open stream.
        before = (reported - segment.start).total_seconds()
        assert 3.0 <= before <= 8.0, before
        assert segment.end >= reported + timedelta(seconds=2)
        path = tmp_path / "data" / "video" / segment.name
        assert _frames(path) >= 40  # ~7 s at 10 fps, from a key frame
        assert segment.policy == "events"

        # Open incident: its footage is held; retention (0.0001 days) keeps it.
        later = datetime.now(UTC) + timedelta(days=1)
        assert await hub.recorder.apply_retention(now=later) == 0
        assert path.exists()
        # An export in progress holds it too, once the incident is closed.
        await hub.incidents.close_incident("inc-1", source="urn:test")
        await hub.footage.hold(
            "export-1", "cam-a", segment.start, segment.end, reason="export", ttl=600
        )
        assert await hub.recorder.apply_retention(now=later) == 0
        await hub.footage.release("export-1")
        assert await hub.recorder.apply_retention(now=later) == 1
        assert not path.exists() and await _segments(hub, "cam-a") == []
        # The chain knows retention removed it: not reported as tampering.
        assert await hub.footage.verify_chain("cam-a") == []


def _ring_age(hub, camera: str) -> float:
    up = hub.video.upstreams.get(camera)
    if up is None or not up.ring:
        return 0.0
    return time.monotonic() - up.ring[0][2]


async def test_a_rule_records_the_camera_of_an_event(tmp_path, rtsp_server):
    loaded = load_config_text(_config(rtsp_server), tmp_path)
    async with run_hub(loaded) as hub:
        await hub.publish(
            Event(
                type="sensor.gunshot",
                source="urn:acoustic",
                subject="cam-b",
                municipality="krasnodar",
            )
        )
        await eventually(lambda: "cam-b" in hub.recorder.events, what="the rule's recording")
        found = await eventually(lambda: _done(hub, "cam-b"), timeout=40, what="it ended")
        # No stream was open: no pre-roll, footage from the first key frame on, ~2 s.
        path = tmp_path / "data" / "video" / found[0].name
        assert _frames(path) >= 5
        assert (found[0].end - found[0].start).total_seconds() < 10
