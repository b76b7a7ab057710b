"""Recording for real: the GStreamer RTSP server's cameras recorded by a real hub into segment
files that play, indexed with a hash chain; one RTSP session for a camera recorded and watched;
a hub killed mid-segment leaves every finished segment playable and the last one repaired;
a disk that fills stops recording on it with a severe event, and recording resumes when space
returns, while the rest of the hub works on; a disk that stops answering is taken out the same
way, and the camera's live view goes on meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import av
import httpx
import pytest
import websockets
from nabat.recording import disk as disk_module
from nabat.recording import recorder as recorder_module
from nabat.recording import segments as segments_module
from nabat.testing import eventually, load_config_text, record, run_api, run_hub

from ..test_multiprocess import PG_DSN
from ..video.test_live import _rtsp_sessions
from ._quick import short_segments


def _config(
    rtsp_server, storage: str, *, cameras=("cam-live",), segment: float = 5.0, storage_table=""
) -> str:
    text = f"""{storage_table}
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
segment_seconds = {segment}
sync_seconds = 1
[[recording.storage]]
path = "{storage}"
quota_gb = 1
min_free_gb = 0
[[recording.policy]]
name = "always"
cameras = {json.dumps(list(cameras))}
retention_days = 7
"""
    for cid, mount in (("cam-live", "/live?cam=rec"), ("cam-noise", "/noise?cam=rec")):
        text += f"""
[instances.{cid}]
kind = "rtsp.camera"
municipality = "sochi"
settings = {{ url = "{rtsp_server.url(mount)}" }}
"""
    return text


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


async def _segments(hub, camera: str) -> list:
    return [s async for s in hub.footage.all(camera)]


async def test_a_camera_is_recorded_into_playable_chained_segments(tmp_path, rtsp_server):
    loaded = short_segments(_config(rtsp_server, "video"), tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        found = await eventually(
            lambda: _two_segments(hub), timeout=40, what="two finished segments"
        )
        root = tmp_path / "data" / "video"
        for segment in found:
            path = root / segment.name
            data = path.read_bytes()
            assert len(data) == segment.size
            assert hashlib.sha256(data).hexdigest() == segment.sha256
            assert data[4:8] == b"ftyp"
            assert _frames(path) >= 10  # a few seconds at 10 fps, from its first frame
            assert 0 < (segment.end - segment.start).total_seconds() < 15
        # One after the other: no hole between them but the rotation itself.
        first, second = found[0], found[1]
        assert abs((second.start - first.end).total_seconds()) < 1.5
        assert await hub.footage.verify_chain("cam-live") == []
        ops, _ = await server.state.tokens.create("ops", ["ops:read"])
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.get("/metrics", headers={"Authorization": f"Bearer {ops}"})
        assert 'nabat_recording_cameras{state="recording"} 1.0' in r.text
        assert 'nabat_recording_storage_failed{path="video"} 0.0' in r.text
        assert "nabat_recording_segments_total" in r.text

        # Recorded and watched: still one RTSP session to the camera.
        token, _ = await server.state.tokens.create("viewer", ["cameras:read"])
        url = server.url.replace("http://", "ws://") + "/api/v1/cameras/cam-live/live"
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=2**24
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "stream"
            assert (await ws.recv())[4:8] == b"ftyp"
            assert len(hub.video.upstreams) == 1
            assert _rtsp_sessions(rtsp_server.port, hub) == 1
        # The viewer left; the recording keeps the upstream open.
        await asyncio.sleep(1.0)  # past idle_close (0.5 s): the upstream would be gone
        assert "cam-live" in hub.video.upstreams

        # Altering a segment's record breaks the chain, and says where.
        last = found[-1]
        forged = type(last)(**{**_fields(last), "sha256": "0" * 64})
        await hub.journal.put_record("recording.segments", last.key, _encode(forged))
        problems = await hub.footage.verify_chain("cam-live")
        assert problems and "altered" in problems[0]


async def _two_segments(hub):
    found = await _segments(hub, "cam-live")
    return found if len(found) >= 2 else None


def _fields(segment) -> dict:
    import msgspec

    return msgspec.structs.asdict(segment)


def _encode(segment) -> bytes:
    import msgspec

    return msgspec.json.encode(segment)


async def test_a_killed_hub_leaves_playable_segments_and_repairs_the_last(tmp_path, rtsp_server):
    """SIGKILL the hub mid-segment: after a restart every finished segment plays, the one being
    written is cut at its last whole fragment, finished and indexed (``recovered``), no
    ``.part`` is left, and recording goes on."""
    workdir = tmp_path
    # The killed process's lease on the camera (in the SQLite journal) lapses after
    # ``lease_ttl`` (15 s by default): only then does the restarted hub record it again.
    text = _config(rtsp_server, "video", segment=30.0, storage_table=LEASE_2S)
    (workdir / "plugins.toml").write_text(text)
    env = {**os.environ, "NABAT_CONFIG": str(workdir / "plugins.toml")}
    with (workdir / "hub.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nabat", "run", cwd=workdir, env=env, stdout=log, stderr=log
        )
    root = workdir / "data" / "video"
    try:
        # A segment is being written (30 s long): wait for a few fragments in its sidecar.
        def writing() -> Path | None:
            parts = list(root.glob("*/*/*.mp4.part"))
            if parts and (idx := parts[0].with_name(parts[0].name + ".idx")).exists():
                return parts[0] if len(idx.read_text().splitlines()) >= 4 else None
            return None

        part = await eventually(writing, timeout=40, what="a segment being written")
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert part.exists() and not list(root.glob("*/*/*.mp4"))
    loaded = load_config_text(text, workdir)
    async with run_hub(loaded) as hub:
        found = await _segments(hub, "cam-live")
        assert len(found) == 1 and found[0].recovered
        repaired = root / found[0].name
        assert repaired.exists() and not part.exists()
        assert hashlib.sha256(repaired.read_bytes()).hexdigest() == found[0].sha256
        assert _frames(repaired) >= 5
        # Recording goes on into a new segment.
        await eventually(
            lambda: list(root.glob("*/*/*.mp4.part")), timeout=20, what="recording again"
        )


LEASE_2S = "[storage]\nlease_ttl = 2.0\n"


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the disk-full test: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return True


async def test_a_full_disk_stops_recording_there_and_it_resumes(tmp_path, rtsp_server, monkeypatch):
    monkeypatch.setattr(recorder_module, "RECHECK_S", 0.5)
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "600k")
    try:
        text = _config(rtsp_server, str(disk), cameras=("cam-noise",))
        loaded = short_segments(text, tmp_path)
        async with run_hub(loaded) as hub, run_api(hub) as server:
            seen = record(hub, "recording.>")
            failed = await eventually(
                lambda: [e for e in seen.events if e.type == "recording.storage.failed"],
                timeout=60,
                what="recording.storage.failed",
            )
            assert failed[0].severity == "severe"
            assert "No space left" in failed[0].data["detail"]
            # Nothing else stopped: an event posted now is journalled as ever.
            token, _ = await server.state.tokens.create("writer", ["events:write"])
            event = {
                "specversion": "1.0",
                "id": "after-disk-full",
                "source": "urn:test",
                "type": "test.ping",
            }
            async with httpx.AsyncClient(base_url=server.url) as http:
                r = await http.post(
                    "/api/v1/events",
                    json=event,
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code in (200, 201, 202), r.text
            assert await hub.journal.get("urn:test", "after-disk-full") is not None
            # Space comes back: recording resumes by itself.
            remount = ["mount", "-o", "remount,size=64m", str(disk)]
            await asyncio.to_thread(subprocess.run, remount, check=True)
            await _recording_resumes(hub, seen, "cam-noise")
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(disk)], check=False)


async def _more_segments(hub, camera: str, before: int) -> bool:
    return len(await _segments(hub, camera)) > before


async def _recording_resumes(hub, seen, camera: str) -> None:
    """The path says it works again, and the camera's segments are written there again."""
    await eventually(
        lambda: [e for e in seen.events if e.type == "recording.storage.recovered"],
        timeout=30,
        what="recording.storage.recovered",
    )
    before = len(await _segments(hub, camera))
    await eventually(
        lambda: _more_segments(hub, camera, before), timeout=30, what="segments written again"
    )


async def test_a_disk_that_stops_answering_is_taken_out_and_live_view_goes_on(
    tmp_path, rtsp_server, monkeypatch
):
    # A hung device (a dying drive retrying, a hard NFS mount whose server went away): its
    # fsync does not return. Injected at the one call that waits for the device.
    monkeypatch.setattr(disk_module, "STALL_S", 1.0)
    monkeypatch.setattr(recorder_module, "STALL_S", 1.0)
    monkeypatch.setattr(recorder_module, "RECHECK_S", 0.5)
    hang, answer = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if hang.is_set():
            answer.wait(60)
        real_fsync(fd)

    monkeypatch.setattr(segments_module.os, "fsync", fsync)
    loaded = short_segments(_config(rtsp_server, "footage"), tmp_path)
    async with run_hub(loaded) as hub:
        seen = record(hub, "recording.>")
        await eventually(
            lambda: [c for c in hub.recorder.status() if c["state"] == "recording"],
            timeout=30,
            what="recording",
        )
        viewer = hub.video.watch("cam-live", hub.units.get("cam-live").driver, user="operator")
        received = 0

        async def watch() -> None:
            nonlocal received
            async for message in viewer.messages():
                if isinstance(message, bytes):
                    received += 1

        watching = asyncio.ensure_future(watch())
        try:
            await eventually(lambda: received > 2, timeout=20, what="live fragments")
            hang.set()  # the disk stops answering
            failed = await eventually(
                lambda: [e for e in seen.events if e.type == "recording.storage.failed"],
                timeout=20,
                what="recording.storage.failed",
            )
            assert failed[0].severity == "severe"
            assert "has not answered" in failed[0].data["detail"]
            # The camera's upstream writes nothing to a stalled path and never waits for it:
            # live video goes on.
            after = received
            await eventually(lambda: received > after + 10, timeout=20, what="live goes on")
            assert hub.units.get("cam-live") is not None
            answer.set()  # the disk answers again
            hang.clear()
            await _recording_resumes(hub, seen, "cam-live")
        finally:
            answer.set()
            viewer.close()
            watching.cancel()


async def test_two_hub_processes_on_one_postgresql_record_a_camera_once(
    tmp_path,
    rtsp_server,
    pg_schema,
):
    """Two ``nabat run`` processes with the same policy on one PostgreSQL: the camera's
    recording lease lets one of them record it (one RTSP session, one set of files), and when
    that one is SIGKILLed the other takes the camera over within ``[storage] lease_ttl``."""
    procs: dict[str, asyncio.subprocess.Process] = {}
    dirs: dict[str, Path] = {}

    def files(name: str) -> list[Path]:
        root = dirs[name] / "data" / "video"
        return [*root.glob("*/*/*.mp4"), *root.glob("*/*/*.mp4.part")]

    def fragments(name: str) -> int:
        """Fragments in the segment being written (its ``.idx`` sidecar's lines)."""
        idx = [p.with_name(p.name + ".idx") for p in files(name) if p.suffix == ".part"]
        return sum(len(i.read_text().splitlines()) for i in idx if i.exists())

    try:
        for name in ("a", "b"):
            workdir = dirs[name] = tmp_path / name
            workdir.mkdir()
            text = _config(rtsp_server, "video") + (
                f'[storage]\nurl = "{PG_DSN}"\nschema = "{pg_schema}"\nlease_ttl = 1.5\n'
            )
            (workdir / "plugins.toml").write_text(text)
            env = {**os.environ, "NABAT_CONFIG": str(workdir / "plugins.toml")}
            with (workdir / "hub.log").open("ab") as log:
                procs[name] = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "nabat", "run", cwd=workdir, env=env, stderr=log
                )
        # One of them records, the other never starts a file.
        holder = await eventually(
            lambda: next((n for n in dirs if files(n)), None),
            timeout=40,
            what="one hub recording",
        )
        other = "b" if holder == "a" else "a"
        await asyncio.sleep(3 * 1.5)  # well past a lease's life: the other still waits
        # Meanwhile the holder's first segment is (being) finished: a whole file.
        await eventually(
            lambda: any(p.suffix == ".mp4" for p in files(holder)),
            timeout=30,
            what="a finished segment from one hub",
        )
        assert files(other) == [], "both hub processes record the camera"
        assert "recording.lease_taken" in (dirs[holder] / "hub.log").read_text()
        procs[holder].send_signal(signal.SIGKILL)
        await asyncio.wait_for(procs[holder].wait(), 10)
        # The survivor takes the camera over once the dead one's lease lapses.
        await eventually(
            lambda: fragments(other) >= 4, timeout=30, what="the survivor recording the camera"
        )
        assert "recording.lease_taken" in (dirs[other] / "hub.log").read_text()
        # Stopped, it finishes the segment it was writing: a whole file of its own.
        procs[other].send_signal(signal.SIGTERM)
        await asyncio.wait_for(procs[other].wait(), 40)
        log = (dirs[other] / "hub.log").read_text()
        assert procs[other].returncode == 0, log[-3000:]
        survived = files(other)
        assert survived and all(p.suffix == ".mp4" for p in survived), (survived, log[-3000:])
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
