"""Playback over real HTTP: a hub recording the GStreamer RTSP server lists a camera's footage
with its gaps, health changes and incidents; serves each segment whole or by byte range,
exactly the bytes indexed; says where to play from a moment; refuses another district, a
made-up segment and path tricks; and audits each download once."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import httpx
from nabat.interfaces.camera import HealthState
from nabat.interfaces.incident import Incident, LinkedCamera
from nabat.interfaces.payloads import CameraHealthChange
from nabat.testing import eventually, run_api, run_hub

from ._quick import short_segments


def _config(rtsp_server) -> str:
    text = """
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
stall_timeout = 3.0
reconnect_initial = 0.2
[recording]
segment_seconds = 5
sync_seconds = 1
[[recording.storage]]
path = "video"
quota_gb = 1
min_free_gb = 0
[[recording.policy]]
name = "always"
cameras = ["cam-live", "cam-dying"]
retention_days = 7
"""
    # cam-dying: one second of frames, then silence until the stall timeout (3 s) and a new
    # session: its footage has holes.
    for cid, mount in (("cam-live", "/live?cam=play"), ("cam-dying", "/stalled")):
        text += f"""
[instances.{cid}]
kind = "rtsp.camera"
municipality = "sochi"
settings = {{ url = "{rtsp_server.url(mount)}" }}
"""
    return text


async def _segments(hub, camera: str, n: int):
    found = [s async for s in hub.footage.all(camera)]
    return found if len(found) >= n else None


def _start_us(segment) -> str:
    return segment.key.rsplit("/", 1)[1]


async def test_footage_is_listed_served_by_range_and_played_from_a_moment(tmp_path, rtsp_server):
    loaded = short_segments(_config(rtsp_server), tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        sochi, _ = await server.state.tokens.create(
            "sochi-duty", ["cameras:read"], municipalities=["sochi"]
        )
        krd, _ = await server.state.tokens.create(
            "krd-duty", ["cameras:read"], municipalities=["krasnodar"]
        )
        # A health change and an incident linking the camera, to be marked on its timeline.
        rt = hub.units.get("cam-live")
        now = datetime.now(UTC)
        await hub.publish(
            rt.driver.context.event(
                "camera.health.frozen",
                CameraHealthChange(
                    camera="cam-live",
                    state=HealthState.FROZEN,
                    previous=HealthState.OK,
                    checked_at=now,
                ),
            )
        )
        await hub.incidents.report(
            "inc-1",
            Incident(
                title="ДТП на Морской",
                reported_at=now,
                cameras=[LinkedCamera(id="cam-live", distance_m=40.0)],
            ),
            source="/test",
            municipality="sochi",
        )
        found = await eventually(
            lambda: _segments(hub, "cam-live", 2), timeout=40, what="two segments of cam-live"
        )
        dying = await eventually(
            lambda: _segments(hub, "cam-dying", 2), timeout=40, what="two segments of cam-dying"
        )
        base = f"{server.url}/api/v1/cameras"
        auth = {"Authorization": f"Bearer {sochi}"}
        async with httpx.AsyncClient(headers=auth, timeout=10) as client:
            # -- the timeline's data ------------------------------------------------------
            r = await client.get(f"{base}/cam-live/recordings")
            assert r.status_code == 200, r.text
            body = r.json()
            listed = {s["url"]: s for s in body["segments"]}
            for segment in found:
                url = f"/api/v1/cameras/cam-live/recordings/{_start_us(segment)}.mp4"
                assert listed[url]["sha256"] == segment.sha256
                assert listed[url]["size"] == segment.size
            # The last 24 h: nothing was recorded before the hub started.
            first_start = datetime.fromisoformat(body["segments"][0]["start"])
            assert datetime.fromisoformat(body["gaps"][0]["end"]) == first_start
            assert [h["state"] for h in body["health"]] == ["frozen"]
            assert body["incidents"] == [
                {"id": "inc-1", "title": "ДТП на Морской", "at": body["incidents"][0]["at"]}
            ]
            # A camera whose stream ended: a gap between its segments.
            r = await client.get(f"{base}/cam-dying/recordings")
            body = r.json()
            first = datetime.fromisoformat(body["segments"][0]["start"])
            last = datetime.fromisoformat(body["segments"][-1]["end"])
            inner = [
                g
                for g in body["gaps"]
                if datetime.fromisoformat(g["start"]) >= first
                and datetime.fromisoformat(g["end"]) <= last
            ]
            assert inner, [(s["start"], s["end"]) for s in body["segments"]]
            assert body["health"] == [] and body["incidents"] == []
            # A period too long, a time without its offset, an empty period.
            since = (now - timedelta(days=32)).isoformat()
            r = await client.get(f"{base}/cam-live/recordings", params={"since": since})
            assert r.status_code == 400 and "31 days" in r.json()["detail"]
            r = await client.get(
                f"{base}/cam-live/recordings", params={"since": "2026-11-01T00:00:00"}
            )
            assert r.status_code == 400
            r = await client.get(
                f"{base}/cam-live/recordings",
                params={"since": now.isoformat(), "until": (now - timedelta(1)).isoformat()},
            )
            assert r.status_code == 400

            # -- a segment's file ---------------------------------------------------------
            segment = found[0]
            url = f"{base}/cam-live/recordings/{_start_us(segment)}.mp4"
            on_disk = (tmp_path / "data" / "video" / segment.name).read_bytes()
            r = await client.get(url)
            assert r.status_code == 200
            assert r.headers["content-type"] == "video/mp4"
            assert r.headers["accept-ranges"] == "bytes"
            assert r.headers["etag"] == f'"{segment.sha256}"'
            assert r.content == on_disk
            assert hashlib.sha256(r.content).hexdigest() == segment.sha256
            size = len(on_disk)
            for header, status, expected, content_range in (
                ("bytes=0-99", 206, on_disk[:100], f"bytes 0-99/{size}"),
                ("bytes=100-", 206, on_disk[100:], f"bytes 100-{size - 1}/{size}"),
                ("bytes=-50", 206, on_disk[-50:], f"bytes {size - 50}-{size - 1}/{size}"),
                (f"bytes=1000-{size + 5000}", 206, on_disk[1000:], f"bytes 1000-{size - 1}/{size}"),
            ):
                r = await client.get(url, headers={"Range": header})
                assert r.status_code == status, (header, r.text)
                assert r.content == expected, header
                assert r.headers["content-range"] == content_range
                assert int(r.headers["content-length"]) == len(expected)
            for bad in (f"bytes={size}-", "bytes=50-10", "bytes=-0", "lines=0-10", "bytes=x-"):
                r = await client.get(url, headers={"Range": bad})
                assert r.status_code == 416, bad
                assert r.headers["content-range"] == f"bytes */{size}"
            r = await client.get(url, headers={"If-None-Match": f'"{segment.sha256}"'})
            assert r.status_code == 304 and r.content == b""

            # -- where to play from a moment ----------------------------------------------
            at = segment.start + timedelta(seconds=2)
            r = await client.get(f"{base}/cam-live/playback", params={"at": at.isoformat()})
            assert r.status_code == 200, r.text
            play = r.json()
            assert play["url"] == f"/api/v1/cameras/cam-live/recordings/{_start_us(segment)}.mp4"
            assert abs(play["offset"] - 2.0) < 0.01
            assert play["next"] == (
                f"/api/v1/cameras/cam-live/recordings/{_start_us(found[1])}.mp4"
            )
            # In a gap: the first segment after it, from its beginning.
            hole = next(g for g in inner)
            r = await client.get(f"{base}/cam-dying/playback", params={"at": hole["start"]})
            play = r.json()
            after = next(s for s in dying if s.start >= datetime.fromisoformat(hole["start"]))
            assert play["url"].endswith(f"/{_start_us(after)}.mp4") and play["offset"] == 0
            # Before anything was recorded: the first segment; after everything: nothing.
            early = (segment.start - timedelta(hours=2)).isoformat()
            r = await client.get(f"{base}/cam-live/playback", params={"at": early})
            assert r.json()["url"].endswith(f"/{_start_us(segment)}.mp4")
            later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            r = await client.get(f"{base}/cam-live/playback", params={"at": later})
            assert r.status_code == 404

            # -- refused ------------------------------------------------------------------
            other = {"Authorization": f"Bearer {krd}"}
            for path in ("recordings", f"recordings/{_start_us(segment)}.mp4", "playback"):
                r = await client.get(
                    f"{base}/cam-live/{path}", params={"at": at.isoformat()}, headers=other
                )
                assert r.status_code == 404, path
                assert "cam-live" not in r.text or "no camera" in r.text
            made_up = int(_start_us(segment)) + 1
            for name in (
                f"{made_up}.mp4",
                f"{_start_us(dying[0])}.mp4",  # another camera's segment
                "..%2F..%2Fplugins.toml",
                "%2Fetc%2Fpasswd",
                f"..%2Fcam-live%2F{_start_us(segment)}.mp4",
                segment.name.replace("/", "%2F"),
                f"{_start_us(segment)}.mp4%00.txt",
            ):
                r = await client.get(f"{base}/cam-live/recordings/{name}")
                assert r.status_code == 404, (name, r.status_code)
            # A path with dot segments is not passed through as such either.
            raw = await _raw_get(
                server.url, "/api/v1/cameras/cam-live/recordings/../../../../etc/passwd", sochi
            )
            assert raw.split(b" ", 2)[1] in (b"400", b"404"), raw[:80]
            no_token = await httpx.AsyncClient().get(url)
            assert no_token.status_code == 401

        # -- audited: the whole download, the range from 0, not the later ranges ------------
        async def downloads():
            entries, _ = await server.state.audit.entries(limit=500)
            mine = [e for e in entries if e.detail and e.detail.get("segment")]
            return mine if len(mine) >= 2 else None

        entries = await eventually(downloads, timeout=10, what="audited downloads")
        assert len(entries) == 2, [e.detail for e in entries]
        for entry in entries:
            assert entry.actor_name == "sochi-duty"
            assert entry.detail["camera"] == "cam-live"
            assert entry.detail["segment"] == _start_us(segment)
            assert entry.detail["sha256"] == segment.sha256
        assert sorted(e.status for e in entries) == [200, 206]
        assert json.dumps([e.action for e in entries]).count(".mp4") == 2


async def _raw_get(base: str, path: str, token: str) -> bytes:
    """A request line sent as written (no client normalising its dot segments)."""
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data
