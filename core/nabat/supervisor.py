"""The supervisor: the state of every plugin and driver instance, and their retries.

Each unit (a plugin, a driver instance) goes ``starting`` → ``running``, or on an error to
``retrying`` (transient: unreachable, timeout — exponential backoff with jitter, capped),
``needs_auth`` (rejected credentials — retried slowly, since a rotated secret file can fix it)
or ``failed`` (bad config, import error, a bug — stays until the configuration changes).
Every change is logged and published as a ``hub.unit.<state>`` event. This is Home Assistant's
config-entry model and Frigate's stream watchdog applied to everything a plugin starts.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from .config import ConfigInvalid
from .events import Event, Severity
from .interfaces import AuthError, DriverError, TransientError
from .interfaces.payloads import UnitKind, UnitState, UnitStatus
from .logs import get_logger

__all__ = ["Backoff", "Supervisor", "classify"]

log = get_logger("nabat.supervisor")

_SEVERITY = {
    UnitState.FAILED: Severity.SEVERE,
    UnitState.NEEDS_AUTH: Severity.MODERATE,
    UnitState.RETRYING: Severity.MINOR,
}


def classify(exc: BaseException) -> tuple[UnitState, str]:
    """Map an exception from a plugin or driver to the state it puts the unit in, and why."""
    if isinstance(exc, AuthError):
        return UnitState.NEEDS_AUTH, str(exc) or "credentials rejected"
    if isinstance(exc, TransientError):
        return UnitState.RETRYING, str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return UnitState.RETRYING, str(exc) or "timed out"
    if isinstance(exc, OSError):
        return UnitState.RETRYING, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ConfigInvalid):
        return UnitState.FAILED, "; ".join(f"{i.path}: {i.reason}" for i in exc.issues)
    if isinstance(exc, DriverError):
        return UnitState.FAILED, str(exc) or type(exc).__name__
    return UnitState.FAILED, f"unexpected {type(exc).__name__}: {exc}"


_RNG = random.Random()


class Backoff:
    """Exponential backoff with jitter: initial · 2ⁿ, capped, each delay drawn from [½d, d]."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or _RNG  # one generator for all: 10,000 of them cost 25 MB

    def next(self, hint: float | None = None) -> float:
        self.attempt += 1
        if hint is not None:
            return min(self.maximum, max(0.0, hint))
        ceiling = min(self.maximum, self.initial * 2 ** (self.attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Supervisor:
    """Holds unit states and runs start-with-retry loops."""

    def __init__(
        self,
        publish: Callable[[Event], Awaitable[object]],
        *,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        needs_auth_retry: float = 600.0,
        history: int = 1000,
    ) -> None:
        self._publish = publish
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.needs_auth_retry = needs_auth_retry
        self.units: dict[tuple[UnitKind, str], UnitStatus] = {}
        self.history: deque[UnitStatus] = deque(maxlen=history)
        """The latest state changes, oldest first (for /ready, the console and tests)."""
        self._changed = asyncio.Condition()
        self.quiet: set[str] = set()
        """Units (inventory cameras: thousands) whose routine changes — starting, running,
        stopped — are logged at debug level; their faults are still logged as warnings."""

    def status(self, kind: UnitKind, name: str) -> UnitStatus | None:
        return self.units.get((kind, name))

    def summary(self) -> dict[str, int]:
        """How many units are in each state: ``{"instances_running": 12, …}``."""
        counts: dict[str, int] = {}
        for status in self.units.values():
            key = f"{status.kind.value}s_{status.state.value}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def status_of_plugin(self, name: str) -> UnitStatus | None:
        return self.units.get((UnitKind.PLUGIN, name))

    async def set_state(
        self,
        kind: UnitKind,
        name: str,
        state: UnitState,
        reason: str = "",
        *,
        plugin: str | None = None,
        attempt: int = 0,
        retry_in: float | None = None,
    ) -> UnitStatus:
        previous = self.units.get((kind, name))
        status = UnitStatus(
            kind=kind,
            name=name,
            state=state,
            since=datetime.now(UTC),
            reason=reason,
            plugin=plugin,
            attempt=attempt,
            retry_in_s=None if retry_in is None else round(retry_in, 3),
        )
        self.units[(kind, name)] = status
        self.history.append(status)
        level = {
            UnitState.FAILED: "error",
            UnitState.NEEDS_AUTH: "warning",
            UnitState.RETRYING: "warning",
        }.get(state, "debug" if name in self.quiet else "info")
        getattr(log, level)(
            "unit.state",
            unit=kind.value,
            name=name,
            state=state.value,
            previous=previous.state.value if previous else None,
            reason=reason or None,
            attempt=attempt or None,
            retry_in_s=status.retry_in_s,
        )
        try:
            await self._publish(
                Event(
                    type=f"hub.unit.{state.value}",
                    source=f"/nabat/{kind.value}s/{name}",
                    subject=name,
                    severity=_SEVERITY.get(state, Severity.INFO),
                    data=status,
                )
            )
        except Exception as exc:  # the bus may be closing; the state itself is recorded
            log.debug("unit.state_not_published", name=name, error=repr(exc))
        async with self._changed:
            self._changed.notify_all()
        return status

    def forget(self, kind: UnitKind, name: str) -> None:
        """Drop a unit that no longer exists (a camera deleted from the inventory)."""
        self.units.pop((kind, name), None)
        self.quiet.discard(name)

    async def wait_settled(self, timeout: float) -> None:
        """Wait until no unit is ``starting`` (or until ``timeout``)."""

        def settled() -> bool:
            return all(s.state is not UnitState.STARTING for s in self.units.values())

        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(settled)
        except TimeoutError:
            pass

    async def keep_running(
        self,
        kind: UnitKind,
        name: str,
        start: Callable[[], Awaitable[None]],
        *,
        plugin: str | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        first_failure: asyncio.Event | None = None,
    ) -> bool:
        """Call ``start`` until it succeeds (→ ``running``, returns True) or fails for good
        (→ ``failed``, returns False). Transient errors and rejected credentials are retried
        with backoff. Cancellation stops the loop (→ ``stopped``). ``first_failure`` is set
        when the first attempt fails, so callers can tell "first attempt over" either way."""
        backoff = Backoff(self.retry_initial, self.retry_max)
        current = self.units.get((kind, name))
        if current is None or current.state is not UnitState.STARTING:
            await self.set_state(kind, name, UnitState.STARTING, plugin=plugin)
        while True:
            try:
                await start()
            except asyncio.CancelledError:
                await self.set_state(kind, name, UnitState.STOPPED, plugin=plugin)
                raise
            except Exception as exc:
                state, reason = classify(exc)
                if on_failure is not None:
                    on_failure(exc)
                if first_failure is not None:
                    first_failure.set()
                if state is UnitState.FAILED:
                    if not isinstance(exc, DriverError | ConfigInvalid):
                        log.error("unit.exception", name=name, exc_info=exc)
                    await self.set_state(kind, name, state, reason, plugin=plugin)
                    return False
                if state is UnitState.NEEDS_AUTH:
                    delay = self.needs_auth_retry
                    backoff.attempt += 1
                else:
                    delay = backoff.next(getattr(exc, "retry_after", None))
                await self.set_state(
                    kind,
                    name,
                    state,
                    reason,
                    plugin=plugin,
                    attempt=backoff.attempt,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                continue
            await self.set_state(
                kind, name, UnitState.RUNNING, plugin=plugin, attempt=backoff.attempt
            )
            return True
