"""Alerts: from a request (JSON or CAP XML) to every warning device in the area, tracked.

:mod:`.area` decides which devices an area covers, :mod:`.model` holds an alert's state and
each device's result, :mod:`.service` activates, confirms (two-person rule), cancels and
updates. The HTTP API is ``nabat.api.routes.alerts``.
"""

from .model import AlertPhase, AlertRecord, DeviceOutcome, DeviceResult, SiteResult, SiteState
from .service import (
    AlertConflict,
    AlertError,
    AlertExists,
    AlertForbidden,
    AlertNotFound,
    AlertService,
    NoDevices,
    RemoteSites,
)

__all__ = [
    "AlertConflict",
    "AlertError",
    "AlertExists",
    "AlertForbidden",
    "AlertNotFound",
    "AlertPhase",
    "AlertRecord",
    "AlertService",
    "DeviceOutcome",
    "DeviceResult",
    "NoDevices",
    "RemoteSites",
    "SiteResult",
    "SiteState",
]
