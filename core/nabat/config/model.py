"""The shape of ``plugins.toml``. Every table forbids unknown keys."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "BusSettings",
    "Config",
    "DeliveryOptions",
    "HubSettings",
    "InstanceEntry",
    "PluginEntry",
    "StorageSettings",
]

Positive = Annotated[float, msgspec.Meta(gt=0)]
Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class _Table(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class BusSettings(_Table):
    """``[hub.bus]``: defaults for every bus subscription."""

    queue_size: Annotated[int, msgspec.Meta(ge=1)] = 1000
    overflow: Literal["wait", "drop_oldest"] = "wait"
    put_timeout: Positive = 5.0
    handler_timeout: Positive = 30.0


class HubSettings(_Table):
    """``[hub]``."""

    name: str = "nabat"
    region: str = "krasnodar-krai"
    """Region whose municipality slugs are valid (shipped CSV under ``nabat/regions``)."""
    language: Literal["ru", "en"] = "ru"
    data_dir: str = "data"
    """State directory, relative to the configuration file unless absolute."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "logfmt"] = "auto"
    startup_timeout: Positive = 30.0
    shutdown_timeout: Positive = 15.0
    retry_initial: Positive = 1.0
    """First retry delay (seconds) for a plugin or instance in ``retrying``; doubles each time."""
    retry_max: Positive = 300.0
    needs_auth_retry: Positive = 600.0
    """How often an instance in ``needs_auth`` tries again (a rotated secret file may fix it)."""
    bus: BusSettings = msgspec.field(default_factory=BusSettings)


class StorageSettings(_Table):
    """``[storage]``: where the journal lives."""

    url: Any = None
    """``sqlite:///path`` (relative paths are under ``data_dir``) or a PostgreSQL DSN
    (``postgresql://user@host/db``). A DSN with a password must be a secret reference:
    ``url = { env = "NABAT_DATABASE_URL" }``. Default: ``sqlite:///journal.sqlite3``."""
    schema: Slug = "nabat"
    """PostgreSQL schema holding Nabat's tables."""
    retention_days: Annotated[float, msgspec.Meta(gt=0)] | None = 90.0
    """Events older than this are deleted once a day; unset keeps everything."""
    lease_ttl: Positive = 15.0
    """Seconds a hub process holds a durable subscription without renewing it; after that,
    another process takes the subscription over (a dead process's claims are released)."""
    poll_interval: Positive = 1.0
    """Upper bound (seconds) on how long an event appended by another hub process waits before
    durable subscribers here notice it."""


class DeliveryOptions(_Table):
    """``[instances.<id>.delivery]``: how the hub delivers events to a connector."""

    order: Literal["ordered", "parallel"] = "ordered"
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 4
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] | None = 20
    max_age: Positive | None = 86_400.0
    backoff_initial: Positive = 1.0
    backoff_max: Positive = 300.0


class PluginEntry(_Table):
    """``[plugins.<name>]``."""

    enabled: bool = True
    settings: dict[str, Any] = {}


class InstanceEntry(_Table):
    """``[instances.<id>]``: one configured driver instance."""

    kind: str
    """Driver kind, ``"<plugin>.<thing>"``."""
    name: str | None = None
    municipality: Slug | None = None
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
    enabled: bool = True
    timeout: Positive = 15.0
    """Outer limit (seconds) the hub enforces on every call into this instance."""
    delivery: DeliveryOptions = msgspec.field(default_factory=DeliveryOptions)
    settings: dict[str, Any] = {}


class Config(_Table):
    """The whole file."""

    hub: HubSettings = msgspec.field(default_factory=HubSettings)
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    plugins: dict[str, PluginEntry] = {}
    instances: dict[str, InstanceEntry] = {}
