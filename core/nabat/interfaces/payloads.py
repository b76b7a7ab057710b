"""Payloads of the events the core itself publishes (registered by the core's built-ins)."""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from .alerting import DeviceState
from .camera import HealthState

__all__ = ["CameraHealthChange", "DeviceStatusChange", "UnitKind", "UnitState", "UnitStatus"]


class UnitState(enum.StrEnum):
    """Life-cycle state of a plugin or a driver instance (Home Assistant's config entries)."""

    STARTING = "starting"
    RUNNING = "running"
    RETRYING = "retrying"  # a transient error; retried with exponential backoff
    NEEDS_AUTH = "needs_auth"  # credentials rejected; retried slowly until fixed
    FAILED = "failed"  # will not work without an operator (bad config, import error, bug)
    STOPPED = "stopped"
    DISABLED = "disabled"  # installed but not enabled in plugins.toml


class UnitKind(enum.StrEnum):
    PLUGIN = "plugin"
    INSTANCE = "instance"


class UnitStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``hub.unit.<state>``: a plugin or instance changed state."""

    kind: UnitKind
    name: str
    state: UnitState
    since: datetime
    reason: str = ""
    plugin: str | None = None
    attempt: int = 0
    retry_in_s: float | None = None


class CameraHealthChange(msgspec.Struct, frozen=True, kw_only=True):
    """``camera.health.<state>``: a camera's health changed."""

    camera: str
    state: HealthState
    previous: HealthState | None
    checked_at: datetime
    reason: str = ""
    reason_code: str = ""
    """``reason`` as a stable code for consoles' catalogs (``CameraHealth.reason_code``)."""
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None


class DeviceStatusChange(msgspec.Struct, frozen=True, kw_only=True):
    """``siren.status.<state>``: a warning device's status changed."""

    device: str
    state: DeviceState
    previous: DeviceState | None
    checked_at: datetime
    detail: str = ""
    mains_ok: bool | None = None
    battery_pct: float | None = None
    tamper: bool | None = None
