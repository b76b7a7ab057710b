"""What the hub offers plugins: the ``hub`` object passed to hooks, and the job/listener shapes.

Plugins program against :class:`HubAPI` only; the concrete hub behind it is core-internal and
free to change.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..events import Event
from ..logs import StructLogger
from .camera import HealthState
from .driver import Driver
from .incident import Incidents
from .payloads import UnitStatus

__all__ = ["HubAPI", "Job", "Listener", "Progress"]

D = TypeVar("D", bound=Driver)


@dataclass(frozen=True, kw_only=True)
class Job:
    """A scheduled job. Exactly one of ``every`` (seconds) or ``cron`` (5-field crontab,
    local time) is set. A run that overlaps the previous one is skipped, never doubled."""

    id: str
    func: Callable[[], Awaitable[None]]
    every: float | None = None
    cron: str | None = None
    jitter: float = 0.0
    """Random delay up to this many seconds, so many hubs or jobs do not fire together."""
    timeout: float | None = None
    """Cancel a run that takes longer (seconds); None: ``every`` or 10 minutes."""
    run_at_start: bool = False
    shared: bool = False
    """Safe to run in every hub process at once (its changes are atomic in the journal): no
    claim of each run is written, so a job every few seconds does not fill the journal."""

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError(f"job {self.id!r}: set exactly one of 'every' or 'cron'")
        if self.every is not None and self.every <= 0:
            raise ValueError(f"job {self.id!r}: 'every' must be positive")


@dataclass(frozen=True, kw_only=True)
class Listener:
    """A bus listener: ``handler(event)`` for events matching ``patterns``."""

    patterns: Sequence[str]
    handler: Callable[[Event], Awaitable[None] | None]
    name: str
    queue_size: int | None = None
    overflow: str | None = None  # "wait" | "drop_oldest"
    handler_timeout: float | None = None


class Progress:
    """Progress of one long run (a sweep of thousands of cameras): shown on ``/metrics`` as
    ``nabat_progress_*{task="<name>"}`` while it runs and after it finished."""

    def __init__(self, name: str, total: int) -> None:
        self.name = name
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.finished: float | None = None

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.done >= self.total and self.finished is None:
            self.finished = time.monotonic()

    @property
    def seconds(self) -> float:
        """Elapsed so far, or the whole run's duration once finished."""
        return (self.finished or time.monotonic()) - self.started


class HubAPI(Protocol):
    """The hub, as plugins see it."""

    @property
    def name(self) -> str:
        """The hub's name from ``[hub] name``."""

    @property
    def data_dir(self) -> Path:
        """Directory for state files; plugins use ``data_dir / <plugin name>``."""

    @property
    def log(self) -> StructLogger: ...

    @property
    def incidents(self) -> Incidents:
        """Incident records: report an incident, read one back."""

    async def publish(self, event: Event) -> None:
        """Publish an event: it is committed to the journal (durable) when this returns, then
        fanned out to listeners and durable subscribers."""

    def subscribe(
        self,
        patterns: str | Sequence[str],
        handler: Callable[[Event], Any],
        *,
        name: str,
        **opts: Any,
    ) -> Any:
        """Call ``handler(event)`` for events whose type matches ``patterns``, outside
        ``register_listeners``; ``opts`` as for :class:`Listener` (``queue_size``,
        ``overflow``, ``handler_timeout``). Returns the subscription: ``unsubscribe()`` ends it
        (what is already queued is still handled)."""

    def instances(
        self, interface: type[D] = Driver, *, municipality: str | None = None, running: bool = True
    ) -> list[D]:
        """Driver instances implementing ``interface`` (Camera, AlertDevice…), by default only
        those whose state is ``running``."""

    def instance(self, instance_id: str) -> Driver:
        """The driver of one instance; KeyError if there is none."""

    def camera_probed(self, camera_id: str, checked_at: datetime) -> None:
        """Note that a camera was just probed (shown as its ``last_probe_at``), whatever the
        result; only changes are published."""

    def last_health(self, camera_id: str) -> HealthState | None:
        """The health last reported for a camera (``camera.health.<state>``, kept across
        restarts), or None when it was never probed."""

    def state_of(self, instance_id: str) -> str:
        """The supervisor state of an instance or plugin (``running``, ``retrying``…)."""

    def status_of(self, name: str) -> UnitStatus:
        """The full status of an instance or plugin: state, reason, attempt, since."""

    async def instance_failed(self, instance_id: str, error: BaseException) -> None:
        """Report that a running instance's driver failed at run time (``AuthError`` from a
        status poll, a dropped session). The hub stops the driver, sets ``needs_auth``,
        ``retrying`` or ``failed`` by the error's class, and restarts it after the backoff."""

    def progress(self, name: str, total: int) -> Progress:
        """Start tracking a long run of ``total`` steps under ``name`` (replacing the
        previous run of that name); call ``advance()`` as steps finish."""

    def message(self, key: str, **params: Any) -> str:
        """Operator-facing text from the message catalogs, in the hub's language."""
