"""Hook specifications: how a plugin plugs into the hub.

A plugin is a module (found through the ``nabat`` entry-point group) with functions marked
``@hookimpl`` whose names are the hooks below. Implement only the hooks you need; an
implementation may accept fewer arguments than the spec names.

The hub calls each plugin's implementation on its own — never as one chained call — with a
timeout, so a plugin that raises or hangs is marked ``failed`` and the others carry on.
Registration hooks are called once, when the plugin is loaded, and must not do I/O.

Every hook here is documented in ``docs/plugins.md``; a test fails when one is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    import msgspec

    from .interfaces import Driver, HubAPI, Job, Listener

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "nabat"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- registration --------------------------------------------------------------------------
@hookspec
def plugin_settings() -> type[msgspec.Struct] | None:
    """Return the msgspec Struct that validates this plugin's ``[plugins.<name>.settings]``.

    The validated value is passed to :func:`startup` as ``settings``. A plugin without
    settings does not implement this hook; then any settings given for it are an error.
    """


@hookspec
def register_drivers() -> Sequence[type[Driver]]:
    """Return the driver classes this plugin provides.

    Each subclasses one of ``Camera``, ``AlertDevice``, ``Notifier`` or ``Connector`` and
    declares a unique ``kind`` (``"<plugin>.<thing>"``) and a ``Settings`` Struct. Instances
    are created from ``[instances.<id>]`` tables whose ``kind`` names the class.
    """


@hookspec
def register_event_types() -> Mapping[str, type]:
    """Return payload types keyed by CloudEvents ``type`` or type pattern.

    ``{"camera.health.*": CameraHealthChanged}`` makes ``data`` of matching events decode into
    that Struct when they are read back from the journal (and, once the HTTP API exists, when
    they arrive over HTTP). Two plugins registering the same key with different types is an
    error.
    """


@hookspec
def register_listeners(hub: HubAPI, settings: Any) -> Sequence[Listener]:
    """Return bus listeners to subscribe once the plugin has started (``settings`` as for
    :func:`startup`).

    Each gets its own bounded queue; an exception or a hang in one listener is logged and
    counted and never reaches the publisher or other listeners.
    """


@hookspec
def register_jobs(hub: HubAPI, settings: Any) -> Sequence[Job]:
    """Return scheduled jobs (interval or cron) to run while the plugin is running
    (``settings`` as for :func:`startup`).

    Today every hub process runs its own jobs; running each job once across several hub
    processes on one database is planned (a PostgreSQL advisory lock) and not yet built.
    """


@hookspec
def register_routes(hub: HubAPI, settings: Any) -> Sequence[Any]:
    """Return Litestar route handlers to be mounted under ``/plugins/<name>/`` (``settings``
    as for :func:`startup`), behind the hub's authentication.

    Called once when the HTTP API starts, for plugins that are not ``failed``. A route needs a
    bearer token with ``events:read`` (GET) or ``events:write`` (other methods) unless its
    ``opt`` names another ``scope``; with ``opt={"webhook_secrets": ...}`` (``whsec_`` secrets,
    or a callable returning them) it instead accepts requests signed per Standard Webhooks.
    Plugin routes are never public. If this hook raises, the plugin's routes are left out and
    logged; the rest of the API is served. See ``docs/api.md``.
    """


@hookspec
def register_cli(cli: click.Group) -> None:
    """Add sub-commands to the ``nabat`` command line (``cli.add_command(...)``)."""


# -- lifecycle -----------------------------------------------------------------------------
@hookspec
async def startup(hub: HubAPI, settings: Any) -> None:
    """Start the plugin (open shared connections, load reference data).

    Called once before the plugin's driver instances start, with its validated settings.
    Raise ``TransientError`` to be retried with backoff, ``AuthError`` for rejected
    credentials (state ``needs_auth``); anything else marks the plugin ``failed``. Must finish
    within the start-up timeout (``[hub] startup_timeout``).
    """


@hookspec
async def shutdown(hub: HubAPI) -> None:
    """Release what :func:`startup` acquired. Called once on hub shutdown; must not raise."""


# -- observers -----------------------------------------------------------------------------
@hookspec
def plugin_error(hub: HubAPI, plugin: str, error: BaseException, context: str) -> None:
    """Observe a fault contained by the hub: ``plugin`` failed in ``context`` (``load``,
    ``settings``, ``startup``, ``register``, ``driver:<id>``, ``job:<id>``). For alerting
    integrations; must not raise."""
