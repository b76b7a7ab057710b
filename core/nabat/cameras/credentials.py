"""Credentials of inventory cameras: resolved from their reference when the camera starts.

An inventory row names its credentials by reference (``env:NAME`` or ``file:/path``), never by
value. The referenced secret holds ``username:password`` — or just the password when the row's
URL carries the user name (``rtsp://admin@10.0.0.5/stream``). It is read at each (re)start of
the camera, so a rotated secret file takes effect on the next retry without an import.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from ..config.secrets import Secret

__all__ = ["resolve", "split_user", "with_credentials"]


def split_user(address: str) -> tuple[str, str | None]:
    """``address`` without its user name, and the user name (percent-decoded) if it had one.
    ``host[:port]`` addresses carry none (the inventory refuses ``user@host``)."""
    if "://" not in address:
        return address, None
    parts = urlsplit(address)
    if parts.username is None:
        return address, None
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.username)


def resolve(reference: str | None, url_user: str | None) -> tuple[str | None, Secret | None]:
    """The user name and password for a camera. Raises ValueError with an operator-readable
    reason (never the secret) when the reference cannot be read."""
    if reference is None:
        return url_user, None
    kind, _, target = reference.partition(":")
    if kind not in ("env", "file") or not target:
        raise ValueError(f"credentials reference {reference!r} is not env:NAME or file:/path")
    secret = Secret.from_ref({kind: target})
    value = secret.reveal()
    if url_user is not None:
        return url_user, Secret(value, secret.origin)
    user, colon, password = value.partition(":")
    if not colon or not user:
        raise ValueError(
            f"the secret {secret.origin} must hold username:password "
            "(or put the user name in the camera's URL)"
        )
    return user, Secret(password, secret.origin)


def with_credentials(camera: Any, uri: str) -> str:
    """A camera's stream URI with its credentials, when its driver knows how to add them
    (``authenticated_uri``: the ONVIF and RTSP drivers), for the hub's own readers of the
    stream (snapshots from frames, live video). Never logged or returned to a caller."""
    add: Any = getattr(camera, "authenticated_uri", None)
    return add(uri) if callable(add) else uri
