"""API tokens: bearer secrets stored only as hashes, each with scopes and municipality limits.

A token is ``nabat_<43 url-safe characters>`` (256 random bits), shown once when it is created.
The journal's database keeps its SHA-256 (a slow KDF buys nothing for a random 256-bit secret,
and every request checks one) together with what the token may do. Look-ups are cached for
``cache_ttl`` seconds, so a revoked token stops working everywhere within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from ..ids import uuid7
from ..store import Journal

__all__ = ["SCOPES", "TokenError", "TokenInfo", "TokenStore"]

SCOPES: dict[str, str] = {
    "events:read": "read events: query, live stream, outbound webhook subscriptions",
    "events:write": "publish events (ingest)",
    "alerts:activate": "activate, update and cancel warning alerts",
    "cameras:read": "camera inventory, health and snapshots",
    "cameras:control": "PTZ and other camera commands",
    "cameras:export": "export recorded footage as signed evidence, and download exports",
    "ops:read": "readiness and Prometheus metrics (for monitoring)",
    "admin": "everything, including the audit log and every subscription",
}

PREFIX = "nabat_"
COLLECTION = "api_tokens"


class TokenError(ValueError):
    """A token cannot be created or changed as asked."""


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a token may do. ``municipalities`` empty: the whole region."""

    id: str
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    scopes: tuple[str, ...]
    municipalities: tuple[str, ...] = ()
    created: datetime
    expires: datetime | None = None
    rate: float | None = None
    """Requests per second allowed (None: ``[api] rate_limit``)."""
    burst: int | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def regional(self) -> bool:
        """Not limited to some municipalities."""
        return not self.municipalities

    def sees(self, municipality: str | None) -> bool:
        """Whether events of ``municipality`` are this token's business. A limited token sees
        only events tagged with one of its municipalities, not untagged (regional) ones."""
        return not self.municipalities or municipality in self.municipalities

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or datetime.now(UTC)) >= self.expires


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class TokenStore:
    """Tokens in the journal's record store, keyed by the hash of the secret."""

    def __init__(self, journal: Journal, *, cache_ttl: float = 5.0) -> None:
        self.journal = journal
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, TokenInfo | None]] = {}

    async def create(
        self,
        name: str,
        scopes: Sequence[str],
        *,
        municipalities: Sequence[str] = (),
        known_municipalities: Sequence[str] | None = None,
        expires: datetime | None = None,
        rate: float | None = None,
        burst: int | None = None,
    ) -> tuple[str, TokenInfo]:
        """Create a token; return its secret (shown once) and what it may do."""
        name = name.strip()
        if not name:
            raise TokenError("a token needs a name (who or what uses it)")
        if not scopes:
            raise TokenError(f"a token needs at least one scope: {', '.join(SCOPES)}")
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            raise TokenError(f"unknown scope {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        if known_municipalities is not None:
            bad = [m for m in municipalities if m not in known_municipalities]
            if bad:
                raise TokenError(f"unknown municipality {', '.join(bad)} in this region")
        if expires is not None and expires.tzinfo is None:
            raise TokenError("expires must carry a UTC offset")
        if rate is not None and rate <= 0:
            raise TokenError("rate must be positive")
        if any(t.name == name for t in await self.list()):
            raise TokenError(f"a token named {name!r} exists already; revoke it first")
        info = TokenInfo(
            id=f"tok_{uuid7().replace('-', '')[:20]}",
            name=name,
            scopes=tuple(dict.fromkeys(scopes)),
            municipalities=tuple(dict.fromkeys(municipalities)),
            created=datetime.now(UTC),
            expires=expires,
            rate=rate,
            burst=burst,
        )
        secret = PREFIX + secrets.token_urlsafe(32)
        await self.journal.put_record(
            COLLECTION, hash_token(secret), msgspec.json.encode(info), only_new=True
        )
        return secret, info

    async def authenticate(self, secret: str) -> TokenInfo | None:
        """The token's rights, or None for an unknown, revoked or expired token."""
        if not secret.startswith(PREFIX) or len(secret) > 200:
            return None
        key = hash_token(secret)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.cache_ttl:
            info = cached[1]
        else:
            record = await self.journal.get_record(COLLECTION, key)
            info = None if record is None else msgspec.json.decode(record.body, type=TokenInfo)
            if len(self._cache) > 10_000:  # bounded: unknown secrets are cached too
                self._cache.clear()
            self._cache[key] = (now, info)
        if info is None or info.expired():
            return None
        return info

    async def list(self) -> list[TokenInfo]:
        out = [
            msgspec.json.decode(r.body, type=TokenInfo)
            async for r in self.journal.all_records(COLLECTION)
        ]
        return sorted(out, key=lambda t: t.created)

    async def revoke(self, id_or_name: str) -> TokenInfo | None:
        """Delete the token with this id or name; return it, or None if there is none."""
        async for record in self.journal.all_records(COLLECTION):
            info = msgspec.json.decode(record.body, type=TokenInfo)
            if hmac.compare_digest(info.id, id_or_name) or info.name == id_or_name:
                await self.journal.delete_record(COLLECTION, record.key)
                self._cache.pop(record.key, None)
                return info
        return None
