"""The AlertDevice interface and a CAP 1.2–shaped Alert.

:class:`Alert` follows the OASIS Common Alerting Protocol 1.2 element by element (``alert`` →
``info`` → ``area``) with snake_case names in Python and CAP's camelCase on the wire, so a CAP
XML codec maps to it directly and so can any agency speaking CAP.

An :class:`AlertDevice` is one warning device or controller (a siren, a loudspeaker complex, a
КСЭОН/ЛСО gateway). Guarantees a driver gives:

* ``activate`` is **idempotent per alert identifier**: activating the same ``Alert.identifier``
  again (a retry after a timeout) must not start a second signal; it returns the current result.
* ``activate``/``cancel`` return within ``timeout`` with an :class:`ActivationResult`; a device
  that does not answer yields outcome ``unreachable`` (or raises ``TransientError`` so the hub
  retries), a device that refuses yields ``failed`` with the device's reason.
* ``status`` is a silent poll: it never makes a sound.
* ``self_test(audible=False)`` is silent; ``audible=True`` sounds the device and is only called
  for comprehensive checks announced to the population (status ``Test``).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import ClassVar

import msgspec

from .driver import Driver

__all__ = [
    "MUNICIPALITY_GEOCODE",
    "ActivationMemory",
    "ActivationOutcome",
    "ActivationResult",
    "Alert",
    "AlertDevice",
    "Area",
    "Category",
    "Certainty",
    "Circle",
    "DeviceState",
    "DeviceStatus",
    "Geocode",
    "Info",
    "MsgType",
    "Parameter",
    "Resource",
    "ResponseType",
    "Scope",
    "SelfTestResult",
    "Signal",
    "Status",
    "Urgency",
    "WarningMessage",
]


class Status(enum.StrEnum):
    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


class MsgType(enum.StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class Scope(enum.StrEnum):
    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"


class Category(enum.StrEnum):
    GEO = "Geo"
    MET = "Met"
    SAFETY = "Safety"
    SECURITY = "Security"
    RESCUE = "Rescue"
    FIRE = "Fire"
    HEALTH = "Health"
    ENV = "Env"
    TRANSPORT = "Transport"
    INFRA = "Infra"
    CBRNE = "CBRNE"
    OTHER = "Other"


class ResponseType(enum.StrEnum):
    SHELTER = "Shelter"
    EVACUATE = "Evacuate"
    PREPARE = "Prepare"
    EXECUTE = "Execute"
    AVOID = "Avoid"
    MONITOR = "Monitor"
    ASSESS = "Assess"
    ALL_CLEAR = "AllClear"
    NONE = "None"


class Urgency(enum.StrEnum):
    IMMEDIATE = "Immediate"
    EXPECTED = "Expected"
    FUTURE = "Future"
    PAST = "Past"
    UNKNOWN = "Unknown"


class Severity(enum.StrEnum):
    EXTREME = "Extreme"
    SEVERE = "Severe"
    MODERATE = "Moderate"
    MINOR = "Minor"
    UNKNOWN = "Unknown"


class Certainty(enum.StrEnum):
    OBSERVED = "Observed"
    LIKELY = "Likely"
    POSSIBLE = "Possible"
    UNLIKELY = "Unlikely"
    UNKNOWN = "Unknown"


class _Cap(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    pass


class Parameter(_Cap):
    """CAP ``valueName``/``value`` pair (``parameter``, ``eventCode``)."""

    value_name: str
    value: str


Geocode = Parameter

MUNICIPALITY_GEOCODE = "municipality"
"""The ``valueName`` of a geocode that names a municipality by its slug: an area with
``Geocode(value_name=MUNICIPALITY_GEOCODE, value="anapa")`` covers the municipality Anapa."""


class Circle(_Cap):
    """CAP circle: centre (WGS84) and radius in kilometres."""

    lat: float
    lon: float
    radius_km: float


class Area(_Cap):
    """CAP ``area``. Polygons are closed rings of (lat, lon) pairs (first == last, ≥ 4 points)."""

    area_desc: str
    polygon: list[list[tuple[float, float]]] = []
    circle: list[Circle] = []
    geocode: list[Geocode] = []
    altitude: float | None = None
    ceiling: float | None = None

    def __post_init__(self) -> None:
        for ring in self.polygon:
            if len(ring) < 4 or ring[0] != ring[-1]:
                raise ValueError(
                    "a CAP polygon needs at least 4 points, the first equal to the last"
                )


class Resource(_Cap):
    resource_desc: str
    mime_type: str
    size: int | None = None
    uri: str | None = None
    deref_uri: str | None = None
    """The resource itself, base64-encoded (CAP ``derefUri``), when sent inline."""
    digest: str | None = None


class Info(_Cap):
    """CAP ``info``: one language's description of the alert."""

    event: str
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    category: list[Category] = msgspec.field(default_factory=lambda: [Category.SAFETY])
    language: str = "ru-RU"
    response_type: list[ResponseType] = []
    audience: str | None = None
    event_code: list[Parameter] = []
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    contact: str | None = None
    parameter: list[Parameter] = []
    resource: list[Resource] = []
    area: list[Area] = []


class Alert(_Cap):
    """CAP 1.2 ``alert``."""

    identifier: str
    sender: str
    sent: datetime
    status: Status
    msg_type: MsgType
    scope: Scope = Scope.PUBLIC
    source: str | None = None
    restriction: str | None = None
    addresses: str | None = None
    code: list[str] = []
    note: str | None = None
    references: str | None = None
    incidents: str | None = None
    info: list[Info] = []

    def __post_init__(self) -> None:
        if self.scope is Scope.RESTRICTED and not self.restriction:
            raise ValueError("a Restricted alert needs a restriction")
        if self.scope is Scope.PRIVATE and not self.addresses:
            raise ValueError("a Private alert needs addresses")
        if self.sent.tzinfo is None:
            raise ValueError("sent must carry a UTC offset")


class Signal(enum.StrEnum):
    """The audible signal that precedes a message."""

    ATTENTION_ALL = "attention_all"  # «Внимание всем!», up to 3 minutes
    NONE = "none"


class WarningMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What a device plays for an alert: a signal, then a voice or text message."""

    signal: Signal = Signal.ATTENTION_ALL
    signal_seconds: int = 180
    text: str | None = None
    """Text for displays and text-to-speech devices."""
    audio: str | None = None
    """Reference to a pre-recorded message known to the device (track number, file name)."""
    repeat: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.signal_seconds <= 180:
            raise ValueError("signal_seconds must be between 0 and 180 («Внимание всем!» ≤ 3 min)")
        if self.repeat < 1:
            raise ValueError("repeat must be at least 1")


class ActivationOutcome(enum.StrEnum):
    ACTIVATED = "activated"
    CANCELLED = "cancelled"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


class ActivationResult(msgspec.Struct, frozen=True, kw_only=True):
    alert_identifier: str
    outcome: ActivationOutcome
    at: datetime
    detail: str = ""
    """The device's own words, or why it failed."""


class DeviceState(enum.StrEnum):
    IDLE = "idle"  # ready
    ACTIVE = "active"  # sounding or playing
    FAULT = "fault"  # reports a fault (amplifier, speaker line, battery…)
    OFFLINE = "offline"  # does not answer


class DeviceStatus(msgspec.Struct, frozen=True, kw_only=True):
    state: DeviceState
    checked_at: datetime
    mains_ok: bool | None = None
    battery_pct: float | None = None
    tamper: bool | None = None
    active_alert: str | None = None
    detail: str = ""


class SelfTestResult(msgspec.Struct, frozen=True, kw_only=True):
    passed: bool
    audible: bool
    at: datetime
    detail: str = ""


class AlertDevice(Driver):
    """One warning device or controller."""

    interface: ClassVar[str] = "alert_device"

    async def activate(self, alert: Alert, message: WarningMessage) -> ActivationResult:
        """Sound ``message`` for ``alert`` (idempotent per ``alert.identifier``)."""
        raise NotImplementedError

    async def cancel(self, alert_identifier: str) -> ActivationResult:
        """Stop the signal/message of ``alert_identifier``; a no-op result if none is active."""
        raise NotImplementedError

    async def status(self) -> DeviceStatus:
        """Silent status poll."""
        raise NotImplementedError

    async def self_test(self, audible: bool = False) -> SelfTestResult:
        """Run the device's self-test; silent unless ``audible``."""
        raise NotImplementedError


class ActivationMemory:
    """Idempotence per alert identifier, for :class:`AlertDevice` drivers: a repeated
    ``activate`` of an alert the device sounds answers the remembered result, and concurrent
    ones share a single call to the device. Only ``activated`` results are remembered (a failed
    or unreachable device is tried again); the latest ``keep`` alerts suffice for retries."""

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self.results: dict[str, ActivationResult] = {}
        self._inflight: dict[str, asyncio.Future[ActivationResult]] = {}

    def remember(self, result: ActivationResult) -> None:
        if result.outcome is ActivationOutcome.ACTIVATED:
            self.results[result.alert_identifier] = result
            while len(self.results) > self.keep:
                del self.results[next(iter(self.results))]

    def forget(self, alert_identifier: str) -> None:
        self.results.pop(alert_identifier, None)

    async def once(
        self, alert_identifier: str, call: Callable[[], Awaitable[ActivationResult]]
    ) -> ActivationResult:
        done = self.results.get(alert_identifier)
        if done is not None:
            return done
        running = self._inflight.get(alert_identifier)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[ActivationResult] = asyncio.get_running_loop().create_future()
        self._inflight[alert_identifier] = future
        try:
            result = await call()
            self.remember(result)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._inflight.pop(alert_identifier, None)
