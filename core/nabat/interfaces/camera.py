"""The Camera interface and the types that cross it.

A camera driver answers for one camera: what it is, which media profiles and stream URIs it
offers, a snapshot, PTZ where the camera has it, an honest health probe, and (optionally) the
camera's own events. "Reachable" is not "working": a probe that connects but sees a black,
frozen or signal-less picture must say so.

Guarantees a driver gives:

* ``probe`` never raises for a camera problem: it *returns* a :class:`CameraHealth` whose
  ``state`` says what is wrong (``unreachable``, ``auth_failed``…). It raises only for a bug
  or a cancellation. It returns within ``timeout``.
* ``snapshot`` returns a JPEG or raises ``TransientError`` / ``AuthError``; never a stale image
  passed off as new (``taken_at`` is when the picture was taken).
* ``ptz`` raises ``NotSupported`` when the camera or this profile has no PTZ; movement commands
  are idempotent in effect (a repeated ``GotoPreset`` lands at the same preset).
* ``events`` yields device events until cancelled; it renews/re-creates its subscription on its
  own and raises ``TransientError`` when it cannot, so the hub restarts it with backoff.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from ..config.secrets import Secret
from .driver import Driver
from .errors import NotSupported

__all__ = [
    "AbsoluteMove",
    "Camera",
    "CameraEvent",
    "CameraHealth",
    "CameraInfo",
    "ContinuousMove",
    "GotoHome",
    "GotoPreset",
    "HealthState",
    "MediaProfile",
    "ProfileRole",
    "PtzCommand",
    "PtzPreset",
    "RelativeMove",
    "SetPreset",
    "Snapshot",
    "Stop",
    "StreamUri",
]


class CameraInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the camera says about itself."""

    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    serial: str = ""
    hardware_id: str = ""
    capabilities: frozenset[str] = frozenset()
    """Subset of ``{"media", "ptz", "events", "snapshot", "audio", "imaging"}``."""
    clock_offset_s: float | None = None
    """Camera clock minus hub clock, when known (drift breaks WS-Security and evidence)."""


ProfileRole = Literal["probe", "snapshot", "live"]
"""What the hub takes a profile's stream for: the health ``probe``, the camera wall's
``snapshot``, ``live`` video."""


class MediaProfile(msgspec.Struct, frozen=True, kw_only=True):
    """One encoder configuration the camera offers (ONVIF media profile): a main stream, a
    sub-stream… Unknown values (a profile without a video encoder) stay None/empty."""

    token: str
    name: str = ""
    encoding: str = ""  # "H264", "H265", "JPEG", "MPEG4"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    bitrate_kbps: int | None = None
    ptz: bool = False
    roles: frozenset[ProfileRole] = frozenset()
    """The roles the driver chose this profile for; each role is served by at most one
    profile. ``stream_uri(token)`` of the ``live`` one is the stream for live video."""


class StreamUri(msgspec.Struct, frozen=True, kw_only=True):
    """Where to pull the stream from. ``uri`` carries no credentials; the hub adds them."""

    uri: str
    transport: Literal["tcp", "udp", "http"] = "tcp"
    profile: str | None = None
    expires_at: datetime | None = None


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A still picture."""

    content: bytes
    content_type: str = "image/jpeg"
    taken_at: datetime
    width: int | None = None
    height: int | None = None


class HealthState(enum.StrEnum):
    """What a probe found. Only ``ok`` means the camera really works."""

    OK = "ok"
    BLACK = "black"  # picture decodes but is (near) black
    FROZEN = "frozen"  # picture does not change between frames
    NO_SIGNAL = "no_signal"  # stream opens but yields no decodable frames
    UNREACHABLE = "unreachable"  # connect/read timeout, refused, DNS
    AUTH_FAILED = "auth_failed"  # credentials rejected
    UNSUPPORTED_CODEC = "unsupported_codec"

    @property
    def degraded(self) -> bool:
        """Reachable but not showing a usable picture."""
        return self in (HealthState.BLACK, HealthState.FROZEN)

    @property
    def offline(self) -> bool:
        return self not in (HealthState.OK, HealthState.BLACK, HealthState.FROZEN)


class CameraHealth(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one probe, with what was measured."""

    state: HealthState
    checked_at: datetime
    reason: str = ""
    """Why, in words an operator understands: "connection refused", "mean luma 3/255"."""
    reason_code: str = ""
    """The same as a stable code (``connection_refused``, ``black_picture``…) that consoles
    turn into the operator's language (``console.reason.<code>`` in the catalogs); empty when
    the driver gives none (the state is shown then)."""
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    latency_ms: float | None = None


# -- PTZ: a tagged union, so the wire form says which command it is ("action": "...") ------
# Values are in ONVIF's generic spaces; out-of-range or unknown fields are refused (a typo must
# not move a camera somewhere else).
Axis = Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)]
Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _Ptz(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="action", forbid_unknown_fields=True
):
    profile: Token | None = None


class ContinuousMove(_Ptz, tag="continuous"):
    """Move at a velocity (each axis -1..1) until Stop or ``timeout_s``."""

    pan: Axis = 0.0
    tilt: Axis = 0.0
    zoom: Axis = 0.0
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] | None = 1.0


class RelativeMove(_Ptz, tag="relative"):
    """Move by a translation in the camera's normalised space (-1..1)."""

    pan: Axis = 0.0
    tilt: Axis = 0.0
    zoom: Axis = 0.0
    speed: Unit | None = None


class AbsoluteMove(_Ptz, tag="absolute"):
    """Move to a position (pan/tilt -1..1, zoom 0..1)."""

    pan: Axis
    tilt: Axis
    zoom: Unit | None = None
    speed: Unit | None = None


class GotoPreset(_Ptz, tag="goto_preset"):
    preset: Token
    speed: Unit | None = None


class SetPreset(_Ptz, tag="set_preset"):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    preset: Token | None = None  # overwrite this token; None creates a new preset


class GotoHome(_Ptz, tag="home"):
    speed: Unit | None = None


class Stop(_Ptz, tag="stop"):
    pan_tilt: bool = True
    zoom: bool = True


PtzCommand = ContinuousMove | RelativeMove | AbsoluteMove | GotoPreset | SetPreset | GotoHome | Stop


class PtzPreset(msgspec.Struct, frozen=True):
    token: str
    name: str = ""


class CameraEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event the camera itself reports (motion, tamper, video loss…)."""

    topic: str
    """Short dot-separated name; published as ``camera.event.<topic>``: ``motion``, ``tamper``."""
    time: datetime
    active: bool | None = None
    source: dict[str, str] = {}
    data: dict[str, Any] = {}


class Camera(Driver):
    """One camera. Subclasses implement at least ``describe``, ``stream_uri`` and ``probe``."""

    interface: ClassVar[str] = "camera"

    @classmethod
    def inventory_settings(
        cls, address: str, username: str | None, password: Secret | None
    ) -> dict[str, Any]:
        """The ``settings`` of a camera imported from the inventory (``nabat cameras
        import``): ``address`` is the row's ``url`` column (a URL or ``host[:port]``) without
        any user name, ``username``/``password`` come from its credentials reference. The hub
        validates the result against :attr:`Settings`. Raise ``NotSupported`` when this
        driver cannot be used from the inventory (the default); ``ValueError`` names a row
        this driver cannot use."""
        raise NotSupported(f"driver {cls.kind} cannot be used for inventory cameras")

    async def describe(self) -> CameraInfo:
        """Device information and capabilities."""
        raise NotImplementedError

    async def profiles(self) -> list[MediaProfile]:
        """The media profiles, main stream first, each with the ``roles`` it serves (no
        camera round trip: what the driver learned at start). Default: none known."""
        return []

    async def stream_uri(self, profile: str | None = None) -> StreamUri:
        """The stream URI of ``profile`` (None: the main profile)."""
        raise NotImplementedError

    async def snapshot(self, profile: str | None = None) -> Snapshot:
        """A current JPEG. Raise NotSupported when the camera has no snapshot of its own (the
        hub then encodes one from a decoded frame)."""
        raise NotSupported("this camera offers no snapshot")

    async def ptz(self, command: PtzCommand) -> None:
        """Execute a PTZ command. Raise NotSupported without PTZ."""
        raise NotSupported("this camera has no PTZ")

    async def presets(self, profile: str | None = None) -> list[PtzPreset]:
        """PTZ presets. Raise NotSupported without PTZ."""
        raise NotSupported("this camera has no PTZ")

    async def probe(self) -> CameraHealth:
        """Check whether the camera really works (see the module docs). Never raises for a
        camera fault; returns the state instead."""
        raise NotImplementedError

    def events(self) -> AsyncIterator[CameraEvent] | None:
        """The camera's own events, or None when it has none (the default)."""
        return None
