"""Putting a camera's credentials into its URL only at the moment of use."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from nabat.interfaces import Secret


def with_credentials(url: str, username: str | None, password: Secret | None) -> str:
    """``url`` with ``username``/``password`` as its userinfo (percent-encoded), unless the
    URL carries its own. Settings keep URL and secret apart so the password stays masked."""
    parts = urlsplit(url)
    if not username or parts.username:
        return url
    userinfo = quote(username, safe="")
    if password is not None:
        userinfo += ":" + quote(password.reveal(), safe="")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))
