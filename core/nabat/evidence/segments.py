"""What an export is cut from: the recorder's segments, as its index describes them.

A segment is one file of fragmented MP4 (an init segment, then fragments, the first starting
at a key frame; H.264 video only), the way :mod:`nabat.video.remux` writes it; consecutive
segments of a camera continue one media timeline. The recorder's index entry for it is a
:class:`SegmentRef`. Before a byte of a segment goes into an export, the file is checked
against the size and SHA-256 the index recorded when it was written: footage changed since
must not leave the hub as evidence, silently or otherwise.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import msgspec

from .files import CHUNK

__all__ = ["SegmentError", "SegmentRef", "SegmentTampered", "open_verified", "utc"]


class SegmentRef(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded segment, as the recorder's index gives it."""

    camera_id: str
    start: datetime
    """UTC time of the segment's first frame."""
    end: datetime
    """UTC time the segment's last frame ends."""
    path: str
    """Where the file is on this server (never written into an export)."""
    size: int
    sha256: str
    """Hex SHA-256 of the whole file, recorded when it was written."""


class SegmentError(Exception):
    """A segment cannot be used: missing, unreadable, or not what the index says."""

    def __init__(self, segment: SegmentRef, detail: str) -> None:
        super().__init__(detail)
        self.segment = segment


class SegmentTampered(SegmentError):
    """A segment's content differs from what the recorder indexed."""


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def open_verified(segment: SegmentRef) -> BinaryIO:
    """The segment's file, open for reading at its start, after its size and SHA-256 were
    found to be the index's. The same open file is then read for the export, so a file
    *replaced* after the check is not what gets exported (one changed in place, between the
    check and the read, would be: whoever can do that can rewrite the index too)."""
    path = Path(segment.path)
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise SegmentError(segment, f"segment {path} is missing") from None
    except OSError as exc:
        raise SegmentError(segment, f"segment {path} cannot be read ({exc.strerror})") from None
    try:
        digest = hashlib.sha256()
        size = 0
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if size != segment.size or digest.hexdigest() != segment.sha256.lower():
            raise SegmentTampered(
                segment,
                f"segment {path} is not the footage that was recorded (size {size}, SHA-256 "
                f"{digest.hexdigest()}; the recording index says size {segment.size}, SHA-256 "
                f"{segment.sha256}): it was changed or damaged after recording, so it is not "
                "exported",
            )
        fh.seek(0)
        return fh
    except BaseException:
        fh.close()
        raise
