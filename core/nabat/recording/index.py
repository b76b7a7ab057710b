"""The footage index: one record per segment in the journal's record store.

Keyed ``<camera dir>/<start in µs since the epoch, 16 digits>``, so a camera's segments list in
time order by key range, in SQLite and PostgreSQL alike. Each segment carries a **chain**
hash: SHA-256 over the previous segment's chain, this segment's SHA-256, camera and times — so
a segment removed from the middle or altered (file or record) shows when the chain is walked
(:meth:`SegmentIndex.verify_chain`). Retention removes a camera's oldest segments first and
restarts the chain there (``chain_from`` says from which hash).

A clock stepped back (NTP) can give a segment a start before its predecessor's end: it is
kept, under a key of its own, flagged ``clock_step`` — never overwriting footage.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from ..store import Journal
from .segments import SegmentFile, camera_dir

__all__ = ["COLLECTION", "Gap", "Hold", "Segment", "SegmentIndex"]

COLLECTION = "recording.segments"
HOLDS = "recording.holds"
"""Footage kept whatever retention says (an export in progress): key an id of the holder's,
body the camera and the range, expiring on its own so a crashed export holds nothing forever."""
HEADS = "recording.heads"
"""Each camera's newest chain (the last segment *added*: after a clock step back it is not the
one with the latest start)."""
REMOVED = "recording.removed"
"""Segments retention removed (key as the segment's, body its chain and why): the chain may
skip them; a segment missing without such a record was removed by someone else."""
GENESIS = "0" * 64


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    camera: str
    storage: str
    """The storage path (as configured) the file is under."""
    name: str
    """The file, relative to its storage path."""
    start: datetime
    end: datetime
    size: int
    sha256: str
    fragments: int
    policy: str
    chain: str
    """SHA-256 of (previous chain, sha256, camera, start, end)."""
    previous: str
    """The previous segment's chain (:data:`GENESIS` for a camera's first)."""
    clock_step: bool = False
    recovered: bool = False
    """Finished after a crash (cut at its last whole fragment)."""

    @property
    def key(self) -> str:
        return _key(self.camera, self.start)


@dataclass(frozen=True)
class Hold:
    """Footage of ``camera`` between ``start`` and ``end`` that retention must keep."""

    camera: str
    start: datetime
    end: datetime
    reason: str


class Gap(msgspec.Struct, frozen=True):
    start: datetime
    end: datetime


def _key(camera: str, start: datetime) -> str:
    return f"{camera_dir(camera)}/{int(start.timestamp() * 1_000_000):016d}"


def chain_of(previous: str, sha256: str, camera: str, start: datetime, end: datetime) -> str:
    text = f"{previous}\n{sha256}\n{camera}\n{start.isoformat()}\n{end.isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()


_decode = msgspec.json.Decoder(Segment)


class _HoldBody(msgspec.Struct):
    camera: str
    start: datetime
    end: datetime
    reason: str


_hold_decoder = msgspec.json.Decoder(_HoldBody)


class SegmentIndex:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def last(self, camera: str) -> Segment | None:
        found = await self.journal.records(
            COLLECTION, prefix=camera_dir(camera) + "/", limit=1, descending=True
        )
        return _decode.decode(found[0].body) if found else None

    async def add(
        self, file: SegmentFile, *, storage: str, policy: str, recovered: bool = False
    ) -> Segment:
        """Index a finished segment, chained to the camera's last one added."""
        last = await self.last(file.camera)
        head = await self.journal.get_record(HEADS, camera_dir(file.camera))
        if head is not None:
            previous = msgspec.json.decode(head.body)["chain"]
        else:
            previous = last.chain if last else GENESIS
        clock_step = last is not None and file.start < last.end - timedelta(seconds=1)
        start = file.start
        while True:
            segment = Segment(
                camera=file.camera,
                storage=storage,
                name=file.name,
                start=start,
                end=max(file.end, start),
                size=file.size,
                sha256=file.sha256,
                fragments=file.fragments,
                policy=policy,
                previous=previous,
                chain=chain_of(previous, file.sha256, file.camera, start, max(file.end, start)),
                clock_step=clock_step,
                recovered=recovered,
            )
            body = msgspec.json.encode(segment)
            if await self.journal.put_record(COLLECTION, segment.key, body, only_new=True):
                head_body = msgspec.json.encode({"chain": segment.chain, "key": segment.key})
                await self.journal.put_record(HEADS, camera_dir(file.camera), head_body)
                return segment
            start += timedelta(microseconds=1)  # the same µs (a clock step): the next key

    async def between(
        self, camera: str, since: datetime, until: datetime, *, limit: int = 10_000
    ) -> list[Segment]:
        """The camera's segments overlapping [since, until], in time order."""
        prefix = camera_dir(camera) + "/"
        # A segment that began before `since` may reach into it: start one hour early.
        after = _key(camera, since - timedelta(hours=1))
        before = _key(camera, until + timedelta(microseconds=1))
        found = await self.journal.records(
            COLLECTION, prefix=prefix, after=after, before=before, limit=limit
        )
        segments = [_decode.decode(r.body) for r in found]
        return [s for s in segments if s.end >= since and s.start <= until]

    async def all(self, camera: str | None = None) -> AsyncIterator[Segment]:
        prefix = camera_dir(camera) + "/" if camera else None
        after = None
        while True:
            page = await self.journal.records(COLLECTION, prefix=prefix, after=after, limit=500)
            for record in page:
                yield _decode.decode(record.body)
            if len(page) < 500:
                return
            after = page[-1].key

    async def hold(
        self, hold_id: str, camera: str, start: datetime, end: datetime, *, reason: str, ttl: float
    ) -> None:
        """Keep the camera's footage in [start, end] for ``ttl`` seconds (or until released)."""
        body = msgspec.json.encode({"camera": camera, "start": start, "end": end, "reason": reason})
        expires = datetime.now(UTC) + timedelta(seconds=ttl)
        await self.journal.put_record(HOLDS, hold_id, body, expires=expires)

    async def release(self, hold_id: str) -> None:
        await self.journal.delete_record(HOLDS, hold_id)

    async def holds(self) -> list[Hold]:
        found = []
        async for record in self.journal.all_records(HOLDS):
            item = _hold_decoder.decode(record.body)
            found.append(Hold(item.camera, item.start, item.end, item.reason))
        return found

    async def remove(self, segment: Segment, reason: str) -> bool:
        """Forget a segment the hub removes itself (retention, quota), noting it so the chain
        does not report it as tampering."""
        note = msgspec.json.encode({"chain": segment.chain, "reason": reason})
        await self.journal.put_record(REMOVED, segment.key, note)
        return await self.journal.delete_record(COLLECTION, segment.key)

    async def removed_chains(self, camera: str) -> set[str]:
        prefix = camera_dir(camera) + "/"
        chains: set[str] = set()
        after = None
        while True:
            page = await self.journal.records(REMOVED, prefix=prefix, after=after, limit=500)
            chains.update(msgspec.json.decode(r.body)["chain"] for r in page)
            if len(page) < 500:
                return chains
            after = page[-1].key

    async def verify_chain(self, camera: str, segments: list[Segment] | None = None) -> list[str]:
        """What is wrong with the camera's chain: a record whose chain does not follow from
        its own fields (altered), a segment whose predecessor is neither there nor removed by
        retention (one removed or altered behind the hub's back), two segments claiming one
        predecessor (two writers). ``segments``: all of the camera's, when read already."""
        problems = []
        if segments is None:
            segments = [s async for s in self.all(camera)]
        removed = await self.removed_chains(camera)
        known = {s.chain for s in segments} | removed | {GENESIS}
        followers: dict[str, int] = {}
        for segment in segments:
            expected = chain_of(
                segment.previous, segment.sha256, segment.camera, segment.start, segment.end
            )
            if segment.chain != expected:
                problems.append(f"segment {segment.start.isoformat()}: its record was altered")
            if segment.previous not in known:
                problems.append(
                    f"before {segment.start.isoformat()}: a segment was removed or altered"
                )
            followers[segment.previous] = followers.get(segment.previous, 0) + 1
        if any(n > 1 for chain, n in followers.items()):
            problems.append("two segments follow one: two hubs recorded this camera at once?")
        return problems


def gaps_of(segments: list[Segment], since: datetime, until: datetime, slack: float) -> list[Gap]:
    """Where no segment covers [since, until] (holes longer than ``slack`` seconds)."""
    found: list[Gap] = []
    at = since
    for segment in sorted(segments, key=lambda s: s.start):
        if (segment.start - at).total_seconds() > slack:
            found.append(Gap(at, min(segment.start, until)))
        at = max(at, segment.end)
    if (until - at).total_seconds() > slack:
        found.append(Gap(at, until))
    return found


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
