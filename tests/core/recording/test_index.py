"""The footage index in the journal's real database: a clock stepped back (NTP) never
overwrites footage nor breaks the chain; the chain finds a record altered or removed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from nabat.recording.index import COLLECTION
from nabat.recording.segments import SegmentFile
from nabat.testing import run_hub

CONFIG = """
[hub]
data_dir = "data"
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
"""

T = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def _file(start: datetime, seconds: float, sha: str) -> SegmentFile:
    return SegmentFile(
        camera="cam-1",
        root=Path("/nowhere"),
        name=f"cam-1/{start:%H%M%S_%f}.mp4",
        start=start,
        end=start + timedelta(seconds=seconds),
        size=1000,
        sha256=sha * 64,
        fragments=10,
    )


async def test_a_clock_stepped_back_keeps_every_segment(tmp_path):
    async with run_hub(CONFIG, tmp_path) as hub:
        index = hub.footage
        first = await index.add(_file(T, 60, "a"), storage="video", policy="p")
        # NTP steps the clock back 30 s: the next segment "starts" inside the first.
        stepped = _file(T + timedelta(seconds=30), 60, "b")
        second = await index.add(stepped, storage="video", policy="p")
        # And once more, to exactly the first's start: a key of its own, nothing overwritten.
        third = await index.add(_file(T, 60, "c"), storage="video", policy="p")
        assert not first.clock_step and second.clock_step and third.clock_step
        assert third.key != first.key
        kept = [s async for s in index.all("cam-1")]
        assert sorted(s.sha256[0] for s in kept) == ["a", "b", "c"]
        assert len(await index.between("cam-1", T, T + timedelta(minutes=5))) == 3
        assert await index.verify_chain("cam-1") == []


async def test_the_chain_finds_an_altered_or_removed_record(tmp_path):
    async with run_hub(CONFIG, tmp_path) as hub:
        index = hub.footage
        segments = [
            await index.add(_file(T + timedelta(minutes=i), 60, "abcd"[i]), storage="v", policy="p")
            for i in range(4)
        ]
        # Retention removing the oldest is not tampering.
        await index.remove(segments[0], "retention")
        assert await index.verify_chain("cam-1") == []
        # A record's hash changed: found at that segment.
        forged = msgspec.structs.replace(segments[2], sha256="f" * 64)
        await hub.journal.put_record(COLLECTION, forged.key, msgspec.json.encode(forged))
        problems = await index.verify_chain("cam-1")
        assert len(problems) == 1 and "altered" in problems[0]
        # Put back, then one removed from the middle behind the hub's back.
        await hub.journal.put_record(COLLECTION, segments[2].key, msgspec.json.encode(segments[2]))
        await hub.journal.delete_record(COLLECTION, segments[1].key)
        problems = await index.verify_chain("cam-1")
        assert len(problems) == 1 and "removed or altered" in problems[0]
