"""The ЕДДС operators' web console: sign-in for people and the single-page console itself.

The console is served by the hub (``/console/``) and talks to the same HTTP API as every other
client, authenticated by a session cookie instead of a bearer token (:mod:`nabat.api.sessions`).
Its front-end is built from ``console/`` (npm) into ``nabat/console/static/``; no file is
fetched from the internet at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..api.sessions import SessionStore
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

    def __init__(self, journal: Journal, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.users = UserStore(
            journal, max_failures=settings.max_failures, lockout=settings.lockout
        )
        self.sessions = SessionStore(
            journal, idle=settings.session_idle, absolute=settings.session_max
        )
