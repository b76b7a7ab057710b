"""``onvif.camera``: an ONVIF camera (Profile S/T) through onvif-zeep-async.

* **start** — GetSystemDateAndTime to measure the camera's clock (no credentials, as ONVIF
  allows; with them when the camera refuses that), then the service addresses (GetServices,
  else GetCapabilities), GetDeviceInformation and GetProfiles, all signed with a WS-Security
  UsernameToken (PasswordDigest) whose timestamps are shifted by the measured drift, so a
  camera with a wrong clock still accepts them. A drift beyond ``max_clock_drift_s`` is
  published as ``camera.clock.drift`` (and its end as ``camera.clock.ok``): evidence from such
  a camera carries wrong times.
* **profiles** — kept with codec, resolution and rate; ``probe_profile``, ``snapshot_profile``
  and ``live_profile`` choose which serves the probe, the wall's snapshots and live video.
* **health** — the probe profile's RTSP stream is decoded (black, frozen and dying pictures are
  down, not just unreachable cameras); the stream URI is asked again after a failed probe.
* **snapshots** — from GetSnapshotUri over HTTP with Basic or Digest auth (``auto``: what the
  camera asks for); without one the hub encodes a decoded frame.
* **PTZ** — continuous, relative, absolute, presets, home, stop: only when the camera has a PTZ
  service and the profile a PTZ configuration, else ``NotSupported``.
* **events** — a PullPoint subscription: pulled in a loop, renewed at half its lifetime,
  re-created at once when the camera forgets it (a reboot, a dropped subscription), and
  unsubscribed when the camera stops, so no subscription is leaked on the camera.

Errors are classified by :mod:`nabat_onvif.errors` (rejected credentials → ``needs_auth``;
unreachable → ``retrying``; SOAP faults named with their subcode).

**Destinations.** Every address the camera *returns* — service addresses (GetServices), stream
and snapshot URIs, event subscription addresses — is checked against ``[cameras]
destinations`` before the hub connects there, unless it is on the camera's own host: a camera
must not point the hub's signed requests or its stream reader at the hub's loopback or the
cloud metadata address. A refused media service or stream URI fails the camera (or its probe)
with the reason; another refused service is left out (logged ``onvif.destination_refused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import msgspec
from nabat.events import Severity
from nabat.interfaces import (
    AbsoluteMove,
    AuthError,
    Camera,
    CameraEvent,
    CameraHealth,
    CameraInfo,
    ConfigError,
    ContinuousMove,
    DriverContext,
    DriverError,
    GotoHome,
    GotoPreset,
    HealthState,
    MediaProfile,
    NotSupported,
    PtzCommand,
    PtzPreset,
    RelativeMove,
    Secret,
    SetPreset,
    Snapshot,
    Stop,
    StreamUri,
    TransientError,
)
from nabat.interfaces.camera import ProfileRole
from nabat.interfaces.video import (
    CameraDestinationRefused,
    ProbeSettings,
    camera_guard,
    in_camera_worker,
    probe_stream,
    refused_health,
)
from onvif import ONVIFCamera

from .errors import UnreadableAnswer, as_driver_error
from .topics import short_name

__all__ = ["ClockDrift", "OnvifCamera", "OnvifSettings"]

T = TypeVar("T")
PULLPOINT = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"
PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"
EVENTS_NS = "http://www.onvif.org/ver10/events/wsdl"
MEDIA_NS = "http://www.onvif.org/ver10/media/wsdl"
_BOOL = {"true": True, "1": True, "false": False, "0": False}
_STATE_ITEMS = ("State", "IsMotion", "IsTamper", "LogicalState", "IsInside", "Value")


class OnvifSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    host: str
    """The camera's address (IP or name)."""
    port: int = 80
    username: str | None = None
    password: Secret | None = None
    profile: str | None = None
    """Media profile token of the main stream (default: the camera's first profile): PTZ and
    ``stream_uri()`` without a profile use it."""
    probe_profile: str = "auto"
    """Profile (token or name) whose stream the health probe decodes; ``auto``: the smallest
    H.264 one (a sub-stream: less bandwidth and CPU per probe), else the smallest."""
    snapshot_profile: str = "auto"
    """Profile (token or name) of the camera wall's snapshots; ``auto``: the main profile."""
    live_profile: str = "auto"
    """Profile (token or name) for live video; ``auto``: the largest H.264 one (what
    browsers play), else the main profile."""
    transport: Literal["tcp", "udp"] = "tcp"
    """RTSP transport of the health probe and frame snapshots."""
    snapshot_auth: Literal["auto", "basic", "digest"] = "auto"
    events: bool = True
    """Subscribe to the camera's events (PullPoint) and publish them."""
    subscription_s: int = 60
    """Lifetime asked for the event subscription; renewed at half of what is granted."""
    pull_timeout_s: float = 10.0
    """How long one PullMessages may wait for events on the camera."""
    max_clock_drift_s: float = 5.0
    """Report the camera's clock when it is off by more than this."""
    clock_check_s: float = 600.0
    """How often the camera's clock is measured again (at a probe)."""
    request_timeout_s: float = 10.0
    connect_timeout: float = 5.0
    read_timeout: float = 5.0
    warmup_frames: int = 3
    sample_frames: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be 1-65535")
        if not self.host or "/" in self.host or "@" in self.host:
            raise ValueError("host is an address or name, without scheme, path or user")
        if self.subscription_s < 2:
            raise ValueError("subscription_s must be at least 2")
        for name in ("probe_profile", "snapshot_profile", "live_profile"):
            if not getattr(self, name).strip():
                raise ValueError(f'{name} is a profile token or name, or "auto"')


class ClockDrift(msgspec.Struct, frozen=True, kw_only=True):
    """``camera.clock.drift`` / ``camera.clock.ok``: the camera's clock minus the hub's."""

    camera: str
    offset_s: float
    max_s: float


def _items(simple_items: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in getattr(simple_items, "SimpleItem", None) or ():
        name = getattr(item, "Name", None)
        if name is not None:
            found[str(name)] = str(getattr(item, "Value", ""))
    return found


def _without_userinfo(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.username is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _service(namespace: str) -> str:
    """``media`` of ``http://www.onvif.org/ver10/media/wsdl``, for messages."""
    parts = [p for p in namespace.split("/") if p]
    return parts[-2] if len(parts) >= 2 and parts[-1] == "wsdl" else namespace


def _duration(seconds: float) -> str:
    return f"PT{max(0, int(seconds))}S"


def _encoding(raw: Any) -> str:
    """``H264``, ``H265``, ``JPEG``, ``MPEG4`` as cameras spell them ("H.264", "hevc")."""
    text = str(raw or "").upper().replace(".", "").replace("-", "")
    return {"HEVC": "H265", "AVC": "H264", "MJPEG": "JPEG"}.get(text, text)


def _pixels(profile: MediaProfile) -> int:
    return (profile.width or 0) * (profile.height or 0)


def _camera_time(utc: Any) -> float:
    """A SystemDateAndTime's UTCDateTime as a POSIX time; ValueError when it is no time."""
    try:
        return dt.datetime(
            int(utc.Date.Year),
            int(utc.Date.Month),
            int(utc.Date.Day),
            int(utc.Time.Hour),
            int(utc.Time.Minute),
            int(utc.Time.Second),
            tzinfo=dt.UTC,
        ).timestamp()
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"UTCDateTime is not a date and time ({exc})") from None


class OnvifCamera(Camera):
    kind = "onvif.camera"
    Settings = OnvifSettings

    @classmethod
    def inventory_settings(cls, address, username, password):
        parts = urlsplit(address if "://" in address else f"http://{address}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("onvif.camera needs host[:port] or the camera's http:// address")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return {"host": parts.hostname, "port": port, "username": username, "password": password}

    def __init__(self, context: DriverContext, settings: OnvifSettings) -> None:
        super().__init__(context, settings)
        self.device: ONVIFCamera | None = None
        self.info = CameraInfo()
        self.media_profiles: list[MediaProfile] = []
        self.roles: dict[ProfileRole, str] = {}
        """Role -> profile token, chosen at start from the ``*_profile`` settings."""
        self._stream_uris: dict[str, str] = {}
        self._snapshot_uris: dict[str, str | None] = {}
        self._snapshot_scheme: str | None = None
        self._clock_checked = 0.0
        self._offset: dt.timedelta | None = None
        self._drifting: bool | None = None
        self.subscription: str | None = None
        """The address of the live PullPoint subscription on the camera, if any."""
        self.resubscriptions = 0
        self.probe_settings = ProbeSettings.for_camera(settings, context.timeout)
        self.guard = camera_guard(context, settings.host)
        """Where the hub may connect for this camera: its own host, else by the rule."""

    # -- plumbing ---------------------------------------------------------------------------
    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """One ONVIF operation, bounded in time, its failure as a classified DriverError."""
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise as_driver_error(exc, operation) from exc

    def _has(self, namespace: str) -> bool:
        return self.device is not None and namespace in self.device.xaddrs

    def _profile(self, token: str | None) -> MediaProfile:
        wanted = token or self.settings.profile
        for profile in self.media_profiles:
            if wanted is None or profile.token == wanted:
                return profile
        raise ConfigError(f"the camera has no media profile {wanted!r} (it has: {self._known()})")

    def _known(self) -> str:
        return (
            ", ".join(
                f"{p.token}" + (f" ({p.encoding} {p.width}x{p.height})" if p.width else "")
                for p in self.media_profiles
            )
            or "none"
        )

    def _choose(self, role: ProfileRole, setting: str) -> str:
        """The token of the profile for ``role``: the setting's token or name, else auto."""
        wanted = getattr(self.settings, f"{setting}_profile")
        profiles = self.media_profiles
        if wanted != "auto":
            for match in (lambda p: p.token == wanted, lambda p: p.name == wanted):
                found = next((p for p in profiles if match(p)), None)
                if found is not None:
                    return found.token
            raise ConfigError(
                f"{setting}_profile {wanted!r}: the camera has no media profile with that "
                f"token or name (it has: {self._known()})"
            )
        main = self._profile(None)
        h264 = [p for p in profiles if p.encoding == "H264" and _pixels(p)]
        if role == "probe":
            sized = [p for p in profiles if _pixels(p)]
            return min(h264 or sized or [main], key=_pixels).token
        if role == "live" and h264:
            return main.token if main in h264 else max(h264, key=_pixels).token
        return main.token

    def authenticated_uri(self, uri: str) -> str:
        """``uri`` with the camera's credentials, for the stream decoder."""
        s = self.settings
        parts = urlsplit(uri)
        if not s.username or parts.username:
            return uri
        userinfo = quote(s.username, safe="")
        if s.password is not None:
            userinfo += ":" + quote(s.password.reveal(), safe="")
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        password = s.password.reveal() if s.password is not None else ""
        # A camera without authentication ignores the security header; the library needs
        # strings to build one. The WSDL cache stays in memory (no file under $HOME).
        # The clock is measured here, not by the library (adjust_time): it would ask again in
        # update_xaddrs, signed without the offset, which a camera with a wrong clock refuses.
        # An imported camera's name is checked now and its checked address used (no second
        # lookup for the device service); a host of plugins.toml is used as written.
        host = (await self.guard.addresses(s.host, s.port, what="the camera's address"))[0]
        self.device = device = ONVIFCamera(
            host, s.port, s.username or "", password, no_cache=True, adjust_time=False
        )
        await self._measure_clock()
        await self._call("GetServices", device.update_xaddrs)
        if self._offset is not None:
            device.dt_diff = self._offset  # update_xaddrs forgets it; new services need it
        await self._check_services()
        mgmt = await self._call("device service", device.create_devicemgmt_service)
        info = await self._call("GetDeviceInformation", mgmt.GetDeviceInformation)
        if not self._has(MEDIA_NS):
            raise ConfigError("the camera offers no ONVIF media service (Profile S)")
        media = await self._call("media service", device.create_media_service)
        raw_profiles = await self._call("GetProfiles", media.GetProfiles)
        self.media_profiles = [self._media_profile(p) for p in raw_profiles or ()]
        if not self.media_profiles:
            raise TransientError("GetProfiles: the camera has no media profile")
        self._profile(None)  # the configured one exists
        self.roles = {
            "probe": self._choose("probe", "probe"),
            "snapshot": self._choose("snapshot", "snapshot"),
            "live": self._choose("live", "live"),
        }
        self.media_profiles = [
            msgspec.structs.replace(
                p, roles=frozenset(r for r, token in self.roles.items() if token == p.token)
            )
            for p in self.media_profiles
        ]
        capabilities = {"media", "snapshot"}
        if self._has(PTZ_NS) and any(p.ptz for p in self.media_profiles):
            capabilities.add("ptz")
        if self._has(EVENTS_NS):
            capabilities.add("events")
        self.info = CameraInfo(
            manufacturer=str(info.Manufacturer or ""),
            model=str(info.Model or ""),
            firmware=str(info.FirmwareVersion or ""),
            serial=str(info.SerialNumber or ""),
            hardware_id=str(info.HardwareId or ""),
            capabilities=frozenset(capabilities),
            clock_offset_s=self.info.clock_offset_s,
        )
        self.context.log.info(
            "onvif.connected",
            manufacturer=self.info.manufacturer,
            model=self.info.model,
            firmware=self.info.firmware,
            profiles=[p.token for p in self.media_profiles],
            roles=self.roles,
            capabilities=sorted(capabilities),
        )

    async def _check_services(self) -> None:
        """Keep the service addresses the camera gave that the hub may connect to: its SOAP
        requests carry signed credentials. A refused (or, now, unresolvable) media service
        fails the camera; another is left out rather than connected to unchecked later."""
        assert self.device is not None
        for namespace, xaddr in list(self.device.xaddrs.items()):
            what = f"the camera's {_service(namespace)} service address"
            try:
                await self.guard.url(str(xaddr), what=what)
            except (CameraDestinationRefused, TransientError) as exc:
                if namespace == MEDIA_NS:
                    raise
                del self.device.xaddrs[namespace]
                self.context.log.warning("onvif.destination_refused", error=str(exc))

    async def stop(self) -> None:
        if self.subscription is not None and self.device is not None:
            # The events task was cancelled between creating a subscription and holding it:
            # remove it here, or the camera keeps it (cameras allow only a few).
            await self._unsubscribe_address(self.device, self.subscription)
        device, self.device = self.device, None
        if device is not None:
            try:
                await device.close()
            except Exception as exc:  # closing sockets must not fail a stop
                self.context.log.debug("onvif.close_failed", error=repr(exc))

    @staticmethod
    def _media_profile(raw: Any) -> MediaProfile:
        # Every element but the token is optional or may be missing from firmware's answer.
        encoder = getattr(raw, "VideoEncoderConfiguration", None)
        resolution = getattr(encoder, "Resolution", None)
        rate = getattr(encoder, "RateControl", None)
        return MediaProfile(
            token=str(raw.token),
            name=str(getattr(raw, "Name", "") or ""),
            encoding=_encoding(getattr(encoder, "Encoding", "")),
            width=getattr(resolution, "Width", None) or None,
            height=getattr(resolution, "Height", None) or None,
            fps=float(rate.FrameRateLimit) if getattr(rate, "FrameRateLimit", None) else None,
            bitrate_kbps=getattr(rate, "BitrateLimit", None),
            ptz=getattr(raw, "PTZConfiguration", None) is not None,
        )

    # -- the camera's clock -----------------------------------------------------------------
    async def _clock(self, mgmt: Any, signed: bool) -> tuple[Any, float]:
        """GetSystemDateAndTime and the hub's time at the middle of its round trip."""
        sent = time.time()
        call = mgmt.GetSystemDateAndTime if signed else mgmt.authless_GetSystemDateAndTime
        answer = await self._call("GetSystemDateAndTime", call)
        return answer, (sent + time.time()) / 2

    async def _signed_clock(self, mgmt: Any) -> tuple[Any, float]:
        """The clock asked with credentials. A camera whose clock is far off refuses the
        signature's timestamp as well: then it is signed once more with the offset its HTTP
        ``Date`` shows, and only a refusal of that means wrong credentials."""
        try:
            return await self._clock(mgmt, signed=True)
        except AuthError:
            offset = await self._date_header_offset(str(mgmt.xaddr))
            if offset is None or abs(offset) < 2.0:
                raise
            self.context.log.info("onvif.clock_from_date_header", offset_s=round(offset, 1))
            self._use_offset(offset)
            return await self._clock(mgmt, signed=True)

    async def _date_header_offset(self, url: str) -> float | None:
        """The camera's clock minus ours from the ``Date`` of any answer of its web server."""
        timeout = httpx.Timeout(self.settings.request_timeout_s)
        try:
            async with self.guard.client(timeout=timeout, verify=False) as http:
                sent = time.time()
                answer = await http.post(url, headers={"Content-Type": "application/soap+xml"})
                middle = (sent + time.time()) / 2
            return parsedate_to_datetime(answer.headers["date"]).timestamp() - middle
        except (httpx.HTTPError, DriverError, KeyError, TypeError, ValueError):
            return None

    def _use_offset(self, offset_s: float) -> None:
        """Sign every later request with the camera's clock (WS-Security ``Created``)."""
        assert self.device is not None
        self._offset = diff = dt.timedelta(seconds=offset_s)
        self.device.dt_diff = diff
        for service in self.device.services.values():  # services made before know no offset
            service.dt_diff = diff
            wsse = getattr(service.zeep_client, "wsse", None)
            if wsse is not None:
                wsse.dt_diff = diff

    async def _measure_clock(self) -> None:
        """The camera's clock minus ours (from the middle of the round trip), used for every
        signed request; published when it crosses ``max_clock_drift_s`` either way.

        Asked without credentials first, as ONVIF allows; a camera that refuses that
        (``NotAuthorized`` or HTTP 401) is asked once more with them, and only a refusal then
        means wrong credentials."""
        assert self.device is not None
        mgmt = await self._call("device service", self.device.create_devicemgmt_service)
        try:
            answer, middle = await self._clock(mgmt, signed=False)
        except (AuthError, UnreadableAnswer) as exc:
            # Refused, or an answer that is no SOAP (an HTTP 401 page): the signed call decides.
            if not self.settings.username:
                raise
            self.context.log.debug("onvif.clock_needs_credentials", error=str(exc))
            answer, middle = await self._signed_clock(mgmt)
        utc = getattr(answer, "UTCDateTime", None)
        if utc is None:
            return  # some cameras give local time only: drift cannot be measured honestly
        try:
            camera = _camera_time(utc)
        except ValueError as exc:
            self.context.log.warning("onvif.clock_unreadable", error=str(exc))
            return
        offset = round(camera - middle, 1)
        self._clock_checked = time.monotonic()
        self._use_offset(offset)
        self.info = msgspec.structs.replace(self.info, clock_offset_s=offset)
        limit = self.settings.max_clock_drift_s
        drifting = abs(offset) > limit + 1.0  # the camera reports whole seconds
        if drifting == self._drifting or (self._drifting is None and not drifting):
            self._drifting = drifting
            return
        self._drifting = drifting
        state = "drift" if drifting else "ok"
        self.context.log.warning("onvif.clock", state=state, offset_s=offset, max_s=limit)
        await self.context.publish(
            self.context.event(
                f"camera.clock.{state}",
                ClockDrift(camera=self.context.instance_id, offset_s=offset, max_s=limit),
                severity=Severity.MINOR if drifting else Severity.INFO,
            )
        )

    # -- Camera -----------------------------------------------------------------------------
    async def describe(self) -> CameraInfo:
        return self.info

    async def profiles(self) -> list[MediaProfile]:
        return list(self.media_profiles)

    async def _stream_address(self, token: str) -> str:
        """The profile's stream URI as the camera gave it (asked once, then remembered)."""
        uri = self._stream_uris.get(token)
        if uri is None:
            assert self.device is not None
            media = await self._call("media service", self.device.create_media_service)
            setup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
            answer = await self._call(
                "GetStreamUri",
                lambda: media.GetStreamUri({"StreamSetup": setup, "ProfileToken": token}),
            )
            uri = self._stream_uris[token] = _without_userinfo(str(answer.Uri))
        return uri

    async def stream_uri(self, profile: str | None = None) -> StreamUri:
        token = self._profile(profile).token
        uri = await self._stream_address(token)
        # Checked for live video and recording, which open it themselves.
        await self.guard.url(uri, what="the stream URI the camera gave")
        return StreamUri(uri=uri, transport=self.settings.transport, profile=token)

    async def probe(self) -> CameraHealth:
        now = dt.datetime.now(dt.UTC)
        try:
            token = self._profile(self.roles.get("probe")).token
            # rtsp:// at the address just checked: FFmpeg does not look the name up again.
            uri = await self.guard.url(
                await self._stream_address(token), what="the stream URI the camera gave"
            )
        except CameraDestinationRefused as exc:
            self._stream_uris.clear()  # asked again next time: the camera may be fixed
            return refused_health(exc)
        except AuthError as exc:
            return CameraHealth(
                state=HealthState.AUTH_FAILED,
                checked_at=now,
                reason=str(exc),
                reason_code="credentials_rejected",
            )
        except DriverError as exc:
            return CameraHealth(
                state=HealthState.UNREACHABLE,
                checked_at=now,
                reason=str(exc),
                reason_code="network_error",
            )
        health: CameraHealth = await in_camera_worker(
            probe_stream, self.authenticated_uri(uri), self.probe_settings
        )
        if health.state is not HealthState.OK:
            self._stream_uris.clear()  # the camera may have changed it (a reboot, new config)
        if time.monotonic() - self._clock_checked > self.settings.clock_check_s:
            try:
                await self._measure_clock()
            except DriverError as exc:
                self.context.log.debug("onvif.clock_unmeasured", error=str(exc))
        return health

    async def snapshot(self, profile: str | None = None) -> Snapshot:
        token = self._profile(profile or self.roles.get("snapshot")).token
        if token not in self._snapshot_uris:
            assert self.device is not None
            media = await self._call("media service", self.device.create_media_service)
            try:
                answer = await self._call(
                    "GetSnapshotUri", lambda: media.GetSnapshotUri({"ProfileToken": token})
                )
            except NotSupported:
                self._snapshot_uris[token] = None
            else:
                self._snapshot_uris[token] = str(answer.Uri)
        uri = self._snapshot_uris[token]
        if uri is None:
            raise NotSupported("the camera offers no snapshot URI")
        # The clear reason first; the client then checks every connection (the name again).
        await self.guard.url(uri, what="the snapshot URI the camera gave")
        return await self._fetch_snapshot(uri)

    def _auth(self, scheme: str | None) -> httpx.Auth | None:
        s = self.settings
        if not s.username or scheme is None:
            return None
        secret = s.password.reveal() if s.password is not None else ""
        if scheme == "digest":
            return httpx.DigestAuth(s.username, secret)
        return httpx.BasicAuth(s.username, secret)

    async def _fetch_snapshot(self, uri: str) -> Snapshot:
        wanted = self.settings.snapshot_auth
        scheme = self._snapshot_scheme or (None if wanted == "auto" else wanted)
        timeout = httpx.Timeout(self.settings.request_timeout_s)
        try:
            async with self.guard.client(timeout=timeout, verify=False) as http:
                response = await http.get(uri, auth=self._auth(scheme))
                if response.status_code == 401 and wanted == "auto" and self.settings.username:
                    challenge = response.headers.get("www-authenticate", "").lower()
                    scheme = "digest" if challenge.startswith("digest") else "basic"
                    response = await http.get(uri, auth=self._auth(scheme))
        except httpx.TimeoutException:
            raise TransientError("snapshot: the camera did not answer in time") from None
        except httpx.HTTPError as exc:
            raise TransientError(f"snapshot: {type(exc).__name__}: {exc}") from None
        if response.status_code == 401:
            raise AuthError("snapshot: the camera rejected the credentials (HTTP 401)")
        if response.status_code != 200:
            raise TransientError(f"snapshot: HTTP {response.status_code} from the camera")
        if not response.content.startswith(b"\xff\xd8"):
            kind = response.headers.get("content-type", "?")
            raise TransientError(f"snapshot: the camera sent {kind}, not a JPEG")
        self._snapshot_scheme = scheme
        return Snapshot(content=response.content, taken_at=dt.datetime.now(dt.UTC))

    # -- PTZ --------------------------------------------------------------------------------
    async def _ptz_service(self, profile: str | None) -> tuple[Any, str]:
        if "ptz" not in self.info.capabilities or self.device is None:
            raise NotSupported("this camera has no PTZ")
        chosen = self._profile(profile)
        if not chosen.ptz:
            raise NotSupported(f"media profile {chosen.token!r} has no PTZ configuration")
        service = await self._call("PTZ service", self.device.create_ptz_service)
        return service, chosen.token

    @staticmethod
    def _vector(pan: float | None, tilt: float | None, zoom: float | None) -> dict[str, Any]:
        vector: dict[str, Any] = {}
        if pan is not None or tilt is not None:
            vector["PanTilt"] = {"x": pan or 0.0, "y": tilt or 0.0}
        if zoom is not None:
            vector["Zoom"] = {"x": zoom}
        return vector

    def _speed(self, speed: float | None) -> dict[str, Any]:
        return {} if speed is None else {"Speed": self._vector(speed, speed, speed)}

    async def ptz(self, command: PtzCommand) -> None:
        service, token = await self._ptz_service(command.profile)
        base: dict[str, Any] = {"ProfileToken": token}
        if isinstance(command, ContinuousMove):
            request = {**base, "Velocity": self._vector(command.pan, command.tilt, command.zoom)}
            if command.timeout_s is not None:
                request["Timeout"] = dt.timedelta(seconds=command.timeout_s)
            await self._call("ContinuousMove", lambda: service.ContinuousMove(request))
        elif isinstance(command, RelativeMove):
            request = {
                **base,
                "Translation": self._vector(command.pan, command.tilt, command.zoom),
                **self._speed(command.speed),
            }
            await self._call("RelativeMove", lambda: service.RelativeMove(request))
        elif isinstance(command, AbsoluteMove):
            request = {
                **base,
                "Position": self._vector(command.pan, command.tilt, command.zoom),
                **self._speed(command.speed),
            }
            await self._call("AbsoluteMove", lambda: service.AbsoluteMove(request))
        elif isinstance(command, GotoPreset):
            request = {**base, "PresetToken": command.preset, **self._speed(command.speed)}
            await self._call("GotoPreset", lambda: service.GotoPreset(request))
        elif isinstance(command, SetPreset):
            request = {**base, "PresetName": command.name}
            if command.preset is not None:
                request["PresetToken"] = command.preset
            try:
                await self._call("SetPreset", lambda: service.SetPreset(request))
            except UnreadableAnswer as exc:
                await self._confirm_preset(service, token, command, exc)
        elif isinstance(command, GotoHome):
            request = {**base, **self._speed(command.speed)}
            await self._call("GotoHomePosition", lambda: service.GotoHomePosition(request))
        elif isinstance(command, Stop):
            request = {**base, "PanTilt": command.pan_tilt, "Zoom": command.zoom}
            await self._call("Stop", lambda: service.Stop(request))
        else:  # pragma: no cover - the union is closed
            raise NotSupported(f"unknown PTZ command {type(command).__name__}")

    async def _confirm_preset(
        self, service: Any, token: str, command: SetPreset, error: UnreadableAnswer
    ) -> None:
        """An unreadable SetPreset answer (firmware writing an undeclared ``ptz:`` prefix)
        says nothing either way: the preset list does. Sending SetPreset again could save a
        second preset, so it is looked up instead."""
        found = await self._call("GetPresets", lambda: service.GetPresets({"ProfileToken": token}))
        for preset in found or ():
            name = str(getattr(preset, "Name", "") or "")
            if name == command.name and command.preset in (None, str(preset.token)):
                self.context.log.warning(
                    "onvif.odd_answer",
                    operation="SetPreset",
                    error=str(error),
                    outcome=f"preset {name!r} is saved (token {preset.token}, seen in GetPresets)",
                )
                return
        raise TransientError(f"{error}; GetPresets shows no preset {command.name!r}: not saved")

    async def presets(self, profile: str | None = None) -> list[PtzPreset]:
        service, token = await self._ptz_service(profile)
        found = await self._call("GetPresets", lambda: service.GetPresets({"ProfileToken": token}))
        return [PtzPreset(str(p.token), str(getattr(p, "Name", "") or "")) for p in found or ()]

    # -- events -----------------------------------------------------------------------------
    def events(self) -> AsyncIterator[CameraEvent] | None:
        if not self.settings.events or "events" not in self.info.capabilities:
            return None
        return self._pull_events()

    async def _subscribe(self) -> tuple[Any, Any, float]:
        """A new PullPoint subscription: (pull service, subscription service, renew-at)."""
        device = self.device
        if device is None:
            raise TransientError("the camera is stopped")
        events = await self._call("events service", device.create_events_service)
        lifetime = self.settings.subscription_s
        create = asyncio.ensure_future(
            self._call(
                "CreatePullPointSubscription",
                lambda: events.CreatePullPointSubscription(
                    {"InitialTerminationTime": _duration(lifetime)}
                ),
            )
        )
        try:
            answer = await asyncio.shield(create)
        except asyncio.CancelledError:
            # Cancelled while the camera was creating it (the hub stopping): the camera may
            # hold the subscription already. Learn its address and remove it, or it stays
            # there (cameras allow only a few).
            with contextlib.suppress(Exception):
                late = await asyncio.wait_for(create, min(3.0, self.settings.request_timeout_s))
                await self._unsubscribe_address(
                    device, str(late.SubscriptionReference.Address._value_1)
                )
            raise
        address = str(answer.SubscriptionReference.Address._value_1)
        await self.guard.url(address, what="the event subscription address the camera gave")
        device.xaddrs[PULLPOINT] = device.rewrite_url(address)
        self.subscription = address
        pull = await self._call("pull point", device.create_pullpoint_service)
        manager = await self._call(
            "subscription", lambda: device.create_subscription_service("PullPointSubscription")
        )
        self.context.log.info("onvif.subscribed", address=address)
        return pull, manager, self._renew_at(answer, lifetime)

    @staticmethod
    def _renew_at(answer: Any, asked: float) -> float:
        current = getattr(answer, "CurrentTime", None)
        until = getattr(answer, "TerminationTime", None)
        granted = (until - current).total_seconds() if current and until else asked
        return time.monotonic() + max(2.0, granted / 2)

    async def _unsubscribe_address(self, device: ONVIFCamera, address: str) -> None:
        try:
            async with asyncio.timeout(min(3.0, self.settings.request_timeout_s)):
                await self.guard.url(address, what="the event subscription address")
                device.xaddrs[PULLPOINT] = device.rewrite_url(address)
                manager = await device.create_subscription_service("PullPointSubscription")
                await manager.Unsubscribe()
        except Exception as exc:
            self.context.log.debug("onvif.unsubscribe_failed", address=address, error=repr(exc))
        self.subscription = None

    async def _unsubscribe(self, manager: Any) -> None:
        """Best effort (the camera may be gone); bounded so a stop stays prompt."""
        address, self.subscription = self.subscription, None
        try:
            async with asyncio.timeout(min(3.0, self.settings.request_timeout_s)):
                await manager.Unsubscribe()
        except Exception as exc:
            self.context.log.debug("onvif.unsubscribe_failed", address=address, error=repr(exc))

    def _event(self, message: Any) -> CameraEvent | None:
        topic = getattr(getattr(message, "Topic", None), "_value_1", None)
        body = getattr(getattr(message, "Message", None), "_value_1", None)
        if not topic or body is None:
            return None
        topic = " ".join(str(topic).split())
        source = _items(getattr(body, "Source", None))
        data = _items(getattr(body, "Data", None))
        active = next(
            (
                _BOOL[value.lower()]
                for name, value in data.items()
                if name in _STATE_ITEMS and value.lower() in _BOOL
            ),
            None,
        )
        when = getattr(body, "UtcTime", None)
        if not isinstance(when, dt.datetime):
            when = dt.datetime.now(dt.UTC)
        elif when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        operation = getattr(body, "PropertyOperation", None)
        return CameraEvent(
            topic=short_name(topic),
            time=when,
            active=active,
            source={**source, "topic": topic, **({"operation": operation} if operation else {})},
            data=dict(data),
        )

    async def _pull_events(self) -> AsyncIterator[CameraEvent]:
        """Pull until cancelled. A lost subscription is re-created at once (once in a row);
        when that fails too, TransientError lets the hub retry with backoff."""
        pull, manager, renew_at = await self._subscribe()
        lost_in_a_row = 0
        try:
            while True:
                try:
                    if time.monotonic() >= renew_at:
                        lifetime = self.settings.subscription_s
                        answer = await self._call(
                            "Renew", partial(manager.Renew, _duration(lifetime))
                        )
                        renew_at = self._renew_at(answer, lifetime)
                    request = {
                        "Timeout": dt.timedelta(seconds=self.settings.pull_timeout_s),
                        "MessageLimit": 100,
                    }
                    async with asyncio.timeout(
                        self.settings.pull_timeout_s + self.settings.request_timeout_s
                    ):
                        answer = await pull.PullMessages(request)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = as_driver_error(exc, "PullMessages")
                    if isinstance(error, AuthError):
                        raise error from exc
                    lost_in_a_row += 1
                    self.resubscriptions += 1
                    self.context.log.warning(
                        "onvif.subscription_lost", address=self.subscription, error=str(error)
                    )
                    await self._unsubscribe(manager)
                    if lost_in_a_row > 1:
                        raise error from exc
                    pull, manager, renew_at = await self._subscribe()
                    continue
                lost_in_a_row = 0
                for message in getattr(answer, "NotificationMessage", None) or ():
                    event = self._event(message)
                    if event is not None:
                        yield event
        finally:
            # By address, not by the manager at hand: a cancellation inside _subscribe leaves
            # the new subscription's address recorded but an older manager in this frame.
            if self.subscription is not None and self.device is not None:
                await self._unsubscribe_address(self.device, self.subscription)
