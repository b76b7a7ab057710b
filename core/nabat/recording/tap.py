"""A recorded camera's tap on its upstream: where its segments begin and end.

Called on the upstream's own thread (a :class:`nabat.video.Tap`), so a recorded camera
costs the event loop nothing per fragment. It decides — a segment starts at a key frame, a
new one at the first key frame ``segment_seconds`` after, and on a new stream
configuration; a stall ends it, so the gap shows — and writes the fragments itself (into
the page cache: microseconds, see :mod:`nabat.recording.disk`), leaving ``fsync`` and the
finishing of a segment to the storage path's :class:`~nabat.recording.disk.DiskWriter`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..logs import get_logger
from ..video import Ring
from .disk import DiskWriter
from .segments import SegmentWriter

__all__ = ["SegmentTap", "Target"]

log = get_logger("nabat.recording")


@dataclass(frozen=True)
class Target:
    """Where a new segment may go: the storage path's root and its thread."""

    root: Path
    disk: DiskWriter


class SegmentTap:
    """``pick()`` gives where a new segment goes (None: no path has room); ``on_state(state,
    reason)`` says what the camera's recording is doing; ``on_failed(disk, error)``: a write
    failed (the path is out until it works again)."""

    def __init__(
        self,
        camera: str,
        *,
        segment_seconds: float,
        sync_seconds: float,
        pick: Callable[[], Target | None],
        on_state: Callable[[str, str], None],
        on_failed: Callable[[DiskWriter, OSError], None],
    ) -> None:
        self.camera = camera
        self.segment_seconds, self.sync_seconds = segment_seconds, sync_seconds
        self.pick, self.on_state, self.on_failed = pick, on_state, on_failed
        self.lock = threading.Lock()
        self.init: bytes | None = None
        self.writer: SegmentWriter | None = None
        self.disk: DiskWriter | None = None
        self.t0 = 0.0
        """When (monotonic) the open segment's first fragment was cut: rotation counts from
        here."""
        self.closed = False

    # -- nabat.video.Tap --------------------------------------------------------------------
    def begin(self, header: tuple[str, bytes, int] | None, backlog: list[Ring]) -> None:
        with self.lock:
            if header is not None:
                self.init = header[1]
            for data, key, at in backlog:  # the pre-roll: from that far back
                self._fragment(data, key, at)

    def stream(self, mime: str, init: bytes, epoch: int) -> None:
        with self.lock:
            if not self.closed:
                self._end()  # a new configuration: a new file
                self.init = init

    def fragment(self, data: bytes, key: bool, at: float) -> None:
        with self.lock:
            if not self.closed:
                self._fragment(data, key, at)

    def status(self, state: str, reason: str) -> None:
        if state == "stalled":
            with self.lock:
                self._end()  # the camera stopped sending: the gap shows in the index

    # -- the recorder's -----------------------------------------------------------------------
    def close(self) -> Future[None] | None:
        """No more segments; the open one is finished (the future is set when it is)."""
        with self.lock:
            self.closed = True
            return self._end(wait=True)

    def _fragment(self, data: bytes, key: bool, at: float) -> None:
        if self.init is None:
            return
        writer, disk = self.writer, self.disk
        if writer is not None and disk is not None:
            if writer.closed or disk.stalled:  # a write failed, or the disk hangs: elsewhere
                self._end()
                writer = None
            elif key and time.monotonic() - self.t0 >= self.segment_seconds:
                self._end()
                writer = None
        if writer is None:
            if not key:
                return  # a file starts at a key frame, so it plays from its start
            target = self.pick()
            if target is None:
                self.on_state("no-storage", "no storage path has room")
                return
            # The segment starts when its first fragment's video was (it may be a pre-roll).
            start = datetime.now(UTC) - timedelta(seconds=max(0.0, time.monotonic() - at))
            try:
                writer = SegmentWriter(
                    target.root,
                    self.camera,
                    self.init,
                    start=start,
                    sync_seconds=self.sync_seconds,
                )
            except OSError as exc:
                self.on_failed(target.disk, exc)
                return
            self.writer, self.disk, self.t0 = writer, target.disk, at
            self.on_state("recording", "")
        assert self.disk is not None
        try:
            writer.append(data, min(at, time.monotonic()))
        except OSError as exc:
            if not writer.closed:  # else its disk's thread failed it and said so
                writer.abort()
                self.on_failed(self.disk, exc)
            self.writer = None
            return
        if writer.sync_due():
            writer.synced = time.monotonic()  # queued once, not at every fragment meanwhile
            self.disk.sync(writer)

    def _end(self, *, wait: bool = False) -> Future[None] | None:
        writer, disk = self.writer, self.disk
        self.writer = self.disk = None
        if writer is None or disk is None:
            return None
        done: Future[None] | None = Future() if wait else None
        if writer.closed:  # a failed write closed it: what it holds stays a .part
            if done is not None:
                done.set_result(None)
            return done
        disk.finish(writer, done)
        return done
