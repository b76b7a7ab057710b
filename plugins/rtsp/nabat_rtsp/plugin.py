"""The ``rtsp`` plugin: drivers for cameras that offer a stream or a JPEG URL and nothing more."""

from __future__ import annotations

from nabat.hookspecs import hookimpl

from .http_camera import HttpSnapshotCamera
from .rtsp_camera import RtspCamera


@hookimpl
def register_drivers() -> list[type]:
    return [RtspCamera, HttpSnapshotCamera]
