"""Evidence export and verification: a clip of recorded footage plus a signed manifest that
the police and a court can check without the hub (issue 17).

* :mod:`.segments` — the recorder's segments as input (:class:`SegmentRef`), checked
  against their SHA-256 before use;
* :mod:`.clip` — one ordinary MP4 of the requested period, remuxed (never re-encoded);
* :mod:`.keys` — the hub's Ed25519 signing key in its data directory;
* :mod:`.manifest` — what the export is, in canonical JSON, and its signature;
* :mod:`.export` — the export directory, assembled atomically;
* :mod:`.verify` — the checks ``nabat evidence verify`` runs.

Export is blocking (file I/O, muxing): run it in a thread. See ``docs/evidence.md``.
"""

from __future__ import annotations

from .clip import ClipError, ClipInfo, Gap, NoFootage, build_clip
from .export import Export, ExportError, export
from .keys import SigningKey, SigningKeyError, load_or_create_key
from .manifest import Actor, CameraInfo, Manifest
from .segments import SegmentError, SegmentRef, SegmentTampered
from .verify import Check, Verification, verify

__all__ = [
    "Actor",
    "CameraInfo",
    "Check",
    "ClipError",
    "ClipInfo",
    "Export",
    "ExportError",
    "Gap",
    "Manifest",
    "NoFootage",
    "SegmentError",
    "SegmentRef",
    "SegmentTampered",
    "SigningKey",
    "SigningKeyError",
    "Verification",
    "build_clip",
    "export",
    "load_or_create_key",
    "verify",
]
