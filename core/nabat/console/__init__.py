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

from ..api.sessions import SessionStore, session_cookie
from ..api.users import UserStore

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

    def still_signed_in(self, cookie_header: str | None) -> Callable[[], Awaitable[bool]]:
        """A check that the session of this request's cookie is still live and its person
        still allowed (long-lived requests, like the event stream, ask it now and then)."""
        secret = session_cookie(cookie_header)

        async def check() -> bool:
            if not secret:
                return False
            session = await self.sessions.get(secret)
            user = await self.users.cached(session.login) if session is not None else None
            return user is not None and not user.disabled

        return check
