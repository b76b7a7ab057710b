"""Driver interfaces: what cameras, warning devices, notifiers and connectors implement.

This package is the plugins' view of the core. A plugin imports only the modules named in
:data:`PUBLIC_MODULES` — ``nabat.events``, ``nabat.hookspecs``, ``nabat.testing`` and this
package with its submodules — and never the core's internals, so they can change behind it
(``tests/core/test_plugin_surface.py`` holds first-party plugins to that).

Beside the driver interfaces and their types, it offers what drivers share:

* :func:`uuid7` (a time-ordered id), :func:`mask_url` (a URL's password as ``***``) and
  :func:`mask_urls` (every URL in a text cut to scheme and host, for operators' messages);
* :mod:`nabat.interfaces.video` — probe a stream, grab a snapshot, classify frames, in the
  hub's camera workers;
* :mod:`nabat.interfaces.webhooks` — sign, verify and send Standard Webhooks;
* :mod:`nabat.interfaces.cap` — read and write CAP 1.2 XML.
"""

from ..config.secrets import Secret
from ..ids import uuid7
from ..masking import mask_url, mask_urls
from .alerting import (
    MUNICIPALITY_GEOCODE,
    ActivationMemory,
    ActivationOutcome,
    ActivationResult,
    Alert,
    AlertDevice,
    Area,
    Category,
    Certainty,
    Circle,
    DeviceState,
    DeviceStatus,
    Geocode,
    Info,
    MsgType,
    Parameter,
    Resource,
    ResponseType,
    Scope,
    SelfTestResult,
    Signal,
    Status,
    Urgency,
    WarningMessage,
)
from .alerting import Severity as CapSeverity
from .camera import (
    AbsoluteMove,
    Camera,
    CameraEvent,
    CameraHealth,
    CameraInfo,
    ContinuousMove,
    GotoHome,
    GotoPreset,
    HealthState,
    MediaProfile,
    PtzCommand,
    PtzPreset,
    RelativeMove,
    SetPreset,
    Snapshot,
    Stop,
    StreamUri,
)
from .driver import Driver, DriverContext, Location, NoSettings
from .errors import AuthError, ConfigError, DriverError, NotSupported, TransientError
from .hub import HubAPI, Job, Listener, Progress
from .incident import (
    MAX_VICTIMS,
    SERVICES,
    GeoPoint,
    Incident,
    IncidentChange,
    IncidentRecord,
    Incidents,
    IncidentStatus,
    LinkedCamera,
    incident_of,
)
from .messaging import Connector, DeliveryResult, DeliveryStatus, Notification, Notifier
from .payloads import CameraHealthChange, DeviceStatusChange, UnitKind, UnitState, UnitStatus

__all__ = [
    "MAX_VICTIMS",
    "MUNICIPALITY_GEOCODE",
    "PUBLIC_MODULES",
    "SERVICES",
    "AbsoluteMove",
    "ActivationMemory",
    "ActivationOutcome",
    "ActivationResult",
    "Alert",
    "AlertDevice",
    "Area",
    "AuthError",
    "Camera",
    "CameraEvent",
    "CameraHealth",
    "CameraHealthChange",
    "CameraInfo",
    "CapSeverity",
    "Category",
    "Certainty",
    "Circle",
    "ConfigError",
    "Connector",
    "ContinuousMove",
    "DeliveryResult",
    "DeliveryStatus",
    "DeviceState",
    "DeviceStatus",
    "DeviceStatusChange",
    "Driver",
    "DriverContext",
    "DriverError",
    "GeoPoint",
    "Geocode",
    "GotoHome",
    "GotoPreset",
    "HealthState",
    "HubAPI",
    "Incident",
    "IncidentChange",
    "IncidentRecord",
    "IncidentStatus",
    "Incidents",
    "Info",
    "Job",
    "LinkedCamera",
    "Listener",
    "Location",
    "MediaProfile",
    "MsgType",
    "NoSettings",
    "NotSupported",
    "Notification",
    "Notifier",
    "Parameter",
    "Progress",
    "PtzCommand",
    "PtzPreset",
    "RelativeMove",
    "Resource",
    "ResponseType",
    "Scope",
    "Secret",
    "SelfTestResult",
    "SetPreset",
    "Signal",
    "Snapshot",
    "Status",
    "Stop",
    "StreamUri",
    "TransientError",
    "UnitKind",
    "UnitState",
    "UnitStatus",
    "Urgency",
    "WarningMessage",
    "incident_of",
    "mask_url",
    "mask_urls",
    "uuid7",
]

INTERFACES = (Camera, AlertDevice, Notifier, Connector)

PUBLIC_MODULES = ("nabat.events", "nabat.hookspecs", "nabat.interfaces", "nabat.testing")
"""The core modules a plugin may import, with their submodules (``nabat.interfaces.video``…);
everything else in ``nabat`` is internal. ``docs/plugins.md`` lists the same, and a test
fails when a first-party plugin imports anything else."""
