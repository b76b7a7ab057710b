"""What the hub offers plugins: the ``hub`` object passed to hooks, and the job/listener shapes.

Plugins program against :class:`HubAPI` only; the concrete hub behind it is core-internal and
free to change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..events import Event
from ..logs import StructLogger
from .driver import Driver
from .payloads import UnitStatus

__all__ = ["HubAPI", "Job", "Listener"]

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
        """Subscribe a handler on the bus (see :meth:`nabat.bus.Bus.subscribe`)."""

    def instances(
        self, interface: type[D] = Driver, *, municipality: str | None = None, running: bool = True
    ) -> list[D]:
        """Driver instances implementing ``interface`` (Camera, AlertDevice…), by default only
        those whose state is ``running``."""

    def instance(self, instance_id: str) -> Driver:
        """The driver of one instance; KeyError if there is none."""

    def state_of(self, instance_id: str) -> str:
        """The supervisor state of an instance or plugin (``running``, ``retrying``…)."""

    def status_of(self, name: str) -> UnitStatus:
        """The full status of an instance or plugin: state, reason, attempt, since."""

    async def instance_failed(self, instance_id: str, error: BaseException) -> None:
        """Report that a running instance's driver failed at run time (``AuthError`` from a
        status poll, a dropped session). The hub stops the driver, sets ``needs_auth``,
        ``retrying`` or ``failed`` by the error's class, and restarts it after the backoff."""

    def message(self, key: str, **params: Any) -> str:
        """Operator-facing text from the message catalogs, in the hub's language."""
