"""Real footage for the evidence tests: a few seconds of the RTSP test server's ``/live``
recorded the way the recorder records — ``nabat.video.remux.run_upstream``'s fragmented MP4,
one file per segment (init segment, then fragments from a key frame), rotated at key
fragments — and indexed as the recorder's index would (start, end, size, SHA-256).

``/live`` is H.264 at 10 fps with a key frame every 15 frames (1.5 s). The segments: A and B
of one GOP each, B continuing A's timeline; recorded once per test module (3 s).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import pytest
from nabat.evidence import SegmentRef
from nabat.video.remux import Sink, UpstreamSettings, run_upstream

T0 = datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)
"""Where the recording's media time 0 is on the wall clock (what the recorder noted)."""
GOPS = (1, 1)
GOP = 1.5
"""Seconds between key frames of /live."""


@dataclass
class Recording:
    segments: list[SegmentRef]
    frames: list[list[Fraction]]
    """Each segment's frame times, seconds after T0."""
    t0: datetime = T0
    gop: float = GOP


def record(url: str, directory: Path, gops: tuple[int, ...] = GOPS) -> list[Path]:
    """Record ``url`` into one file per entry of ``gops`` (that many GOPs each)."""
    directory.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    init: list[bytes] = []
    files: list[Path] = []
    counted = [0]
    failures: list[object] = []

    def stream(mime: str, data: bytes, epoch: int) -> None:
        init[:] = [data]

    def fragment(data: bytes, key: bool, at: float = 0.0) -> None:
        if stop.is_set():
            return
        if key:
            if not files or counted[0] >= gops[len(files) - 1]:
                if len(files) == len(gops):
                    stop.set()
                    return
                files.append(directory / f"segment-{len(files)}.mp4")
                files[-1].write_bytes(init[0])
                counted[0] = 0
            counted[0] += 1
        if files:
            with files[-1].open("ab") as fh:
                fh.write(data)

    def failed(failure: object) -> None:
        failures.append(failure)
        stop.set()

    sink = Sink(stream, fragment, lambda state, reason: None, failed)
    worker = threading.Thread(
        target=run_upstream, args=(url, UpstreamSettings(), sink, stop, "evidence-test")
    )
    worker.start()
    worker.join(timeout=30)
    stop.set()
    worker.join(timeout=10)
    assert not failures, failures
    assert len(files) == len(gops), f"recorded {len(files)} segments of {len(gops)}"
    return files


def index(files: list[Path], camera: str = "cam-1") -> Recording:
    """The recorder's index entries for ``files``: times from the media timeline."""
    segments, frames = [], []
    for path in files:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            tb = Fraction(video.time_base)
            packets = [p for p in container.demux(video) if p.size]
        times = [p.pts * tb for p in packets]
        end = (packets[-1].pts + packets[-1].duration) * tb
        data = path.read_bytes()
        segments.append(
            SegmentRef(
                camera_id=camera,
                start=T0 + timedelta(seconds=float(times[0])),
                end=T0 + timedelta(seconds=float(end)),
                path=str(path),
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
        frames.append(times)
    return Recording(segments, frames)


@pytest.fixture(scope="module")
def recording(_rtsp_process, tmp_path_factory) -> Recording:
    server = _rtsp_process.ensure()
    files = record(server.url("/live"), tmp_path_factory.mktemp("segments"))
    return index(files)
