"""The signed manifest: what an export is, where it came from, and who vouches for it.

The manifest says which camera, which period was asked for and which was delivered (first
and last frame), why and by whom it was exported, the export's files with their sizes and
SHA-256, the recorded segments the clip was cut from (their times and hashes — never paths
on the hub's disks) and the gaps in the recording. The hub signs it with its Ed25519 key
(:mod:`.keys`), so changing any of it — or any file it lists — shows.

What is signed are *exactly* the bytes of ``manifest.json``: canonical JSON (keys sorted,
UTF-8, no insignificant whitespace), so the same manifest always gives the same bytes, and a
verifier checks the file as it is, never a re-encoding of it. ``manifest.sig`` holds the
64-byte signature in base64. Times are UTC, ISO 8601 with ``Z``.
"""

from __future__ import annotations

import base64
from datetime import datetime

import msgspec

from .clip import Gap
from .keys import SigningKey

__all__ = [
    "FORMAT",
    "MANIFEST",
    "README",
    "SIGNATURE",
    "VERSION",
    "Actor",
    "CameraInfo",
    "FileEntry",
    "Manifest",
    "SignerKey",
    "SourceSegment",
    "canonical",
    "signature_text",
]

FORMAT = "nabat-evidence"
VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
README = "README.txt"


class CameraInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: str
    municipality: str


class Actor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who exported: the hub's user or token id, and the name a person reads."""

    id: str
    name: str


class FileEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A file of the export: a plain name in the export's directory (no path)."""

    name: str
    size: int
    sha256: str


class SourceSegment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A recorded segment the clip was cut from, as the recorder indexed it."""

    start: datetime
    end: datetime
    sha256: str
    size: int


class SignerKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    algorithm: str = "Ed25519"
    public_key: str
    """The raw 32-byte public key, base64."""
    fingerprint: str
    """SHA-256 of the raw public key, hex in groups of four."""


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str = FORMAT
    version: int = VERSION
    hub: str
    """The exporting hub's name (``[hub] name``)."""
    camera: CameraInfo
    requested_from: datetime
    requested_to: datetime
    first_frame: datetime
    """The clip's first frame: the key frame at or before ``requested_from``."""
    last_frame: datetime
    reason: str
    incident_id: str | None = None
    exported_by: Actor
    exported_at: datetime
    files: list[FileEntry]
    segments: list[SourceSegment]
    gaps: list[Gap]
    """Stretches without recording inside the clip, kept as gaps in its time."""
    signing_key: SignerKey

    @classmethod
    def signer(cls, key: SigningKey) -> SignerKey:
        return SignerKey(public_key=key.public_key, fingerprint=key.fingerprint)


def canonical(manifest: Manifest) -> bytes:
    """The manifest's canonical bytes: what ``manifest.json`` holds and the key signs."""
    return msgspec.json.encode(manifest, order="sorted")


def signature_text(key: SigningKey, data: bytes) -> bytes:
    """``manifest.sig``: the Ed25519 signature of ``data``, base64, one line."""
    return base64.b64encode(key.sign(data)) + b"\n"
