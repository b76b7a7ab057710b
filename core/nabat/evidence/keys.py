"""The hub's evidence signing key: one Ed25519 key per hub, kept in its data directory.

An export is believed because its manifest is signed by *this* hub's key and the police
compare the key's fingerprint with the one the ЕДДС gave them out of band. So the key must be
stable (created once, then always the same), private (file mode 0600, refused when others may
read it) and never silently replaced: two processes creating it at once must end up with one
key, not one each. The file is created under a temporary name with ``O_EXCL`` and then
hard-linked to its final name — ``link`` fails when the name exists, where ``rename`` would
overwrite — so whoever links second loads the winner's key instead.

Format: PKCS#8 PEM, unencrypted (the hub signs unattended; protect the file, back it up).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

from .files import fsync_dir, temp_name

__all__ = [
    "KEY_FILE",
    "SigningKey",
    "SigningKeyError",
    "check_signature",
    "fingerprint_of",
    "key_path",
    "load_or_create_key",
    "matches_pin",
    "valid_pin",
]

KEY_FILE = Path("evidence") / "signing-key.pem"
"""Where the key lives, relative to the hub's ``data_dir``."""


class SigningKeyError(Exception):
    """The key file cannot be used (unreadable, readable by others, not an Ed25519 key)."""


def fingerprint_of(public_raw: bytes) -> str:
    """SHA-256 of the raw 32-byte public key, hex in groups of four: easy to read aloud."""
    digest = hashlib.sha256(public_raw).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


class SigningKey:
    """An Ed25519 private key with its public half as base64 and its fingerprint."""

    def __init__(self, private: object, path: Path | None = None) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyError(f"{path or 'the key'} is not an Ed25519 private key")
        self._private = private
        self.path = path
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_raw = raw
        self.public_key = base64.b64encode(raw).decode("ascii")
        """The raw public key, base64 (44 characters): what the manifest carries."""
        self.fingerprint = fingerprint_of(raw)

    @classmethod
    def generate(cls) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def key_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE


def _load(path: Path) -> SigningKey:
    from cryptography.hazmat.primitives import serialization

    try:
        with path.open("rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise SigningKeyError(f"{path} is not a regular file")
            if mode & 0o077:
                raise SigningKeyError(
                    f"{path} may be read by others (mode {stat.S_IMODE(mode):04o}): the hub's "
                    f"signing key must be private; run chmod 600 {path} (and, if others did "
                    "read it, make a new key: docs/evidence.md)"
                )
            data = fh.read()
    except PermissionError:
        raise SigningKeyError(
            f"{path}, the hub's signing key, cannot be read by this user"
        ) from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not a PKCS#8 PEM private key ({exc})") from None
    return SigningKey(private, path)


def load_or_create_key(data_dir: Path) -> SigningKey:
    """The hub's key from ``<data_dir>/evidence/signing-key.pem``, created there on first use.

    Safe against concurrent first uses (one key wins, the others load it) and crashes (the
    final name only ever holds a complete file). Raises :class:`SigningKeyError`."""
    path = key_path(data_dir)
    if path.exists():
        return _load(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = SigningKey.generate()
    temp = temp_name(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, key.pem())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)  # atomic, and fails if another process was first
        except FileExistsError:
            return _load(path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return _load(path)


def check_signature(public_key: str, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the Ed25519 signature of ``data`` by ``public_key`` (raw,
    base64). A malformed key or signature is simply not valid."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(public_key, validate=True)
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def matches_pin(public_key: str, pin: str) -> bool:
    """Whether ``public_key`` (base64) is the one ``pin`` names: the same base64 key, or its
    fingerprint (any case, spaces or colons between the groups, or none)."""
    pin = pin.strip()
    if pin == public_key:
        return True
    try:
        raw = base64.b64decode(public_key, validate=True)
    except ValueError:
        return False
    digits = "".join(pin.split()).replace(":", "").lower()
    return digits == fingerprint_of(raw).replace(" ", "")


def valid_pin(pin: str) -> bool:
    """Whether ``pin`` looks like a public key (44 base64 characters of 32 bytes) or a
    fingerprint (64 hex digits, grouped or not)."""
    pin = pin.strip()
    try:
        if len(base64.b64decode(pin, validate=True)) == 32:
            return True
    except ValueError:
        pass
    digits = "".join(pin.split()).replace(":", "").lower()
    return len(digits) == 64 and all(c in "0123456789abcdef" for c in digits)
