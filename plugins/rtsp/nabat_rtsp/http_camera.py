"""``rtsp.http_camera``: a camera that only serves a JPEG at a URL (many cheap and old cameras).

Health: two snapshots ``frame_gap`` seconds apart are fetched (Basic or Digest auth) and
decoded; black and frozen pictures are found the same way as for streams. 401/403 →
``auth_failed``, refused/timeouts → ``unreachable``, anything that is not a picture →
``no_signal``. Every connection, each redirect too, passes the camera's destination guard
(``[cameras] destinations``): a redirect to the hub's loopback is refused, and so is an
imported camera's name that resolves there now.
"""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime

import httpx
import msgspec
from nabat.interfaces import (
    AuthError,
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
    mask_url,
)
from nabat.interfaces.video import (
    FRAMES_REASON_CODE,
    CameraDestinationRefused,
    CameraGuard,
    FrameStats,
    ProbeSettings,
    camera_guard,
    classify_frames,
    frame_stats,
    in_camera_worker,
    luma_thumbnail,
    refused_health,
)

__all__ = ["HttpSnapshotCamera", "HttpSnapshotSettings", "fetch_jpeg"]

_MAX_JPEG = 10 * 1024 * 1024


class HttpSnapshotSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    snapshot_url: str
    """``http://camera/snapshot.jpg`` (credentials separately)."""
    username: str | None = None
    password: Secret | None = None
    auth: str = "auto"
    """``basic``, ``digest`` or ``auto`` (Digest when the camera asks for it)."""
    timeout: float = 5.0
    frame_gap: float = 1.0
    """Seconds between the two snapshots a health probe compares."""

    def __post_init__(self) -> None:
        if not self.snapshot_url.startswith(("http://", "https://")):
            raise ValueError("snapshot_url must be http(s)://")
        if self.auth not in ("basic", "digest", "auto"):
            raise ValueError("auth must be basic, digest or auto")


def _auth(username: str | None, password: Secret | None, kind: str) -> httpx.Auth | None:
    if not username:
        return None
    secret = password.reveal() if password is not None else ""
    if kind == "digest":
        return httpx.DigestAuth(username, secret)
    return httpx.BasicAuth(username, secret)


async def fetch_jpeg(
    url: str,
    username: str | None,
    password: Secret | None,
    *,
    guard: CameraGuard,
    timeout: float = 5.0,
    auth: str = "auto",
) -> Snapshot:
    """GET a JPEG, every connection through ``guard``; raise AuthError for rejected
    credentials, CameraDestinationRefused for a refused address, TransientError otherwise."""
    async with guard.client(timeout=timeout, follow_redirects=True) as client:
        try:
            # auto: Basic first; a Digest challenge in the 401 answer gets a Digest retry.
            response = await client.get(url, auth=_auth(username, password, auth))
            if response.status_code == 401 and auth == "auto" and username:
                challenge = response.headers.get("www-authenticate", "").lower()
                if challenge.startswith("digest"):
                    response = await client.get(url, auth=_auth(username, password, "digest"))
        except httpx.HTTPError as exc:
            raise TransientError(f"{mask_url(url)}: {type(exc).__name__}: {exc}") from None
    if response.status_code in (401, 403):
        raise AuthError(f"{mask_url(url)}: HTTP {response.status_code}, credentials rejected")
    if response.status_code != 200:
        raise TransientError(f"{mask_url(url)}: HTTP {response.status_code}")
    content = response.content
    if len(content) > _MAX_JPEG or content[:2] != b"\xff\xd8":
        raise TransientError(f"{mask_url(url)}: the answer is not a JPEG picture")
    return Snapshot(content=content, taken_at=datetime.now(UTC))


def _jpeg_stats(jpeg: bytes, previous: bytes | None) -> tuple[FrameStats, bytes, int, int]:
    import av

    with av.open(io.BytesIO(jpeg), format="image2pipe") as container:
        frame = next(container.decode(video=0))
        luma = luma_thumbnail(frame)
        return frame_stats(luma, previous), luma, frame.width, frame.height


class HttpSnapshotCamera(Camera):
    kind = "rtsp.http_camera"
    Settings = HttpSnapshotSettings

    @classmethod
    def inventory_settings(cls, address, username, password):
        if not address.startswith(("http://", "https://")):
            raise ValueError("rtsp.http_camera needs the snapshot's http(s):// URL")
        return {"snapshot_url": address, "username": username, "password": password}

    def __init__(self, context: DriverContext, settings: HttpSnapshotSettings) -> None:
        super().__init__(context, settings)
        self.guard = camera_guard(context, settings.snapshot_url)

    async def describe(self) -> CameraInfo:
        return CameraInfo(model="HTTP snapshot camera", capabilities=frozenset({"snapshot"}))

    async def profiles(self) -> list[MediaProfile]:
        return [MediaProfile(token="snapshot", name="snapshot", encoding="JPEG")]

    async def stream_uri(self, profile: str | None = None) -> StreamUri:
        return StreamUri(uri=self.settings.snapshot_url, transport="http", profile="snapshot")

    async def snapshot(self, profile: str | None = None) -> Snapshot:
        s = self.settings
        return await fetch_jpeg(
            s.snapshot_url, s.username, s.password, guard=self.guard, timeout=s.timeout, auth=s.auth
        )

    async def probe(self) -> CameraHealth:
        s = self.settings
        started = time.monotonic()
        checked_at = datetime.now(UTC)
        stats: list[FrameStats] = []
        previous: bytes | None = None
        size: tuple[int, int] | None = None
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(s.frame_gap)
            try:
                shot = await self.snapshot()
            except CameraDestinationRefused as exc:
                return refused_health(exc)
            except AuthError as exc:
                return CameraHealth(
                    state=HealthState.AUTH_FAILED,
                    checked_at=checked_at,
                    reason=str(exc),
                    reason_code="credentials_rejected",
                )
            except TransientError as exc:
                text = str(exc)
                state = (
                    HealthState.NO_SIGNAL
                    if "HTTP" in text or "not a JPEG" in text
                    else HealthState.UNREACHABLE
                )
                code = "no_valid_answer" if state is HealthState.NO_SIGNAL else "network_error"
                return CameraHealth(
                    state=state, checked_at=checked_at, reason=text, reason_code=code
                )
            try:
                stat, previous, width, height = await in_camera_worker(
                    _jpeg_stats, shot.content, previous
                )
            except Exception as exc:
                return CameraHealth(
                    state=HealthState.NO_SIGNAL,
                    checked_at=checked_at,
                    reason=f"the picture cannot be decoded: {type(exc).__name__}",
                    reason_code="undecodable",
                )
            stats.append(stat)
            size = (width, height)
        state, reason = classify_frames(stats, ProbeSettings())
        return CameraHealth(
            state=state,
            checked_at=checked_at,
            reason=reason.replace("frames", "snapshots"),
            reason_code=FRAMES_REASON_CODE.get(state, ""),
            codec="mjpeg",
            width=size[0] if size else None,
            height=size[1] if size else None,
            latency_ms=round((time.monotonic() - started) * 1000, 1),
        )
