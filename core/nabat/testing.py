"""Test helpers for plugin authors (and the core's own tests).

Start a real hub from a ``plugins.toml`` text, record the events it publishes, and wait for
the ones you expect — with a deadline, never a bare sleep::

    async def test_my_siren_activates(tmp_path):
        async with run_hub(CONFIG, tmp_path) as hub:
            events = record(hub, "hub.unit.>")
            await events.wait_for("hub.unit.running", subject="siren-1")
            siren = hub.instance("siren-1")
            result = await siren.activate(exercise_alert("anapa"), WarningMessage(text="…"))
            ...

The hub finds your plugin the way production does — through its ``nabat`` entry point — so
install your distribution in the test environment (``uv sync`` / ``pip install -e .``). Pass
``plugins={"name": obj}`` to add a plugin object without installing it.

Use the hub these helpers give you through :class:`nabat.interfaces.HubAPI` (``publish``,
``subscribe``, ``instance``, ``instances``, ``state_of``, ``status_of``…) and the HTTP API;
its other attributes are the core's internals and change without notice. The helpers:

* :func:`run_hub` — a started hub for an ``async with`` block; :func:`load_config_text` —
  a configuration from text, checked as ``nabat run`` checks it;
* :func:`record` / :class:`EventRecorder` — collect events, ``await wait_for(type,
  subject=…)``, ``wait_for_count``; :func:`wait_for_state` — wait for a plugin's or an
  instance's state, even one reached before you asked; :func:`eventually` — re-check a
  condition no event announces;
* :func:`exercise_alert` — an ``Exercise`` CAP alert for one municipality, for
  ``AlertDevice.activate``;
* :func:`run_api` — the hub's HTTP API (your plugin's routes included) on a free port;
  :func:`run_cli` — ``nabat`` as a real process; :func:`free_port` and
  :func:`connect_when_ready` — for fake devices and receivers.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from .config import LoadedConfig, load_config
from .events import Event
from .hub import Hub
from .interfaces import (
    MUNICIPALITY_GEOCODE,
    Alert,
    Area,
    CapSeverity,
    Certainty,
    Geocode,
    HubAPI,
    Info,
    MsgType,
    Status,
    Urgency,
    uuid7,
)
from .subjects import matches

__all__ = [
    "EventRecorder",
    "connect_when_ready",
    "eventually",
    "exercise_alert",
    "free_port",
    "load_config_text",
    "record",
    "run_api",
    "run_cli",
    "run_hub",
    "wait_for_state",
]


def exercise_alert(
    municipality: str, identifier: str | None = None, event: str = "Наводнение"
) -> Alert:
    """An ``Exercise`` alert (CAP ``status``) for one municipality, sent now: hand it to your
    driver (``await hub.instance(id).activate(alert, WarningMessage(...))``), or issue it to
    every device in the area as CAP XML (``nabat.interfaces.cap.to_cap(alert)``) with
    ``POST /api/v1/alerts/cap`` through :func:`run_api`."""
    return Alert(
        identifier=identifier or f"exercise-{uuid7()}",
        sender="test@nabat",
        sent=datetime.now(UTC).replace(microsecond=0),
        status=Status.EXERCISE,
        msg_type=MsgType.ALERT,
        info=[
            Info(
                event=event,
                urgency=Urgency.IMMEDIATE,
                severity=CapSeverity.SEVERE,
                certainty=Certainty.OBSERVED,
                area=[
                    Area(
                        area_desc=municipality,
                        geocode=[Geocode(value_name=MUNICIPALITY_GEOCODE, value=municipality)],
                    )
                ],
            )
        ],
    )


def load_config_text(text: str, directory: Path, name: str = "plugins.toml") -> LoadedConfig:
    """Write ``text`` (dedented) to ``directory/name`` and load it as the hub would."""
    path = Path(directory) / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path)


@asynccontextmanager
async def run_hub(
    config: str | LoadedConfig,
    directory: Path | None = None,
    *,
    plugins: dict[str, object] | None = None,
    discover_installed: bool = True,
    wait: bool = True,
) -> AsyncIterator[Hub]:
    """Start a hub for the duration of the ``async with`` block, then stop it cleanly."""
    if isinstance(config, str):
        if directory is None:
            raise ValueError("run_hub needs a directory for a configuration given as text")
        config = load_config_text(config, directory)
    hub = Hub(config, plugins=plugins, discover_installed=discover_installed)
    await hub.start(wait=wait)
    try:
        yield hub
    finally:
        await hub.stop()


@asynccontextmanager
async def run_api(hub: Hub, listen: str = "127.0.0.1:0") -> AsyncIterator[Any]:
    """Serve ``hub``'s HTTP API (your plugin's routes included) on a free loopback port for
    the block. Yields the server: ``.url`` is its base URL, and ``token, _ = await
    server.state.tokens.create(name, ["events:write"])`` issues a bearer token with scopes."""
    from .api.server import ApiServer

    server = ApiServer(hub, listen=listen)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class EventRecorder:
    """Keeps every event matching its patterns, and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def _on_event(self, event: Event) -> None:
        self.events.append(event)
        async with self._changed:
            self._changed.notify_all()

    def of_type(self, pattern: str) -> list[Event]:
        return [e for e in self.events if matches(pattern, e.type)]

    def _find(
        self, pattern: str, subject: str | None, where: Callable[[Event], bool] | None
    ) -> Event | None:
        for event in self.events:
            if not matches(pattern, event.type):
                continue
            if subject is not None and event.subject != subject:
                continue
            if where is not None and not where(event):
                continue
            return event
        return None

    async def wait_for(
        self,
        pattern: str,
        *,
        subject: str | None = None,
        where: Callable[[Event], bool] | None = None,
        timeout: float = 10.0,
    ) -> Event:
        """Return the first recorded event matching; wait up to ``timeout`` for it to arrive.

        Raises AssertionError naming what was expected and what arrived instead.
        """
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while (found := self._find(pattern, subject, where)) is None:
                        await self._changed.wait()
                    return found
        except TimeoutError:
            seen = ", ".join(_describe(e) for e in self.events[-20:]) or "nothing"
            raise AssertionError(
                f"no event {pattern!r} (subject={subject!r}) within {timeout:g}s; last seen: {seen}"
            ) from None

    async def wait_for_count(
        self, pattern: str, count: int, *, timeout: float = 10.0
    ) -> list[Event]:
        """Wait until at least ``count`` events matching ``pattern`` have been recorded."""
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: len(self.of_type(pattern)) >= count)
                    return self.of_type(pattern)
        except TimeoutError:
            got = len(self.of_type(pattern))
            raise AssertionError(
                f"expected {count} events {pattern!r} within {timeout:g}s, got {got}"
            ) from None


async def wait_for_state(hub: HubAPI, name: str, *states: str, timeout: float = 10.0) -> str:
    """Wait until plugin or instance ``name`` is in one of ``states``; return the state.

    Unlike waiting for a ``hub.unit.*`` event, this also sees a state reached before the
    call, and a state passed through since it (each change is a ``hub.unit.<state>`` event).
    Raises AssertionError with the current state and reason on timeout.
    """
    wanted = {getattr(state, "value", state) for state in states}
    recorder = EventRecorder()
    subscription = hub.subscribe(
        "hub.unit.>", recorder._on_event, name=f"test-wait-for-state-{name}", queue_size=100_000
    )

    def reached() -> str | None:
        for event in recorder.events:
            state = event.type.removeprefix("hub.unit.")
            if event.subject == name and state in wanted:
                return state
        try:
            state = hub.state_of(name)
        except KeyError:
            return None
        return state if state in wanted else None

    try:
        async with asyncio.timeout(timeout):
            async with recorder._changed:
                while (state := reached()) is None:
                    await recorder._changed.wait()
                return state
    except TimeoutError:
        try:
            status = hub.status_of(name)
            now = f"{status.state} ({status.reason})" if status.reason else status.state
        except KeyError:
            now = "unknown"
        raise AssertionError(
            f"{name} did not reach {'/'.join(sorted(wanted))} within {timeout:g}s; it is {now}"
        ) from None
    finally:
        subscription.unsubscribe()


async def eventually(
    check: Callable[[], Any], *, timeout: float = 10.0, what: str = "the condition"
) -> Any:
    """Re-check ``check()`` (sync or async) until it returns something truthy; return that.

    For state another task or process writes (a database row, a counter) that no event
    announces. Raises AssertionError naming ``what`` after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        await asyncio.sleep(0.01)


async def audited(hub: HubAPI, action: str, actor: str) -> bool:
    """Whether the hub's audit log has an entry for ``action`` whose actor names ``actor``
    (a login, a token's name): for :func:`eventually`."""
    async for stored in hub.journal.all_records("audit"):
        entry = msgspec.json.decode(stored.body)
        if entry.get("action") == action and actor in entry.get("actor", ""):
            return True
    return False


def run_cli(
    *args: str, cwd: Path | str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``nabat ARGS`` as a real process in ``cwd`` (English messages); return what it did
    (``returncode``, ``stdout``, ``stderr``)."""
    return subprocess.run(
        [sys.executable, "-m", "nabat", *args],
        cwd=cwd,
        env={**os.environ, "NABAT_LANG": "en", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for a fake device or receiver)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def connect_when_ready(
    port: int, host: str = "127.0.0.1", *, timeout: float = 20.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a server that is still starting (a hub process, a device): retry refused
    connections until ``timeout``, then raise the last error."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


def _describe(event: Event) -> str:
    reason = getattr(event.data, "reason", "")
    return f"{event.type}({event.subject}{': ' + reason if reason else ''})"


def record(hub: HubAPI, *patterns: str, name: str = "test-recorder") -> EventRecorder:
    """Subscribe an :class:`EventRecorder` to ``patterns`` (default: everything)."""
    recorder = EventRecorder()
    hub.subscribe(list(patterns) or [">"], recorder._on_event, name=name, queue_size=100_000)
    return recorder
