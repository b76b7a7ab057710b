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


async def test_the_wal_never_takes_the_room_its_own_checkpoint_needs(small_disk):
    """A reader holding an old snapshot keeps the WAL from being checkpointed, so it grows
    until the disk is full. Were it let fill the disk, the checkpoint, which copies its pages
    into the database file and so needs as much room again, could never run, and the journal
    would stay full for good even with no more writes. Writes are refused (disk full) while
    the free space is less than the WAL's size; once the reader lets go, the WAL is folded
    back and truncated and the journal writes again, without any room made for it."""
    from nabat.events import Event
    from nabat.store import JournalError, SqliteJournal

    journal = SqliteJournal(small_disk / "journal.sqlite3")
    await journal.open()
    reader = sqlite3.connect(small_disk / "journal.sqlite3", isolation_level=None)
    try:
        await journal.append([Event(type="ingest.item", source="/t", data={"n": 0})])
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()  # the snapshot is held
        await asyncio.to_thread(_fill_but, small_disk, 24 << 20)
        payload = "x" * 2000
        acked = 0
        with pytest.raises(JournalError) as refused:
            for _ in range(100_000):
                batch = [
                    Event(type="ingest.item", source="/t", data={"p": payload}) for _ in range(50)
                ]
                await journal.append(batch)
                acked += len(batch)
        assert getattr(refused.value, "disk_full", False), refused.value
        assert acked > 1000
        wal = small_disk / "journal.sqlite3-wal"
        assert shutil.disk_usage(small_disk).free >= wal.stat().st_size  # room to fold it
        reader.execute("COMMIT")  # the reader lets go; nothing else is freed

        async def writes() -> bool:
            try:
                await journal.append([Event(type="ingest.item", source="/t", data={"n": 1})])
            except JournalError:
                return False
            return True

        await eventually(writes, timeout=20, what="the journal writing again")
        assert wal.stat().st_size < 1 << 20  # folded back and truncated
    finally:
        reader.close()
        await journal.close()


def _fill_but(disk: Path, room: int) -> None:
    """A ballast file leaving ``room`` bytes free."""
    free = shutil.disk_usage(disk).free
    with (disk / "ballast").open("wb") as f:
        f.truncate(0)
        left = max(0, free - room)
        chunk = b"\0" * (1 << 20)
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
        f.flush()
        os.fsync(f.fileno())
