"""Console sessions: a signed-in person's cookie, kept server-side.

The cookie carries a random 256-bit secret; the journal keeps only its SHA-256, with the user,
a CSRF token and two deadlines: ``idle`` (a console left alone signs out) and ``absolute`` (a
shift ends). Sign-out and ``nabat users disable`` end sessions at once (within the cache's few
seconds). Every state-changing request made with the cookie must echo the session's CSRF token
in ``X-CSRF-Token`` (the console does; another site cannot read it), on top of the cookie's
``SameSite=Strict``.

With several hub processes, a session ended in one (sign-out, an account disabled) may still
read in another for the few seconds its cache remembers it, but never act: a state-changing
request asks the journal (``fresh``), and moving the idle deadline on is a compare-and-swap
that cannot write an ended session back to life.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta

import msgspec

from ..store import Journal

__all__ = ["COOKIE", "CSRF_HEADER", "Session", "SessionStore", "session_cookie"]

COLLECTION = "console_sessions"
COOKIE = "nabat_session"
CSRF_HEADER = "x-csrf-token"
_TOUCH_EVERY = 60.0  # seconds: how often a busy session's idle deadline is moved on


class Session(msgspec.Struct, frozen=True, kw_only=True):
    login: str
    csrf: str
    created: datetime
    idle_until: datetime
    absolute_until: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.idle_until or now >= self.absolute_until


_decoder = msgspec.json.Decoder(Session)


def session_cookie(header: str | None) -> str | None:
    """The session secret in a ``Cookie`` header: the first ``nabat_session`` (the one
    parser used for signing in requests and signing out, so a planted second cookie cannot
    make them disagree)."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == COOKIE:
            return value
    return None


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionStore:
    def __init__(
        self, journal: Journal, *, idle: float, absolute: float, cache_ttl: float = 5.0
    ) -> None:
        self.journal = journal
        self.idle = idle
        self.absolute = absolute
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, Session | None]] = {}
        self._touched: dict[str, float] = {}

    async def create(self, login: str) -> tuple[str, Session]:
        """A new session; returns the cookie's secret (only its hash is stored)."""
        now = datetime.now(UTC)
        session = Session(
            login=login,
            csrf=secrets.token_urlsafe(32),
            created=now,
            idle_until=now + timedelta(seconds=self.idle),
            absolute_until=now + timedelta(seconds=self.absolute),
        )
        secret = secrets.token_urlsafe(32)
        await self._put(_key(secret), session)
        return secret, session

    async def _put(self, key: str, session: Session) -> None:
        await self.journal.put_record(
            COLLECTION,
            key,
            msgspec.json.encode(session),
            expires=min(session.idle_until, session.absolute_until),
        )

    async def get(self, secret: str, *, fresh: bool = False) -> Session | None:
        """The live session of a cookie, its idle deadline moved on; None when unknown or
        expired. ``fresh``: from the journal, not the cache."""
        if not secret or len(secret) > 100:
            return None
        key = _key(secret)
        now_mono = time.monotonic()
        cached = self._cache.get(key)
        if not fresh and cached is not None and now_mono - cached[0] < self.cache_ttl:
            session = cached[1]
        else:
            stored = await self.journal.get_record(COLLECTION, key)
            session = _decoder.decode(stored.body) if stored is not None else None
            self._cache[key] = (now_mono, session)
            if len(self._cache) > 10_000:
                self._cache.clear()
        now = datetime.now(UTC)
        if session is None or session.expired(now):
            return None
        if now_mono - self._touched.get(key, 0.0) > _TOUCH_EVERY:
            self._touched[key] = now_mono
            if len(self._touched) > 10_000:
                self._touched.clear()

            # A swap of the body as stored: a session ended elsewhere meanwhile (sign-out in
            # another process, `nabat users passwd`) is not written back to life.
            def touched(body: bytes) -> bytes:
                return msgspec.json.encode(
                    msgspec.structs.replace(
                        _decoder.decode(body), idle_until=now + timedelta(seconds=self.idle)
                    )
                )

            written = await self.journal.update_record(
                COLLECTION,
                key,
                touched,
                expires=min(now + timedelta(seconds=self.idle), session.absolute_until),
            )
            if written is None:
                self._cache[key] = (now_mono, None)
                return None
            session = _decoder.decode(written)
            self._cache[key] = (now_mono, session)
        return session

    async def end(self, secret: str) -> None:
        key = _key(secret)
        self._cache.pop(key, None)
        await self.journal.delete_record(COLLECTION, key)

    async def end_all(self, login: str) -> int:
        """End every session of a user (password changed, account disabled)."""
        ended = 0
        async for stored in self.journal.all_records(COLLECTION):
            if _decoder.decode(stored.body).login == login:
                await self.journal.delete_record(COLLECTION, stored.key)
                self._cache.pop(stored.key, None)
                ended += 1
        return ended
