"""Segment files: a camera's fragmented MP4, written fragment by fragment, safe against crashes.

A segment being written is ``<name>.mp4.part`` beside a sidecar ``<name>.mp4.part.idx``: one
line per complete fragment, ``<end offset> <seconds since the segment began>``, written after
the fragment's bytes. A finished segment is renamed to ``<name>.mp4`` (the sidecar goes). A
hub killed mid-segment leaves a ``.part`` whose sidecar says where its last whole fragment
ends: :func:`recover` cuts it there and finishes it, or removes it when it holds no whole
fragment — so at most the fragment being written is lost, and every file under a final name
plays. Every ``write`` goes straight to the kernel (no user-space buffer: a killed process
loses nothing written); ``fsync`` every ``sync_seconds`` bounds what a power cut loses.

All of it blocks: callers keep it off the event loop. The recorder writes fragments on the
upstream's thread (a write to the page cache) and leaves :meth:`SegmentWriter.sync` and
:meth:`SegmentWriter.finish` — which wait for the disk — to the path's own thread
(:mod:`nabat.recording.disk`).

Times: a segment's start is the hub's clock when it began; offsets within it are measured on
the monotonic clock, so a clock step (NTP) in the middle of a segment does not bend it.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["SegmentFile", "SegmentWriter", "camera_dir", "recover"]

PART = ".part"
IDX = ".idx"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def camera_dir(camera: str) -> str:
    """A directory name for the camera: its id when that is safe as a path, else its hex (an
    id from a TOML key could hold ``/`` or ``..``)."""
    return camera if _SAFE_ID.fullmatch(camera) else "x-" + camera.encode().hex()


@dataclass(frozen=True)
class SegmentFile:
    """A finished segment: where it is and what it holds."""

    camera: str
    root: Path
    name: str
    """Path relative to the storage root (``<camera>/<date>/<time>.mp4``)."""
    start: datetime
    end: datetime
    size: int
    sha256: str
    fragments: int

    @property
    def path(self) -> Path:
        return self.root / self.name


def _name_for(camera: str, start: datetime) -> str:
    return f"{camera_dir(camera)}/{start:%Y-%m-%d}/{start:%H%M%S_%f}Z.mp4"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """One segment being written: :meth:`append` fragments, then :meth:`finish`."""

    def __init__(
        self,
        root: Path,
        camera: str,
        init: bytes,
        *,
        start: datetime | None = None,
        sync_seconds: float = 5.0,
    ) -> None:
        """``start``: when the first fragment's video began (default now)."""
        self.root, self.camera = root, camera
        self.start = start or datetime.now(UTC)
        self.name = _name_for(camera, self.start)
        final = root / self.name
        final.parent.mkdir(parents=True, exist_ok=True)
        self.part = final.with_name(final.name + PART)
        self.idx_path = final.with_name(final.name + PART + IDX)
        self.fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self.idx = os.open(self.idx_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self.hash = hashlib.sha256()
        self.size = 0
        self.fragments = 0
        # A start in the past (a pre-roll from the stream's ring) counts from then.
        behind = max(0.0, (datetime.now(UTC) - self.start).total_seconds())
        self.t0 = time.monotonic() - behind
        self.elapsed = 0.0
        self.sync_seconds = sync_seconds
        self.synced = time.monotonic()
        self.closed = False
        self._write(init)

    def _write(self, data: bytes) -> None:
        _write_all(self.fd, data)
        self.hash.update(data)
        self.size += len(data)

    def append(self, fragment: bytes, at: float | None = None) -> None:
        """Add whole fragments (``moof`` + ``mdat``…; ``at``: when, monotonic, they were cut;
        default now); their end is noted after their bytes."""
        self._write(fragment)
        now = time.monotonic()
        self.elapsed = max(self.elapsed, (now if at is None else min(at, now)) - self.t0)
        self.fragments += 1
        _write_all(self.idx, f"{self.size} {self.elapsed:.3f}\n".encode())

    def sync_due(self) -> bool:
        """``sync_seconds`` since the last :meth:`sync` (the caller decides where it runs)."""
        return time.monotonic() - self.synced >= self.sync_seconds

    def sync(self) -> None:
        """``fsync`` what was written: bounds what a power cut loses."""
        self.synced = time.monotonic()
        if not self.closed:
            os.fsync(self.fd)
            os.fsync(self.idx)

    def finish(self) -> SegmentFile | None:
        """Close it under its final name; None (and nothing left) when it got no fragment."""
        self.closed = True
        os.fsync(self.fd)
        os.close(self.fd)
        os.close(self.idx)
        if not self.fragments:
            self.part.unlink(missing_ok=True)
            self.idx_path.unlink(missing_ok=True)
            return None
        final = self.root / self.name
        os.replace(self.part, final)
        _fsync_dir(final.parent)
        self.idx_path.unlink(missing_ok=True)
        return SegmentFile(
            camera=self.camera,
            root=self.root,
            name=self.name,
            start=self.start,
            end=self.start + timedelta(seconds=self.elapsed),
            size=self.size,
            sha256=self.hash.hexdigest(),
            fragments=self.fragments,
        )

    def abort(self) -> None:
        """Drop it (a write failed): what was written stays recoverable as a ``.part``."""
        self.closed = True
        for fd in (self.fd, self.idx):
            try:
                os.close(fd)
            except OSError:
                pass


def _start_of(part: Path) -> datetime | None:
    """The start a segment's file name says (``…/<YYYY-MM-DD>/<HHMMSS_ffffff>Z.mp4.part``)."""
    stem = part.name.removesuffix(PART).removesuffix(".mp4")
    try:
        return datetime.strptime(f"{part.parent.name} {stem}", "%Y-%m-%d %H%M%S_%fZ").replace(
            tzinfo=UTC
        )
    except ValueError:
        return None


def recover(root: Path, camera_of: dict[str, str]) -> tuple[list[SegmentFile], list[Path]]:
    """Every ``.part`` under ``root`` (left by a crash): cut at its last whole fragment and
    finished, or removed. ``camera_of`` maps a camera directory name back to the camera id.
    Returns the segments finished and the files removed."""
    finished: list[SegmentFile] = []
    removed: list[Path] = []
    for part in sorted(root.glob(f"*/*/*.mp4{PART}")):
        idx = part.with_name(part.name + IDX)
        start = _start_of(part)
        camera = camera_of.get(part.parent.parent.name)
        lines = idx.read_text(errors="replace").splitlines() if idx.exists() else []
        size, elapsed, fragments = 0, 0.0, 0
        for line in lines:
            fields = line.split()
            if len(fields) != 2:
                break  # the line being written when the hub died
            try:
                size, elapsed = int(fields[0]), float(fields[1])
            except ValueError:
                break
            fragments += 1
        if start is None or camera is None or size == 0 or part.stat().st_size < size:
            part.unlink(missing_ok=True)
            idx.unlink(missing_ok=True)
            removed.append(part)
            continue
        with part.open("r+b") as f:
            f.truncate(size)
            f.seek(0)
            digest = hashlib.file_digest(f, "sha256").hexdigest()
            os.fsync(f.fileno())
        final = part.with_name(part.name.removesuffix(PART))
        os.replace(part, final)
        idx.unlink(missing_ok=True)
        finished.append(
            SegmentFile(
                camera=camera,
                root=root,
                name=final.relative_to(root).as_posix(),
                start=start,
                end=start + timedelta(seconds=elapsed),
                size=size,
                sha256=digest,
                fragments=fragments,
            )
        )
    return finished, removed
