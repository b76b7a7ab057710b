"""Fixtures: a fake siren controller on a real socket, and a hub configuration for it.

The fake implements the controller's line protocol (see ``nabat_example_siren.driver``) on
127.0.0.1 with an ephemeral port, records every command it receives, and can be told to
refuse, hang or report faults. Tests wait for what they expect with deadlines, never sleeps.

With ``--import-mode=importlib`` test modules cannot import this file, so everything here is
reached through fixtures.
"""

from __future__ import annotations

import asyncio
import socket
import textwrap
from collections.abc import AsyncIterator, Callable

import pytest
from nabat.testing import EventRecorder

PASSWORD = "s3cret-Pa55"
PASSWORD_ENV = "EXAMPLE_SIREN_TEST_PASSWORD"


class FakeController:
    """A siren controller that speaks the protocol, on 127.0.0.1:<ephemeral port>."""

    def __init__(self, *, password: str | None = PASSWORD, port: int = 0) -> None:
        self.password = password
        self.port = port
        self.commands: list[str] = []
        """Every command line received (``AUTH`` ones included), in order."""
        self.hang: set[str] = set()
        """Verbs (``STATUS``, ``ACTIVATE``…) that are carried out but never answered: the
        worst case for a client, which cannot know whether the siren sounded."""
        self.replies: dict[str, str] = {}
        """Verb → the raw reply line to send instead (``ERR amplifier fault``, garbage…)."""
        self.state = "idle"
        self.mains = 1
        self.battery = 97
        self.tamper = 0
        self.alert: str | None = None
        self.accepted: set[str] = set()
        """Alert ids the controller has accepted (it dedupes ACTIVATE by them)."""
        self.soundings: list[str] = []
        """Alert ids in the order the siren actually started sounding."""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    async def start(self) -> FakeController:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def verbs(self, verb: str) -> list[str]:
        return [c for c in self.commands if c.split(" ", 1)[0] == verb]

    async def wait_for_command(self, verb: str, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` commands ``verb`` have arrived."""
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: len(self.verbs(verb)) >= count)
        except TimeoutError:
            raise AssertionError(
                f"controller did not receive {count} x {verb} within {timeout:g}s; "
                f"got {self.commands[-10:]}"
            ) from None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        authed = self.password is None
        try:
            while line := await reader.readline():
                command = line.decode().rstrip("\r\n")
                self.commands.append(command)
                async with self._changed:
                    self._changed.notify_all()
                verb, _, args = command.partition(" ")
                if verb == "AUTH":
                    authed = self.password is not None and args == self.password
                    reply = "OK" if authed else "ERR auth"
                elif not authed:
                    reply = "ERR auth"
                elif verb in self.replies:
                    reply = self.replies[verb]
                else:
                    reply = self._execute(verb, args.split())
                if verb in self.hang:
                    continue  # done, but the answer never comes
                writer.write(reply.encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    def _execute(self, verb: str, args: list[str]) -> str:
        if verb == "STATUS":
            return (
                f"OK state={self.state} mains={self.mains} battery={self.battery} "
                f"tamper={self.tamper} alert={self.alert or '-'}"
            )
        if verb == "ACTIVATE" and len(args) == 3:
            alert_id, seconds, repeat = args
            if not (seconds.isdigit() and int(seconds) <= 180 and repeat.isdigit()):
                return "ERR bad arguments"
            if alert_id not in self.accepted:  # the controller's own dedupe
                self.accepted.add(alert_id)
                self.soundings.append(alert_id)
                self.state, self.alert = "active", alert_id
            return "OK ACTIVE"
        if verb == "CANCEL" and len(args) == 1:
            if self.alert == args[0]:
                self.state, self.alert = "idle", None
            return "OK IDLE"
        if verb == "TEST" and args in (["0"], ["1"]):
            return "OK PASS"
        return "ERR unknown command"


@pytest.fixture
async def controller() -> AsyncIterator[FakeController]:
    """A running fake controller that wants :data:`PASSWORD`."""
    fake = await FakeController().start()
    yield fake
    await fake.close()


@pytest.fixture
async def make_controller() -> AsyncIterator[Callable[..., FakeController]]:
    """Build more controllers (``await make_controller(password=None).start()``)."""
    made: list[FakeController] = []

    def make(**kwargs: object) -> FakeController:
        fake = FakeController(**kwargs)  # type: ignore[arg-type]
        made.append(fake)
        return fake

    yield make
    for fake in made:
        await fake.close()


@pytest.fixture
def closed_port() -> int:
    """A local port on which nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def password_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Put the controller password where ``{ env = PASSWORD_ENV }`` finds it."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return PASSWORD


@pytest.fixture
def hub_config(password_env: str) -> Callable[..., str]:
    """``plugins.toml`` text: a fast-retrying hub, the plugin enabled, one controller.

    ``hub_config(port, settings=..., timeout=..., watch=..., extra=...)``: ``settings`` is the
    body of ``siren-1``'s inline settings table, ``timeout`` its outer limit; ``watch`` the
    body of ``[plugins.watch]`` (the built-in poller, off by default); ``extra`` is appended.
    """

    def build(
        port: int,
        *,
        settings: str | None = None,
        timeout: float = 10,
        watch: str = "enabled = false",
        extra: str = "",
    ) -> str:
        if settings is None:
            settings = (
                f'host = "127.0.0.1", port = {port}, timeout = 0.5, '
                f'password = {{ env = "{PASSWORD_ENV}" }}'
            )
        base = textwrap.dedent(f"""\
            [hub]
            data_dir = "data"
            log_level = "warning"
            retry_initial = 0.05
            retry_max = 0.2
            needs_auth_retry = 0.05
            startup_timeout = 5

            [plugins.example_siren]
            enabled = true

            [instances.siren-1]
            kind = "example_siren.controller"
            name = "С-40, Краснодар, Центральный округ"
            municipality = "krasnodar"
            lat = 45.0401
            lon = 38.9760
            timeout = {timeout}
            settings = {{ {settings} }}
            """)
        # The built-in poller sends STATUS on its own; tests that want it switch it on.
        watch_table = "\n[plugins.watch]\n" + textwrap.dedent(watch).strip() + "\n"
        return base + watch_table + textwrap.dedent(extra)

    return build


@pytest.fixture
def wait_state() -> Callable[..., object]:
    """``await wait_state(hub, events, "siren-1", "running")``: return once the unit is in
    that state (the next ``hub.unit.<state>`` event for it, or at once if it already is).

    ``events`` must be a recorder of ``hub.unit.>`` made *before* the call, so no change can
    slip between the check and the wait."""

    async def wait(
        hub: object, events: EventRecorder, name: str, state: str, timeout: float = 5.0
    ) -> None:
        if hub.state_of(name) == state:  # type: ignore[attr-defined]
            return
        await events.wait_for(f"hub.unit.{state}", subject=name, timeout=timeout)

    return wait
