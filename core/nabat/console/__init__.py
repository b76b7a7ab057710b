"""The ЕДДС operators' web console: sign-in for people and the single-page console itself.

The console is served by the hub (``/console/``) and talks to the same HTTP API as every other
client, authenticated by a session cookie instead of a bearer token (:mod:`nabat.api.sessions`).
Its front-end is built from ``console/`` (npm) into ``nabat/console/static/``; no file is
fetched from the internet at run time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..api.sessions import Session, SessionStore, session_cookie
from ..api.users import User, UserStore

if TYPE_CHECKING:
    from ..config.model import ConsoleSettings
    from ..store import Journal

__all__ = ["ConsoleState"]


class ConsoleState:
    """Accounts and sessions of the console, shared by the API's access checks and routes."""

    rate = 200.0
    """Requests per second a signed-in console may make (a camera wall refreshes many tiles)."""
    burst = 2000

    sign_in_rate = 0.5
    """Sign-in attempts per second one client address may make (burst ``sign_in_burst``)."""
    sign_in_burst = 10

    def __init__(self, journal: Journal, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.users = UserStore(
            journal, max_failures=settings.max_failures, lockout=settings.lockout
        )
        self.sessions = SessionStore(
            journal, idle=settings.session_idle, absolute=settings.session_max
        )
        self.hashing = asyncio.Semaphore(2)
        """Argon2 costs 64 MiB and ~0.1 s of a core per sign-in: two at a time at most."""

    async def signed_in(self, secret: str | None) -> tuple[Session, User] | None:
        """The live session of a cookie's secret and its person, when both may still act;
        None when the session ended or the account is gone or disabled."""
        if not secret:
            return None
        session = await self.sessions.get(secret)
        user = await self.users.cached(session.login) if session is not None else None
        if session is None or user is None or user.disabled:
            return None
        return session, user

    def still_signed_in(self, cookie_header: str | None) -> Callable[[], Awaitable[bool]]:
        """A check that the session of this request's cookie is still live and its person
        still allowed (long-lived requests, like the event stream, ask it now and then)."""
        secret = session_cookie(cookie_header)

        async def check() -> bool:
            return await self.signed_in(secret) is not None

        return check
