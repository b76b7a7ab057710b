"""An evidence export: one directory a court can be handed — the clip, the signed manifest
and a README (Russian and English) saying how to check them.

The directory is assembled under a temporary name next to its destination and renamed into
place only when complete, so an export that exists is a whole one. :func:`export` is
blocking (it cuts the clip): callers on the event loop run it in a thread.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from ..i18n import Messages
from .clip import ClipInfo, build_clip
from .files import fsync_dir, sha256_of, write_atomic
from .keys import SigningKey
from .manifest import (
    MANIFEST,
    README,
    SIGNATURE,
    Actor,
    CameraInfo,
    FileEntry,
    Manifest,
    SourceSegment,
    canonical,
    signature_text,
)
from .segments import SegmentRef, utc

__all__ = ["CLIP", "Export", "ExportError", "export", "readme_text"]

CLIP = "clip.mp4"


class ExportError(Exception):
    """The export cannot be made as asked (no reason given, the destination exists)."""


class Export(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    manifest: Manifest
    clip: ClipInfo


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def readme_text(manifest: Manifest, camera: CameraInfo) -> str:
    """README.txt: the Russian text, then the English, from the message catalogs."""
    params = {
        "hub": manifest.hub,
        "camera": f"{camera.name} ({camera.id}, {camera.municipality})",
        "first": _when(manifest.first_frame),
        "last": _when(manifest.last_frame),
        "public_key": manifest.signing_key.public_key,
        "fingerprint": manifest.signing_key.fingerprint,
    }
    parts = [Messages(lang)("evidence.readme", **params).strip("\n") for lang in ("ru", "en")]
    return "\n\n" + ("\n\n" + "-" * 78 + "\n\n").join(parts) + "\n"


def export(
    segments: list[SegmentRef],
    start: datetime,
    end: datetime,
    out: Path,
    *,
    key: SigningKey,
    hub: str,
    camera: CameraInfo,
    reason: str,
    exported_by: Actor,
    incident_id: str | None = None,
    now: datetime | None = None,
) -> Export:
    """Write the export of ``camera``'s footage in ``[start, end]`` as the new directory
    ``out`` (which must not exist): ``clip.mp4``, ``manifest.json``, ``manifest.sig``,
    ``README.txt``.

    Raises :class:`ExportError`, and what :func:`~nabat.evidence.clip.build_clip` raises
    (:class:`~nabat.evidence.clip.NoFootage`, :class:`~nabat.evidence.clip.ClipError`,
    :class:`~nabat.evidence.segments.SegmentTampered` naming the segment). Blocking."""
    out = Path(out)
    if not reason.strip():
        raise ExportError("an export needs a reason (what it is for: a case, a request)")
    if out.exists():
        raise ExportError(f"{out} exists already: an export never overwrites another")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        clip = build_clip(segments, start, end, temp / CLIP)
        manifest = Manifest(
            hub=hub,
            camera=camera,
            requested_from=utc(start),
            requested_to=utc(end),
            first_frame=clip.first_frame,
            last_frame=clip.last_frame,
            reason=reason.strip(),
            incident_id=incident_id,
            exported_by=exported_by,
            exported_at=utc(now or datetime.now(UTC)),
            files=[],
            segments=[
                SourceSegment(start=utc(s.start), end=utc(s.end), sha256=s.sha256, size=s.size)
                for s in clip.segments
            ],
            gaps=clip.gaps,
            signing_key=Manifest.signer(key),
        )
        write_atomic(temp / README, readme_text(manifest, camera).encode("utf-8"))
        files = [FileEntry(name=CLIP, size=clip.size, sha256=clip.sha256)]
        size, sha256 = sha256_of(temp / README)
        files.append(FileEntry(name=README, size=size, sha256=sha256))
        manifest = msgspec.structs.replace(manifest, files=files)
        data = canonical(manifest)
        write_atomic(temp / MANIFEST, data)
        write_atomic(temp / SIGNATURE, signature_text(key, data))
        fsync_dir(temp)
        os.rename(temp, out)  # onto an existing (empty) directory too: checked above
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return Export(
        path=str(out),
        manifest=manifest,
        clip=msgspec.structs.replace(clip, path=str(out / CLIP)),
    )
