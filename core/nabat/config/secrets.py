"""Secrets in configuration: referenced, never written inline, never printed.

A settings field typed :class:`Secret` accepts only ``{ env = "NAME" }`` or
``{ file = "/run/secrets/name" }``. The value is read when the configuration is loaded (so a
missing variable or file is a configuration error with its key path) and is only reachable
through :meth:`Secret.reveal`; ``str()``/``repr()`` and every printed config show ``***``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..masking import MASK

__all__ = ["Secret", "secret_dec_hook", "secret_enc_hook"]


class Secret:
    """A resolved secret value plus where it came from."""

    __slots__ = ("_value", "origin")
    __nabat_secret__ = True

    def __init__(self, value: str, origin: str = "inline") -> None:
        self._value = value
        self.origin = origin  # "env:NAME" / "file:/path" — safe to show

    def reveal(self) -> str:
        """The secret itself. Call only where it is handed to a peer."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({self.origin}, {MASK})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    @classmethod
    def from_ref(cls, ref: Any, base_dir: Path | None = None) -> Secret:
        """Resolve ``{ env = ... }`` / ``{ file = ... }``; raise ValueError with the reason."""
        if isinstance(ref, Secret):
            return ref
        if not isinstance(ref, dict):
            raise ValueError(
                'secrets must not be written inline; use { env = "NAME" } or { file = "PATH" }'
            )
        if set(ref) == {"env"} and isinstance(ref["env"], str):
            name = ref["env"]
            value = os.environ.get(name)
            if value is None:
                raise ValueError(f"environment variable {name} is not set")
            return cls(value, f"env:{name}")
        if set(ref) == {"file"} and isinstance(ref["file"], str):
            path = Path(ref["file"])
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
            return cls(value, f"file:{path}")
        raise ValueError('a secret is { env = "NAME" } or { file = "PATH" }, nothing else')


def secret_dec_hook(base_dir: Path | None = None):
    """A msgspec ``dec_hook`` that turns references into :class:`Secret` values."""

    def hook(type_: type, obj: Any) -> Any:
        if type_ is Secret:
            return Secret.from_ref(obj, base_dir)
        raise NotImplementedError(f"cannot decode {type_!r}")

    return hook


def secret_enc_hook(obj: Any) -> Any:
    """A msgspec ``enc_hook`` that prints every Secret as the mask."""
    if isinstance(obj, Secret):
        return MASK
    raise NotImplementedError(f"cannot encode {type(obj)!r}")
