"""Message catalogs: operator-facing text in Russian (default) and English.

Catalogs are TOML files under ``nabat/locales/`` mapping dotted keys to text with
``{placeholders}``. Logs and code stay English; whatever an operator or integrator reads
(CLI reports, state descriptions, console strings) comes from here. A test keeps the two
catalogs in step: same keys, same placeholders.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["LANGUAGES", "Messages", "catalog"]

LANGUAGES = ("ru", "en")


def _flatten(prefix: str, table: dict[str, Any], out: dict[str, str]) -> None:
    for key, value in table.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            _flatten(full, value, out)
        else:
            out[full] = str(value)


@cache
def catalog(language: str) -> dict[str, str]:
    if language not in LANGUAGES:
        raise KeyError(f"no message catalog for {language!r}; have {', '.join(LANGUAGES)}")
    text = (resources.files("nabat") / "locales" / f"{language}.toml").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    _flatten("", tomllib.loads(text), out)
    return out


class Messages:
    """``Messages("ru")("unit.state.failed")`` → «сбой». Falls back to English, then the key."""

    def __init__(self, language: str = "ru") -> None:
        language = (language or "").strip().lower()[:2]  # "en_US.UTF-8", "EN" -> "en"
        self.language = language if language in LANGUAGES else "ru"
        self._primary = catalog(self.language)
        self._fallback = catalog("en")

    def __call__(self, key: str, **params: Any) -> str:
        text = self._primary.get(key) or self._fallback.get(key)
        if text is None:
            return key
        try:
            return text.format(**params) if params else text
        except (KeyError, IndexError, ValueError):
            return text
