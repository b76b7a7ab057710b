"""Whether the journal answers, as its own calls find out.

The first call that fails because the database is gone (refused connection, server shut down,
disk full…) starts an **outage**: logged once, not once per request — at 1,000 events/s a
line per refusal would fill the disk the outage may be about. Nothing is accepted meanwhile
(ingest answers 503; deliveries, the journal tail and scheduled jobs wait, retrying with
their own backoff), so no event can say so while it lasts. The first call that succeeds after
ends it: listeners get the :class:`Outage` — the hub publishes ``hub.journal.recovered`` with
when it began, how long it lasted and how many calls failed.

A refused statement (a constraint, a bad value) is no outage; each journal says which
failures are (:meth:`nabat.store.Journal.is_outage`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from ..logs import get_logger

__all__ = ["JournalHealth", "Outage"]

log = get_logger("nabat.store")
_REMIND_S = 30.0
SETTLE_S = 1.0
"""An outage ends at a success this long after the last failure: a nearly full disk lets a
small write through now and then, and that is not yet room."""


class Outage(msgspec.Struct, frozen=True, kw_only=True):
    """``hub.journal.recovered``: a time the journal did not answer."""

    since: datetime
    until: datetime
    seconds: float
    failures: int
    """Journal calls that failed meanwhile (ingest requests refused among them)."""
    error: str
    """The first failure's reason."""


class JournalHealth:
    def __init__(self, where: str) -> None:
        self.where = where
        self.down_since: datetime | None = None
        self.failures = 0
        self.error = ""
        self.writes_failed = False
        """The outage is of writes (a full disk): reads that succeed do not end it."""
        self._last_failure = 0.0
        self._reminded = 0.0
        self._listeners: list[Callable[[Outage], None]] = []

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def on_recovered(self, listener: Callable[[Outage], None]) -> None:
        """Call ``listener(outage)`` when an outage ends (it must not block: schedule work)."""
        self._listeners.append(listener)

    def failed(self, error: str, *, write: bool = True) -> None:
        self.failures += 1
        now = self._last_failure = time.monotonic()
        if self.down_since is None:
            self.down_since = datetime.now(UTC)
            self.error = error
            self.writes_failed = write
            self._reminded = now
            log.error("journal.unavailable", where=self.where, error=error)
        elif now - self._reminded >= _REMIND_S:
            self._reminded = now
            log.error(
                "journal.still_unavailable",
                where=self.where,
                since=self.down_since.isoformat(),
                failures=self.failures,
                error=error,
            )

    def succeeded(self, *, write: bool = True) -> None:
        if self.down_since is None:  # the hot path: one attribute read
            return
        if self.writes_failed and not write:
            return  # a full disk still lets reads through: only a write tells it has room
        if time.monotonic() - self._last_failure < SETTLE_S:
            return
        until = datetime.now(UTC)
        outage = Outage(
            since=self.down_since,
            until=until,
            seconds=round((until - self.down_since).total_seconds(), 3),
            failures=self.failures,
            error=self.error[:500],
        )
        self.down_since, self.failures, self.error, self.writes_failed = None, 0, "", False
        log.warning(
            "journal.recovered",
            where=self.where,
            seconds=outage.seconds,
            failures=outage.failures,
        )
        for listener in self._listeners:
            try:
                listener(outage)
            except Exception as exc:  # one listener's fault is its own
                log.error("journal.recovered_listener_failed", error=repr(exc))
