"""Hook specifications: how a plugin plugs into the hub.

A plugin is a module (found through the ``nabat`` entry-point group) with functions marked
``@hookimpl`` whose names are the hooks below. Implement only the hooks you need; an
implementation may accept fewer arguments than the spec names (``def startup(hub):`` is fine).
Hooks may be plain functions or coroutines; plain functions run in a worker thread so that one
which blocks cannot freeze the hub.

The hub calls each plugin's implementation on its own — never as one chained call — with a
timeout, so a plugin that raises or hangs is contained (``failed``, ``retrying`` or
``needs_auth``) and the others carry on. Registration hooks are called once each and must not
do I/O.

These docstrings are the hooks' only documentation: the "Hooks" section of ``docs/plugins.md``
is generated from them (``uv run python tests/core/test_docs.py``), and that test fails when
the page differs.
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

    The validated value is passed as ``settings`` to :func:`startup`,
    :func:`register_listeners`, :func:`register_jobs` and :func:`register_routes`. Use
    ``forbid_unknown_fields=True`` so that typos are errors. A plugin without settings does not
    implement this hook; then any settings given for it are an error.
    """


@hookspec
def register_drivers() -> Sequence[type[Driver]]:
    """Return the driver classes this plugin provides.

    Each subclasses one of ``Camera``, ``AlertDevice``, ``Notifier`` or ``Connector`` and
    declares a unique ``kind`` (``"<plugin>.<thing>"``) and a ``Settings`` Struct.
    ``[instances.<id>]`` tables whose ``kind`` names the class become driver objects:
    ``Driver(context, settings)`` (``context`` is a ``DriverContext``), then ``await start()``,
    the interface methods, ``await stop()``. What every driver guarantees is in
    ``nabat.interfaces.driver`` (and under "Drivers" below).
    """


@hookspec
def register_event_types() -> Mapping[str, type]:
    """Return payload types keyed by CloudEvents ``type`` or type pattern.

    ``{"camera.health.*": CameraHealthChanged}`` makes ``data`` of matching events decode into
    that Struct when they are read back from the journal and when they are published over the
    HTTP API. Two plugins registering one key with different types fail the later one.
    """


@hookspec
def register_listeners(hub: HubAPI, settings: Any) -> Sequence[Listener]:
    """Return bus listeners to subscribe once the plugin is running (``settings`` as for
    :func:`startup`).

    ``Listener(patterns=["alert.>"], handler=fn, name="…", queue_size=…,
    overflow="wait"|"drop_oldest", handler_timeout=…)``. Each listener has its own bounded
    queue and worker: its exceptions are logged and counted and never reach the publisher or
    other listeners; a call past ``handler_timeout`` is cancelled; a full queue either makes
    the publisher wait (then drops, counted) or evicts the oldest (counted).
    """


@hookspec
def register_jobs(hub: HubAPI, settings: Any) -> Sequence[Job]:
    """Return scheduled jobs to run while the plugin is running (``settings`` as for
    :func:`startup`).

    ``Job(id="sweep", func=coro_fn, every=30, jitter=5)`` or ``Job(id="readiness", func=…,
    cron="43 10 * * 3")``. A run never overlaps the previous one; a run that raises or overruns
    ``timeout`` is logged and reported to :func:`plugin_error` observers, and the schedule
    carries on. With several hub processes sharing one journal (PostgreSQL) each scheduled run
    happens once: the processes claim its slot in the journal (a ``hub.job.claimed`` event only
    one of them can store) and the others skip it.
    A job whose every change is atomic in the journal may say ``shared=True``: it then
    runs in every process and writes no claim (a job every few seconds would otherwise
    fill the journal with them).
    """


@hookspec
def register_routes(hub: HubAPI, settings: Any) -> Sequence[Any]:
    """Return Litestar route handlers to be mounted under ``/plugins/<name>/`` (``settings``
    as for :func:`startup`), typically to receive agencies' webhooks.

    Called once when the HTTP API starts, for plugins that are not ``failed``. The routes are
    closed like the hub's own: a bearer token with ``events:read`` (GET) or ``events:write``
    (other methods) unless the handler's ``opt`` names another ``scope``. A receiver for signed
    webhooks declares its secrets instead (``opt={"webhook_secrets": ...}``: ``whsec_``
    secrets, or a callable returning them), and the hub verifies every request per Standard
    Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``, 5-minute tolerance,
    any of several secrets during rotation) before the handler runs; a bad or stale signature
    is 401 and logged without the body::

        @hookimpl
        def register_routes(hub, settings):
            @post("/cards", opt={"webhook_secrets": lambda: settings.secrets}, status_code=202)
            async def cards(request: Request) -> dict:
                card = msgspec.json.decode(await request.body())
                await hub.publish(Event(type="incident.created", source="urn:112:krd",
                                        id=request.headers["webhook-id"], data=card))
                return {"accepted": True}

            return [cards]

    Use the ``webhook-id`` as the event id: a sender's retry is then a duplicate the journal
    drops. Plugin routes are never public. If this hook raises, the plugin's routes are left
    out and logged; the rest of the API is served. In tests, ``nabat.testing.run_api(hub)``
    serves the API on a free port. See ``docs/api.md``.
    """


@hookspec
def register_cli(cli: click.Group) -> None:
    """Add sub-commands to the ``nabat`` command line (``cli.add_command(...)``).

    Called for enabled plugins when ``nabat`` starts; a failure prints a warning and leaves the
    core's commands working.
    """


# -- lifecycle -----------------------------------------------------------------------------
@hookspec
async def startup(hub: HubAPI, settings: Any) -> None:
    """Start the plugin: open shared connections, load reference data.

    Called once before the plugin's driver instances start, with its validated settings, under
    ``[hub] startup_timeout``. Raise ``TransientError`` to be retried with backoff,
    ``AuthError`` for rejected credentials (state ``needs_auth``); anything else marks the
    plugin ``failed``.
    """


@hookspec
async def shutdown(hub: HubAPI) -> None:
    """Release what :func:`startup` acquired.

    Called once on hub shutdown, after the plugin's drivers are stopped, under
    ``[hub] shutdown_timeout``. Must not raise.
    """


# -- observers -----------------------------------------------------------------------------
@hookspec
def plugin_error(hub: HubAPI, plugin: str, error: BaseException, context: str) -> None:
    """Observe a fault the hub contained: ``plugin`` failed in ``context`` (``load``,
    ``settings``, ``startup``, ``register``, ``driver:<id>``, ``job:<id>``).

    For integrations that alert on faults. Must not raise; a slow observer is cut off after
    5 s.
    """
