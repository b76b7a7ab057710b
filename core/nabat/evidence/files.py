"""File handling every part of an export shares: hashing, and writing so that a crash never
leaves a half-written file (or directory) under its final name.

Evidence is only worth something if what carries its final name is complete: a clip cut off
by a power failure, presented as the export, would be worse than none. So everything is
written under a temporary name in the same directory, flushed to disk, and renamed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

__all__ = ["CHUNK", "fsync_dir", "sha256_of", "temp_name", "write_atomic"]

CHUNK = 1 << 20


def sha256_of(path: Path) -> tuple[int, str]:
    """(size, SHA-256 hex) of the file at ``path``."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def temp_name(final: Path) -> Path:
    """A hidden name next to ``final``, unique to this process and call."""
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort where directories cannot be
    opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` as the file ``path``, complete or not at all."""
    temp = temp_name(path)
    try:
        with temp.open("xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
