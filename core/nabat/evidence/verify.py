"""Checking an export without the hub: the signature, the key, and every file.

Anyone holding an export can run this (``nabat evidence verify DIR``): it needs the
directory and, to be worth anything, the fingerprint of the hub's key obtained from the
ЕДДС out of band. Without that pin a valid signature only proves that *someone* signed the
manifest — a forger signs with their own key. Checks, each reported with its reason:

* ``manifest.json`` is a manifest of a format this version knows;
* ``manifest.sig`` is the Ed25519 signature of exactly those bytes, by the key the manifest
  names, and the fingerprint given there is that key's;
* the key is the pinned one (when a pin is given);
* every listed file is a plain name in the directory (a name with ``/``, ``\\`` or ``..`` is
  refused and never opened: the manifest is not trusted with paths), a regular file, of the
  listed size and SHA-256;
* nothing else is in the directory but ``manifest.json``, ``manifest.sig`` and
  ``README.txt``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path
from typing import Literal

import msgspec

from .files import CHUNK
from .keys import check_signature, fingerprint_of, matches_pin
from .manifest import FORMAT, MANIFEST, README, SIGNATURE, VERSION, FileEntry, Manifest

__all__ = ["Check", "Verification", "safe_name", "verify"]

_MAX_MANIFEST = 16 << 20


class Check(msgspec.Struct, frozen=True):
    name: str
    """What was checked: ``manifest``, ``signature``, ``key``, a file's name."""
    status: Literal["ok", "failed", "warning"]
    reason: str


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    valid: bool
    """No check failed (a warning — an unpinned key — does not fail)."""
    checks: list[Check]
    manifest: Manifest | None = None


class _Head(msgspec.Struct):
    format: str = ""
    version: int = 0


def safe_name(name: str) -> bool:
    """Whether a manifest's file name is one plain name in the export's directory."""
    return (
        bool(name)
        and name not in (".", "..", MANIFEST, SIGNATURE)
        and not any(c in name for c in "/\\\0")
        and ".." not in name
        and not name.startswith(".")
    )


def _digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _file(directory: Path, entry: FileEntry) -> Check:
    if not safe_name(entry.name):
        return Check(
            entry.name,
            "failed",
            "not a plain file name (a path, '..' or a reserved name): refused, not opened",
        )
    path = directory / entry.name
    try:
        info = path.lstat()
    except FileNotFoundError:
        return Check(entry.name, "failed", "listed in the manifest but missing")
    if not stat.S_ISREG(info.st_mode):
        return Check(entry.name, "failed", "not a regular file (a link or a directory)")
    try:
        size, sha256 = _digest(path)
    except OSError as exc:
        return Check(entry.name, "failed", f"cannot be read ({exc.strerror})")
    if size != entry.size:
        return Check(entry.name, "failed", f"{size} bytes, the manifest says {entry.size}")
    if sha256 != entry.sha256.lower():
        return Check(entry.name, "failed", f"SHA-256 {sha256} differs from the manifest's")
    return Check(entry.name, "ok", f"{size} bytes, SHA-256 {sha256}")


def _manifest(directory: Path) -> tuple[bytes | None, Manifest | None, Check]:
    path = directory / MANIFEST
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            return None, None, Check("manifest", "failed", f"{MANIFEST} is not a regular file")
        if info.st_size > _MAX_MANIFEST:
            return None, None, Check("manifest", "failed", f"{MANIFEST} is implausibly large")
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None, Check("manifest", "failed", f"no {MANIFEST}: not an evidence export")
    except OSError as exc:
        return None, None, Check("manifest", "failed", f"{MANIFEST} unreadable ({exc.strerror})")
    try:
        head = msgspec.json.decode(data, type=_Head)
    except msgspec.DecodeError as exc:
        return data, None, Check("manifest", "failed", f"{MANIFEST} is not valid JSON ({exc})")
    if head.format != FORMAT:
        return data, None, Check("manifest", "failed", f"not a {FORMAT} manifest")
    if head.version != VERSION:
        return (
            data,
            None,
            Check(
                "manifest",
                "failed",
                f"format version {head.version}; this Nabat reads version {VERSION} "
                "(verify with the Nabat version that made it, or a newer one)",
            ),
        )
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except msgspec.ValidationError as exc:
        return data, None, Check("manifest", "failed", f"{MANIFEST} is malformed ({exc})")
    summary = (
        f"camera {manifest.camera.id} ({manifest.camera.name}), "
        f"{manifest.first_frame:%Y-%m-%d %H:%M:%S} – {manifest.last_frame:%H:%M:%S} UTC, "
        f"exported by {manifest.exported_by.name} at {manifest.exported_at:%Y-%m-%d %H:%M} UTC"
    )
    return data, manifest, Check("manifest", "ok", summary)


def _signature(directory: Path, data: bytes, manifest: Manifest) -> list[Check]:
    checks = []
    key = manifest.signing_key
    try:
        raw = base64.b64decode(key.public_key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32 or key.algorithm != "Ed25519":
        return [Check("signature", "failed", "the manifest's key is not an Ed25519 public key")]
    if "".join(key.fingerprint.split()).lower() != fingerprint_of(raw).replace(" ", ""):
        checks.append(Check("fingerprint", "failed", "the manifest's fingerprint is not its key's"))
    try:
        text = (directory / SIGNATURE).read_bytes()
    except FileNotFoundError:
        return [*checks, Check("signature", "failed", f"no {SIGNATURE}: the manifest is unsigned")]
    except OSError as exc:
        return [*checks, Check("signature", "failed", f"{SIGNATURE} unreadable ({exc.strerror})")]
    try:
        signature = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if check_signature(key.public_key, data, signature):
        checks.append(Check("signature", "ok", f"valid Ed25519 signature of {MANIFEST}"))
    else:
        checks.append(
            Check(
                "signature",
                "failed",
                f"{SIGNATURE} is not a valid signature of {MANIFEST} by the key it names: "
                "the manifest was changed after signing",
            )
        )
    return checks


def verify(directory: Path, expected_key: str | None = None) -> Verification:
    """Check the export in ``directory``; ``expected_key`` (the hub's public key in base64,
    or its fingerprint) pins the signer."""
    directory = Path(directory)
    data, manifest, first = _manifest(directory)
    checks = [first]
    if data is None or manifest is None:
        return Verification(valid=False, checks=checks)
    checks += _signature(directory, data, manifest)
    fingerprint = manifest.signing_key.fingerprint
    if expected_key is None:
        checks.append(
            Check(
                "key",
                "warning",
                f"not pinned: signed by the key with fingerprint {fingerprint}; compare it "
                "with the one the ЕДДС gave you, or pass it with --key",
            )
        )
    elif matches_pin(manifest.signing_key.public_key, expected_key):
        checks.append(Check("key", "ok", f"the expected key ({fingerprint})"))
    else:
        checks.append(
            Check(
                "key",
                "failed",
                f"signed by another key ({fingerprint}) than the expected one: not this hub's "
                "export",
            )
        )
    listed: set[str] = set()
    for entry in manifest.files:
        if entry.name in listed:
            checks.append(Check(entry.name, "failed", "listed twice in the manifest"))
            continue
        listed.add(entry.name)
        checks.append(_file(directory, entry))
    allowed = listed | {MANIFEST, SIGNATURE, README}
    for name in sorted(os.listdir(directory)):
        if name not in allowed:
            checks.append(
                Check(name, "failed", "in the directory but not listed in the signed manifest")
            )
    valid = all(c.status != "failed" for c in checks)
    return Verification(valid=valid, checks=checks, manifest=manifest)
