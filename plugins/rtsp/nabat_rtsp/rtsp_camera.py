"""``rtsp.camera``: a camera known only by its RTSP (or HTTP) stream URL.

Health comes from decoding the stream (:func:`nabat.interfaces.video.probe_stream`): black,
frozen and dying streams count as down, not just unreachable ones. Snapshots come from the
camera's own JPEG URL when ``snapshot_url`` is set, else are encoded from a decoded frame.
Blocking decode work runs in worker threads; every call is bounded by the instance timeout.
Every connection passes the camera's destination guard (``[cameras] destinations``): an
imported camera's name is resolved and checked each time, and an ``rtsp://`` stream is opened
at the address checked, not by its name again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec
from nabat.interfaces import (
    Camera,
    CameraHealth,
    CameraInfo,
    DriverContext,
    HealthState,
    MediaProfile,
    Secret,
    Snapshot,
    StreamUri,
    TransientError,
)
from nabat.interfaces.video import (
    CameraDestinationRefused,
    ProbeSettings,
    camera_guard,
    grab_snapshot,
    in_camera_worker,
    probe_stream,
    refused_health,
)

from .credentials import with_credentials
from .http_camera import fetch_jpeg


class RtspSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str
    """``rtsp://host:554/path`` (or an HTTP stream), without credentials."""
    username: str | None = None
    password: Secret | None = None
    transport: Literal["tcp", "udp"] = "tcp"
    snapshot_url: str | None = None
    """The camera's own JPEG URL, if it has one (same credentials)."""
    snapshot_width: int | None = 640
    """Scale frame snapshots down to this width for the camera wall (None: full size)."""
    connect_timeout: float = 5.0
    read_timeout: float = 5.0
    warmup_frames: int = 3
    sample_frames: int = 5

    def __post_init__(self) -> None:
        if not self.url.startswith(("rtsp://", "rtsps://", "http://", "https://")):
            raise ValueError(f"url must be rtsp:// or http(s)://, got {self.url[:40]!r}")


class RtspCamera(Camera):
    kind = "rtsp.camera"
    Settings = RtspSettings

    @classmethod
    def inventory_settings(cls, address, username, password):
        if "://" not in address:
            raise ValueError("rtsp.camera needs the stream's rtsp:// (or http://) URL")
        return {"url": address, "username": username, "password": password}

    def __init__(self, context: DriverContext, settings: RtspSettings) -> None:
        super().__init__(context, settings)
        self.probe_settings = ProbeSettings.for_camera(settings, context.timeout)
        self.guard = camera_guard(context, settings.url, settings.snapshot_url)

    async def _url(self) -> str:
        """The stream URL to open now: checked, with the credentials."""
        return self.authenticated_uri(await self.guard.url(self.settings.url))

    def authenticated_uri(self, uri: str) -> str:
        """``uri`` with the camera's credentials from its settings, for a stream decoder (the
        live restreamer, probes, frame snapshots); unchanged when the URI carries its own or
        the settings have none. Never log or return it: it holds the password."""
        s = self.settings
        return with_credentials(uri, s.username, s.password)

    async def describe(self) -> CameraInfo:
        capabilities = {"media", "snapshot"}
        return CameraInfo(model="RTSP camera", capabilities=frozenset(capabilities))

    async def profiles(self) -> list[MediaProfile]:
        return [MediaProfile(token="main", name="main")]

    async def stream_uri(self, profile: str | None = None) -> StreamUri:
        # Checked for live video and recording, which open it themselves (by its name).
        await self.guard.url(self.settings.url)
        transport = "http" if self.settings.url.startswith("http") else self.settings.transport
        return StreamUri(uri=self.settings.url, transport=transport, profile="main")

    async def probe(self) -> CameraHealth:
        try:
            url = await self._url()
        except CameraDestinationRefused as exc:
            return refused_health(exc)
        except TransientError:  # the name does not resolve (now)
            return CameraHealth(
                state=HealthState.UNREACHABLE,
                checked_at=datetime.now(UTC),
                reason="the camera's address does not resolve",
                reason_code="host_unreachable",
            )
        return await in_camera_worker(probe_stream, url, self.probe_settings)

    async def snapshot(self, profile: str | None = None) -> Snapshot:
        s = self.settings
        if s.snapshot_url:
            return await fetch_jpeg(
                s.snapshot_url, s.username, s.password, guard=self.guard, timeout=s.connect_timeout
            )
        return await in_camera_worker(
            grab_snapshot, await self._url(), self.probe_settings, max_width=s.snapshot_width
        )


__all__ = ["RtspCamera", "RtspSettings"]
