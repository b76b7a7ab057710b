"""The SQLite journal's disk fills up under a real hub taking events, and gets room again.

A real filesystem: the test mounts a small tmpfs (as root; where mounting is not allowed it
skips, and fails under CI) for the hub's data directory, then fills it with a ballast file.
While full, every ingest answer is a 507 problem with Retry-After (never a 500, never a 202),
/ready says the journal cannot write, and the hub stays up. Once the ballast is removed the hub
takes events again by itself — no manual repair — tells of the time it could not write in a
``hub.journal.recovered`` event, and every acknowledged event is in the journal.
(Recordings on a full disk: tests/core/recording/test_recorder.py.)"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from nabat.testing import eventually, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fixtures"))
from producers import hub_under_load

HEADROOM = 256 * 1024


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        # Room enough that what the ballast frees outlasts the WAL's growth until the next
        # checkpoint (on a 16 MB disk, producers on a quiet machine filled it again first).
        ["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the disk-full test: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """A ballast file taking all but HEADROOM of the disk."""
    ballast = disk / "ballast"
    free = shutil.disk_usage(disk).free
    chunk = b"\0" * (1 << 20)
    left = max(0, free - HEADROOM)
    with ballast.open("wb") as f:
        try:
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
            f.flush()
            os.fsync(f.fileno())
        except OSError as exc:  # the hub wrote meanwhile and took the rest: full already
            if exc.errno != errno.ENOSPC:
                raise
    return ballast


async def test_a_full_disk_refuses_events_with_507_and_recovers_by_itself(tmp_path, small_disk):
    api_port = free_port()
    (tmp_path / "plugins.toml").write_text(f"""
[hub]
name = "full"
log_format = "json"
data_dir = "{small_disk}"

[api]
listen = "127.0.0.1:{api_port}"

[api.rate_limit]
rate = 10000
burst = 10000
""")
    env = {**os.environ, "NABAT_LANG": "en"}
    async with hub_under_load(tmp_path, env, api_port) as (hub, client, producers):
        await producers.wait_acked(100)
        ballast = await asyncio.to_thread(_fill, small_disk)
        await producers.wait_refused(20, timeout=120)  # the headroom is used up
        assert producers.statuses.get(507, 0) > 0, producers.statuses
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert "full" in ready.json()["journal"] and ready.json()["paused"]
        assert hub.returncode is None  # refusing, not crashed
        acked_while_full = len(producers.acked)
        ballast.unlink()  # room again: no restart, no repair
        await producers.wait_acked(acked_while_full + 100)

        async def ready_again() -> bool:
            return (await client.get("/ready")).status_code == 200

        await eventually(ready_again, timeout=30, what="/ready 200 after the disk has room")
        await producers.finish()
        assert producers.wrong == []
    conn = sqlite3.connect(small_disk / "journal.sqlite3")
    try:
        stored = {r[0] for r in conn.execute("SELECT id FROM events WHERE type = 'ingest.item'")}
        outages = [
            json.loads(r[0])
            for r in conn.execute("SELECT body FROM events WHERE type = 'hub.journal.recovered'")
        ]
    finally:
        conn.close()
    missing = set(producers.acked) - stored
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert outages and any("full" in o["data"]["error"] for o in outages)
    log_text = (tmp_path / "hub.log").read_text(errors="replace")
    assert '"event":"journal.unavailable"' in log_text and "disk is full" in log_text
