"""An evidence clip: the recorded packets covering a requested period, in one ordinary MP4.

The clip is remuxed (codec copy), never decoded and re-encoded: every frame in it is the
camera's own bytes, which is what makes it evidence rather than a rendition. It starts at
the key frame at or before the requested start (so it plays from its first frame) and ends
before the first frame after the requested end. ``movflags=+faststart`` puts the index at
the front, so any player (and a court's) opens it without a special demuxer.

**Time in the clip is wall-clock time.** Timestamps are rebased so the first frame is at 0,
and every later frame sits at its recorded time after that one. Segments that follow each
other without a break (the next one starts within :data:`GAP_TOLERANCE` of where the last
one ended) are joined on the media timeline, so jitter in the index's times cannot shuffle
frames. A longer break (the camera was offline, the recorder restarted) is *kept* as a gap
in time: the clip is as long as the period it covers, a player holds the last frame through
the gap, and the manifest lists it. Closing gaps would make a clip whose running time no
longer tells how much time passed — misleading to anyone who times events in it.

:func:`build_clip` is blocking (file I/O and muxing): callers on the event loop run it in a
thread (``await asyncio.to_thread(build_clip, ...)``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec

from .files import sha256_of, temp_name
from .segments import SegmentError, SegmentRef, open_verified, utc

__all__ = ["GAP_TOLERANCE", "ClipError", "ClipInfo", "Gap", "NoFootage", "build_clip"]

GAP_TOLERANCE = Fraction(1, 2)
"""Seconds: a break between segments up to this is jitter and joined, a longer one a gap."""

_TIME_BASE = Fraction(1, 90_000)
"""The clip's time base (MP4's customary 90 kHz)."""


class ClipError(Exception):
    """The clip cannot be made from these segments (see the message)."""


class NoFootage(ClipError):
    """No recorded frame lies in the requested period."""


class Gap(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A stretch of the clip's period with no recording: the last frame before it ends at
    ``start``, the next frame is at ``end`` (UTC)."""

    start: datetime
    end: datetime


class ClipInfo(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    first_frame: datetime
    """UTC time of the clip's first frame (a key frame at or before the requested start)."""
    last_frame: datetime
    """UTC time of the clip's last frame (its start)."""
    frames: int
    duration: float
    """Seconds from the first frame to the end of the last."""
    size: int
    """Bytes."""
    sha256: str
    segments: list[SegmentRef]
    """The segments the clip's frames come from, in time order."""
    gaps: list[Gap]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(delta: timedelta) -> Fraction:
    return Fraction(delta // timedelta(microseconds=1), 1_000_000)


class _Timeline:
    """Places each segment's packets on one clock: seconds since ``epoch`` (exact)."""

    def __init__(self, epoch: datetime) -> None:
        self.epoch = epoch
        self.next: Fraction | None = None
        """Where the previous segment's last frame ended."""

    def at(self, seconds: Fraction) -> datetime:
        return self.epoch + timedelta(microseconds=round(seconds * 1_000_000))

    def origin(self, segment: SegmentRef) -> tuple[Fraction, Gap | None]:
        """Where ``segment``'s first frame goes, and the gap before it if there is one."""
        indexed = _seconds(utc(segment.start) - self.epoch)
        if self.next is None or indexed - self.next <= GAP_TOLERANCE:
            return (indexed if self.next is None else self.next), None
        return indexed, Gap(start=self.at(self.next), end=self.at(indexed))


class _Packet:
    __slots__ = ("dts", "duration", "key", "packet", "pts", "segment")

    def __init__(
        self, packet: Any, pts: Fraction, dts: Fraction, duration: Fraction, segment: int
    ) -> None:
        self.packet, self.pts, self.dts, self.duration = packet, pts, dts, duration
        self.key = bool(packet.is_keyframe)
        self.segment = segment


def _covering(segments: list[SegmentRef], start: datetime, end: datetime) -> list[SegmentRef]:
    chosen = sorted(
        (s for s in segments if utc(s.end) > start and utc(s.start) <= end),
        key=lambda s: utc(s.start),
    )
    cameras = {s.camera_id for s in chosen}
    if len(cameras) > 1:
        raise ClipError(f"the segments are of several cameras ({', '.join(sorted(cameras))})")
    return chosen


def _packets(
    chosen: list[SegmentRef], timeline: _Timeline, gaps_before: dict[int, Gap]
) -> Iterator[tuple[Any, _Packet]]:
    """(the segment's video stream, packet) for every packet of the segments, in order, each
    segment checked against its hash before it is read."""
    import av

    for index, segment in enumerate(chosen):
        origin, gap = timeline.origin(segment)
        if gap is not None:
            gaps_before[index] = gap
        with open_verified(segment) as fh:
            try:
                container = av.open(fh, "r", format="mp4")
            except av.error.FFmpegError as exc:
                raise SegmentError(segment, f"segment {segment.path} is not MP4 ({exc})") from None
            with container:
                video = next((s for s in container.streams if s.type == "video"), None)
                if video is None or video.codec_context.name != "h264":
                    raise SegmentError(segment, f"segment {segment.path} has no H.264 video")
                tb = Fraction(video.time_base)
                anchor: int | None = None
                last: Fraction | None = None
                step = Fraction(0)
                for packet in container.demux(video):
                    if packet.size == 0 or packet.pts is None:
                        continue
                    if anchor is None:
                        if not packet.is_keyframe:
                            continue  # nothing before the first key frame can be shown
                        anchor = packet.pts
                    pts = origin + (packet.pts - anchor) * tb
                    raw_dts = packet.pts if packet.dts is None else packet.dts
                    dts = origin + (raw_dts - anchor) * tb
                    if last is not None:
                        step = pts - last
                    last = pts
                    duration = packet.duration * tb if packet.duration else step
                    yield video, _Packet(packet, pts, dts, duration, index)
                if last is not None:
                    timeline.next = last + step if step else last


def build_clip(segments: list[SegmentRef], start: datetime, end: datetime, out: Path) -> ClipInfo:
    """Remux the frames of ``segments`` covering ``[start, end]`` into the MP4 ``out``.

    Raises :class:`NoFootage` when no frame lies in the period, :class:`ClipError` when the
    segments cannot make one clip, :class:`~nabat.evidence.segments.SegmentTampered` (naming
    the file) when a segment differs from its index entry, before anything is written under
    ``out``. Blocking: run it in a thread."""
    import av

    start, end = utc(start), utc(end)
    if end <= start:
        raise ClipError("the period's end must be after its start")
    out = Path(out)
    chosen = _covering(segments, start, end)
    if not chosen:
        raise NoFootage(f"no recording between {start:%Y-%m-%d %H:%M:%S} and {end:%H:%M:%S} UTC")
    timeline = _Timeline(utc(chosen[0].start))
    start_at, end_at = _seconds(start - timeline.epoch), _seconds(end - timeline.epoch)
    gaps_before: dict[int, Gap] = {}
    gaps: list[Gap] = []
    temp = temp_name(out)
    output = av.open(str(temp), "w", format="mp4", options={"movflags": "+faststart"})
    closed = False
    try:
        stream: Any = None
        config: tuple[bytes, int, int] | None = None
        origin: Fraction | None = None
        first: _Packet | None = None
        final: _Packet | None = None
        frames = 0
        used: list[int] = []
        last_dts: int | None = None
        held: list[_Packet] = []  # the GOP so far, while before the start

        def emit(item: _Packet) -> None:
            nonlocal origin, first, final, frames, last_dts
            if origin is None:
                origin, first = item.dts, item
                # mvhd's creation time: the first frame's (before the header is written)
                output.metadata["creation_time"] = _iso(timeline.at(item.pts))
            dts = round((item.dts - origin) / _TIME_BASE)
            if last_dts is not None and dts <= last_dts:
                return  # overlapping segments: a frame already in the clip
            if used and item.segment != used[-1]:
                between = range(used[-1] + 1, item.segment + 1)
                gaps.extend(gaps_before[i] for i in between if i in gaps_before)
            if not used or used[-1] != item.segment:
                used.append(item.segment)
            packet = item.packet
            packet.time_base = _TIME_BASE
            packet.dts = dts
            packet.pts = round((item.pts - origin) / _TIME_BASE)
            packet.duration = round(item.duration / _TIME_BASE)
            packet.stream = stream
            output.mux(packet)
            last_dts, final = dts, item
            frames += 1

        for video, item in _packets(chosen, timeline, gaps_before):
            cc = video.codec_context
            here = (bytes(cc.extradata or b""), cc.width, cc.height)
            if stream is None:
                stream = output.add_stream_from_template(video)
                stream.time_base = _TIME_BASE
                config = here
            elif here != config:
                raise ClipError(
                    f"the camera's stream changed (codec configuration or picture size) in "
                    f"segment {chosen[item.segment].path}: export the periods before and "
                    "after it separately"
                )
            if item.pts > end_at:
                break
            if origin is None:
                if item.pts < start_at:  # before the start: keep the GOP it belongs to
                    if item.key:
                        held = [item]
                    elif held:
                        held.append(item)
                    continue
                if not (item.key and item.pts == start_at):
                    for early in held:  # from the key frame before the start
                        emit(early)
                held = []
            emit(item)
        if first is None or final is None:
            raise NoFootage(
                f"no recorded frame between {start:%Y-%m-%d %H:%M:%S} and {end:%H:%M:%S} UTC"
            )
        output.close()
        closed = True
        with temp.open("rb+") as fh:
            os.fsync(fh.fileno())
        size, sha256 = sha256_of(temp)
        os.replace(temp, out)
    finally:
        if not closed:
            try:
                output.close()
            except Exception:
                pass
        temp.unlink(missing_ok=True)
    return ClipInfo(
        path=str(out),
        first_frame=timeline.at(first.pts),
        last_frame=timeline.at(final.pts),
        frames=frames,
        duration=float(final.pts + final.duration - first.pts),
        size=size,
        sha256=sha256,
        segments=[chosen[i] for i in used],
        gaps=gaps,
    )
