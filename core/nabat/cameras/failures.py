"""What a camera's failure means to whoever asked: one mapping from a driver's exception to an
HTTP status, a detail naming the camera and a problem kind — for the hub's own API and for a
region's call answered by this site, so both say the same thing about the same fault."""

from __future__ import annotations

from typing import NamedTuple

from ..interfaces import AuthError, NotSupported, TransientError
from .destinations import CameraDestinationRefused


class CameraFailure(NamedTuple):
    status: int
    detail: str
    kind: str


def camera_failure(camera_id: str, exc: BaseException) -> CameraFailure:
    """The answer for ``exc`` raised by camera ``camera_id``: 409 for what the camera cannot
    do, 504 when it did not answer in time, 502 for anything else it did wrong (kind
    ``destination-refused`` when it points where the hub does not connect)."""
    if isinstance(exc, NotSupported):
        return CameraFailure(409, f"camera {camera_id}: {exc}", "not-supported")
    if isinstance(exc, AuthError):
        return CameraFailure(502, f"camera {camera_id} rejected its credentials", "camera-auth")
    if isinstance(exc, TimeoutError):
        return CameraFailure(504, f"camera {camera_id} did not answer in time", "camera-timeout")
    if isinstance(exc, CameraDestinationRefused):
        # The hub would not connect where the camera (or its row) points: the rule is named.
        return CameraFailure(502, f"camera {camera_id}: {exc}", "destination-refused")
    detail = str(exc) or type(exc).__name__
    kind = "camera-error" if isinstance(exc, TransientError) else "camera-fault"
    return CameraFailure(502, f"camera {camera_id}: {detail}", kind)
