"""The base of every driver: identity, settings, lifecycle, and what the hub gives it.

A driver class declares ``kind`` (``"<plugin>.<thing>"``, unique across plugins) and
``Settings`` (a msgspec Struct validating the instance's ``settings`` table in
``plugins.toml``). The hub builds one driver object per configured instance, calls
:meth:`Driver.start` once, then the interface methods, then :meth:`Driver.stop`.

What every driver must guarantee:

* **Never block the event loop.** All I/O is async; CPU-heavy work goes to a thread.
* **Bounded time.** Every method returns or raises within ``context.timeout`` (the instance's
  ``timeout``). The hub cancels the calls it makes (start, stop, probes, polls) when they
  overrun it, and so must any plugin calling a driver; cancellation must leave it usable.
* **Errors by class** (see :mod:`nabat.interfaces.errors`): ``AuthError`` for rejected
  credentials, ``TransientError`` for anything that may pass, ``NotSupported`` for a missing
  capability, ``ConfigError`` for settings that cannot work.
* **No secrets in messages.** Exception texts and logs are shown to operators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec

if TYPE_CHECKING:
    from pathlib import Path

    from ..events import Event
    from ..logs import StructLogger
    from .incident import Incidents

__all__ = ["Driver", "DriverContext", "Location", "NoSettings"]


class NoSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Settings of a driver that takes none."""


class Location(msgspec.Struct, frozen=True):
    """Where an instance stands (WGS84), for maps, alert areas and nearest-camera lookups."""

    lat: float
    lon: float


class DriverContext(Protocol):
    """What the hub hands a driver instance."""

    @property
    def instance_id(self) -> str:
        """The instance's id from ``plugins.toml`` (``krd-cam-001``)."""

    @property
    def name(self) -> str:
        """Human name of the instance (defaults to the id)."""

    @property
    def municipality(self) -> str | None:
        """Slug of the municipality the instance belongs to."""

    @property
    def location(self) -> Location | None:
        """Where the device stands, when configured."""

    @property
    def timeout(self) -> float:
        """The instance's ``timeout`` (seconds): the limit the hub puts on each call it makes
        into the driver. Drivers use it for their own I/O deadlines too."""

    @property
    def source(self) -> str:
        """CloudEvents ``source`` for events from this instance: ``/nabat/instances/<id>``."""

    @property
    def log(self) -> StructLogger:
        """A structured logger bound to this instance."""

    async def publish(self, event: Event) -> None:
        """Publish an event on the hub's bus (acknowledged once accepted)."""

    def event(self, type: str, data: Any = None, **attrs: Any) -> Event:
        """Build an event from this instance: ``source``, ``subject`` and ``municipality``
        filled in from the instance; ``attrs`` override them."""

    @property
    def incidents(self) -> Incidents:
        """The hub's incident records (connectors report incidents here)."""

    @property
    def data_dir(self) -> Path:
        """A directory of this instance's own for state files (created on first use)."""


class Driver:
    """Base class of every driver type. Subclass one of Camera, AlertDevice, Notifier,
    Connector, not this directly."""

    kind: ClassVar[str]
    """Unique driver type name, ``"<plugin>.<thing>"``: ``"onvif.camera"``, ``"mqtt.siren"``."""
    Settings: ClassVar[type[msgspec.Struct]] = NoSettings
    """The msgspec Struct validating this driver's ``settings`` table."""
    interface: ClassVar[str] = "driver"

    def __init__(self, context: DriverContext, settings: Any) -> None:
        self.context = context
        self.settings = settings

    async def start(self) -> None:
        """Connect and verify the device. Raise AuthError / TransientError / ConfigError."""

    async def stop(self) -> None:
        """Release connections and subscriptions. Must not raise; must return promptly."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.context.instance_id}>"
