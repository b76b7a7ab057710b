"""Masking of secrets wherever configuration or state is shown (Apprise's rule: never print one).

Two nets: values of the :class:`~nabat.config.secrets.Secret` type always render as ``***``; and,
for settings a plugin typed as plain strings by mistake, keys that look secret (password, token,
key, …) and passwords inside URLs are masked too.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "is_secret_key", "mask_url", "mask_urls", "mask_value", "without_userinfo"]

MASK = "***"
_SECRET_KEY = re.compile(
    r"(?:^|[_-])(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credentials?|pin)$",
    re.IGNORECASE,
)
_URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", re.IGNORECASE)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"()<>]+", re.IGNORECASE)


@lru_cache(maxsize=4096)  # every log line asks again for the same few keys
def is_secret_key(key: str) -> bool:
    """True for keys whose values are secrets by name (``password``, ``api_key``, ``auth``…)."""
    return bool(_SECRET_KEY.search(key))


def mask_url(url: str) -> str:
    """``rtsp://admin:hunter2@10.0.0.5/`` → ``rtsp://admin:***@10.0.0.5/``."""
    if "@" not in url or not _URL_WITH_PASSWORD.match(url):
        return url
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def without_userinfo(url: str) -> str:
    """``rtsp://admin:pw@10.0.0.5:554/live`` → ``rtsp://10.0.0.5:554/live``: an address to
    show operators (in a probe's reason), with neither password nor user name."""
    if "@" not in url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def mask_urls(text: str) -> str:
    """``text`` with every URL in it reduced to its scheme and host (no user, password, port
    or path): FFmpeg and HTTP libraries put the whole address in their messages."""

    def short(match: re.Match[str]) -> str:
        url = without_userinfo(match.group(0))
        scheme, _, rest = url.partition("://")
        host = rest.split("/", 1)[0].rsplit(":", 1)[0] if not rest.startswith("[") else ""
        return f"{scheme}://{host or '…'}/…"

    return _URL.sub(short, text)


def mask_value(key: str, value: Any) -> Any:
    """Mask ``value`` when ``key`` names a secret or the value is a URL with a password.

    Nested dicts and lists are walked. Values that know they are secret (they render as the
    mask through ``__str__``) are replaced by the mask.
    """
    if is_secret_key(key) and value not in (None, "", [], {}):
        return MASK  # whatever shape it has (even a malformed reference), it is a secret
    if value is None or isinstance(value, int | float):
        return value  # the common case in log lines: nothing to mask, nothing to walk
    if getattr(value, "__nabat_secret__", False):
        return MASK
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(key, v) for v in value]
    if isinstance(value, str):
        return mask_url(value)
    return value
