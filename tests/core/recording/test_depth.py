"""Archive depth per district for real: a hub records the RTSP test server; the report (API and
``nabat report recording``) says the camera meets a (short) target depth, and lags with the
reason once a segment in the middle of its archive is removed behind the hub's back."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime

import httpx
from nabat.testing import eventually, run_api, run_hub

from ._quick import short_segments

CONFIG = """
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
[recording]
segment_seconds = 5
depth_days = 0.00005
[[recording.storage]]
path = "video"
quota_gb = 1
min_free_gb = 0
[[recording.policy]]
name = "always"
municipalities = ["sochi"]
[instances.cam-d]
kind = "rtsp.camera"
municipality = "sochi"
settings = {{ url = "{url}" }}
"""


TARGET_DAYS = 0.00005  # 4.32 s


async def _deep(hub, n: int):
    found = [s async for s in hub.footage.all("cam-d")]
    if len(found) < n or (datetime.now(UTC) - found[0].start).total_seconds() < 6:
        return None
    return found


async def _report(server, token: str) -> dict:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        r = await http.get(
            "/api/v1/reports/recording", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200, r.text
        return r.json()


async def test_archive_depth_per_district(tmp_path, rtsp_server):
    text = CONFIG.format(url=rtsp_server.url("/live?cam=depth"))
    loaded = short_segments(text, tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        found = await eventually(lambda: _deep(hub, 3), timeout=60, what="three segments, 6 s")
        sochi, _ = await server.state.tokens.create("s", ["cameras:read"], municipalities=["sochi"])
        report = await _report(server, sochi)
        assert report["target_days"] == TARGET_DAYS
        [camera] = report["cameras"]
        assert camera["camera"] == "cam-d" and camera["policy"] == "always"
        assert camera["depth_days"] >= TARGET_DAYS and camera["chain_ok"], camera
        assert camera["missing_days"] == [] and camera["meets"], camera
        [district] = report["districts"]
        assert district["municipality"] == "sochi" and district["meeting"] == 1
        assert not district["lagging"]

        # Another district's token sees nothing of Sochi's archive.
        krd, _ = await server.state.tokens.create(
            "k", ["cameras:read"], municipalities=["krasnodar"]
        )
        assert (await _report(server, krd))["cameras"] == []

        # A segment removed from the middle behind the hub's back: the chain shows it.
        await hub.journal.delete_record("recording.segments", found[1].key)
        report = await _report(server, sochi)
        [camera] = report["cameras"]
        assert not camera["chain_ok"] and "removed or altered" in camera["problems"][0]
        [district] = report["districts"]
        assert district["lagging"] and "chain broken" in district["why"][-1]

        # The command line says the same, without the API.
        env = {**os.environ, "NABAT_CONFIG": str(tmp_path / "plugins.toml")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "nabat",
            "report",
            "recording",
            "--json",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        printed = json.loads(out)
        assert printed["districts"][0]["lagging"] and not printed["cameras"][0]["chain_ok"]
