"""Evidence export over the real API: a hub records the RTSP test server, a ``cameras:export``
token exports a period spanning two segments, downloads the files, and the export verifies
without the hub against the fingerprint the hub gave; who may not export cannot; every export
and download is audited."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
from nabat.api.users import ROLES
from nabat.evidence import verify
from nabat.recording import recorder as recorder_module
from nabat.testing import eventually, run_api, run_hub

from ._quick import RETRY_MIN_S, short_segments

# One recording hub for the module (the tests only read its footage, each with tokens of its
# own): its segments are recorded once, not again for each test.
pytestmark = pytest.mark.asyncio(loop_scope="module")

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
[[recording.storage]]
path = "video"
quota_gb = 1
min_free_gb = 0
[[recording.policy]]
name = "always"
cameras = ["cam-x"]
[instances.cam-x]
kind = "rtsp.camera"
name = "Морской вокзал"
municipality = "sochi"
settings = {{ url = "{url}" }}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def recording(tmp_path_factory, _rtsp_process):
    rtsp_server = _rtsp_process.ensure()
    directory = tmp_path_factory.mktemp("exports")
    loaded = short_segments(CONFIG.format(url=rtsp_server.url("/live?cam=export")), directory)
    with pytest.MonkeyPatch.context() as patch:  # the conftest's, for a module-wide hub
        patch.setattr(recorder_module, "RETRY_MIN_S", RETRY_MIN_S)
        async with run_hub(loaded) as hub, run_api(hub) as server:
            yield hub, server


async def _two(hub):
    found = [s async for s in hub.footage.all("cam-x")]
    return found if len(found) >= 2 else None


async def test_an_export_verifies_without_the_hub(recording, tmp_path):
    hub, server = recording
    segments = await eventually(lambda: _two(hub), timeout=40, what="two segments")
    secret, info = await server.state.tokens.create(
        "police-request", ["cameras:export"], municipalities=["sochi"]
    )
    auth = {"Authorization": f"Bearer {secret}"}
    start = segments[0].start + timedelta(seconds=1)
    end = segments[1].end - timedelta(seconds=1)
    body = {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "reason": "запрос ОМВД № 123",
        "incident": "inc-7",
    }
    async with httpx.AsyncClient(base_url=server.url, headers=auth, timeout=30) as http:
        r = await http.post("/api/v1/cameras/cam-x/exports", json=body)
        assert r.status_code == 202, r.text
        export_id = r.json()["id"]
        assert r.json()["status"] == "running"

        async def finished():
            state = (await http.get(f"/api/v1/exports/{export_id}")).json()
            return state if state["status"] != "running" else None

        state = await eventually(finished, timeout=30, what="the export finished")
        assert state["status"] == "done", state
        out = tmp_path / "received"
        out.mkdir()
        for name in ("clip.mp4", "manifest.json", "manifest.sig", "README.txt"):
            r = await http.get(f"/api/v1/exports/{export_id}/files/{name}")
            assert r.status_code == 200, r.text
            (out / name).write_bytes(r.content)
        # Nothing but the four names: no path, no other file of the hub's.
        for name in ("..%2Fmanifest.json", "signing-key.pem", "clip.MP4"):
            assert (await http.get(f"/api/v1/exports/{export_id}/files/{name}")).status_code == 404
    # The police check it on their own machine, pinning the fingerprint they were given.
    checked = verify(out, expected_key=state["fingerprint"])
    assert checked.valid, [c for c in checked.checks if c.status != "ok"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reason"] == "запрос ОМВД № 123" and manifest["incident_id"] == "inc-7"
    assert manifest["camera"] == {"id": "cam-x", "name": "Морской вокзал", "municipality": "sochi"}
    assert manifest["exported_by"]["id"] == f"token:{info.id}"
    # A tampered clip does not verify.
    clip = out / "clip.mp4"
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0xFF
    clip.write_bytes(bytes(data))
    assert not verify(out, expected_key=state["fingerprint"]).valid
    # The export and each download are in the audit log.
    await server.state.audit.flush()
    entries, _ = await server.state.audit.entries(limit=50)
    actions = [e.action for e in entries if e.actor == f"token:{info.id}"]
    assert "POST /api/v1/cameras/cam-x/exports" in actions
    assert sum(a.startswith(f"GET /api/v1/exports/{export_id}/files/") for a in actions) == 4


async def test_who_may_not_export_cannot(recording):
    hub, server = recording
    segments = await eventually(lambda: _two(hub), timeout=40, what="two segments")
    body = {
        "from": segments[0].start.isoformat(),
        "to": segments[0].end.isoformat(),
        "reason": "curiosity",
    }

    async def post(scopes, municipalities, payload=body, camera="cam-x"):
        secret, _ = await server.state.tokens.create(
            f"t{len(await server.state.tokens.list())}", scopes, municipalities=municipalities
        )
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            return await http.post(
                f"/api/v1/cameras/{camera}/exports",
                json=payload,
                headers={"Authorization": f"Bearer {secret}"},
            )

    # An operator's rights (read, control) do not export; a supervisor's do.
    assert "cameras:export" not in ROLES["operator"] and "cameras:export" in ROLES["supervisor"]
    assert (await post(["cameras:read", "cameras:control"], ["sochi"])).status_code == 403
    # Another district's exporter: the camera does not exist for it.
    assert (await post(["cameras:export"], ["krasnodar"])).status_code == 404
    # Bad periods and no footage: clear refusals.
    late = {**body, "from": "2020-01-01T00:00:00Z", "to": "2020-01-01T01:00:00Z"}
    r = await post(["cameras:export"], ["sochi"], late)
    assert r.status_code == 404 and r.json()["type"].endswith("/no-footage")
    reversed_ = {**body, "from": body["to"], "to": body["from"]}
    assert (await post(["cameras:export"], ["sochi"], reversed_)).status_code == 422
    long = {**body, "to": (segments[0].start + timedelta(hours=25)).isoformat()}
    assert (await post(["cameras:export"], ["sochi"], long)).status_code == 422
    naive = {**body, "from": "2026-12-06T10:00:00", "to": "2026-12-06T11:00:00"}
    assert (await post(["cameras:export"], ["sochi"], naive)).status_code == 400
