"""Working with a camera's stream: probe it, grab a picture, classify frames — in a worker.

What a camera driver needs beyond the :class:`~nabat.interfaces.Camera` interface, so that
every brand reports health the same way (the same states, reasons and ``reason_code``\\s):

* :func:`probe_stream` ``(url, settings) -> CameraHealth`` opens a stream (RTSP over TCP by
  default, or HTTP), skips warm-up frames, decodes a few and says ``ok``, ``black``,
  ``frozen``, ``no_signal``, ``unreachable``, ``auth_failed`` or ``unsupported_codec``; it
  never raises for a camera's fault and its reason names no address.
* :func:`grab_snapshot` ``(url, settings, max_width=…) -> Snapshot`` encodes the current
  picture as JPEG (for cameras without a snapshot URL); :func:`encode_jpeg` encodes one
  decoded frame.
* For pictures obtained otherwise (an HTTP JPEG endpoint): :func:`luma_thumbnail` (a frame as
  64×36 grey), :func:`frame_stats` (one thumbnail, against the previous) and
  :func:`classify_frames` (the verdict on sampled stats), with :data:`FRAMES_REASON_CODE`.
* :class:`ProbeSettings` (``ProbeSettings.for_camera(settings, timeout)``) holds the limits and
  thresholds.
* :func:`camera_guard` ``(context, *own_addresses) -> CameraGuard``: where the hub may connect
  for this camera (``[cameras] destinations``). Check every address a camera *returns* (ONVIF
  URIs) and an imported camera's own, before connecting: ``await guard.url(url)`` (the URL to
  open; for ``rtsp://`` the checked address), ``guard.client(...)`` (httpx, every connection
  and redirect checked), ``await guard.addresses(host, port)``. A refusal raises
  :class:`CameraDestinationRefused`; a probe returns :func:`refused_health` for it.

These calls block (they decode video): run them with ``await in_camera_worker(fn, *args)``,
which runs a module-level function in the hub's camera workers (``[cameras] workers``
streams at once, in worker processes when configured) so a thousand probes neither block the
event loop nor open more streams than the hub allows. Arguments and results cross to a worker
process: pass the functions of this module and plain values.
"""

from __future__ import annotations

from ..cameras.destinations import (
    CameraDestinationRefused,
    CameraGuard,
    camera_guard,
    refused_health,
)
from ..cameras.probe import (
    FRAMES_REASON_CODE,
    FrameStats,
    ProbeSettings,
    classify_frames,
    frame_stats,
    luma_thumbnail,
    probe_stream,
)
from ..cameras.snapshot import encode_jpeg, grab_snapshot
from ..cameras.workers import in_camera_worker

__all__ = [
    "FRAMES_REASON_CODE",
    "CameraDestinationRefused",
    "CameraGuard",
    "FrameStats",
    "ProbeSettings",
    "camera_guard",
    "classify_frames",
    "encode_jpeg",
    "frame_stats",
    "grab_snapshot",
    "in_camera_worker",
    "luma_thumbnail",
    "probe_stream",
    "refused_health",
]
