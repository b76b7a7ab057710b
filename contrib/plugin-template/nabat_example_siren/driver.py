"""``example_siren.controller``: a siren controller speaking a line protocol over TCP.

The device is fictional but shaped like real municipal siren controllers (С-40 class sirens
behind a small controller board with a mains supply, a backup battery and a tamper switch).
Copy this module when you write a driver for a real one.

The protocol
============

One TCP connection carries one *session*: the client sends commands, one per line, and the
controller answers each with exactly one line. Lines are UTF-8, end with ``\\n`` (a ``\\r``
before it is ignored) and are at most 1024 bytes. Replies start with ``OK`` or ``ERR``::

    AUTH <password>                       -> OK | ERR auth
    STATUS                                -> OK state=idle mains=1 battery=97 tamper=0 alert=-
    ACTIVATE <alert-id> <signal-s> <n>    -> OK ACTIVE | ERR <reason>
    CANCEL <alert-id>                     -> OK IDLE | ERR <reason>
    TEST 0|1                              -> OK PASS | ERR <reason>

* ``AUTH`` is required first when the controller has a password; any other command before it
  (or after a wrong one) is answered ``ERR auth``. Without a password ``AUTH`` is not sent.
* ``ACTIVATE`` sounds «Внимание всем!» for ``<signal-s>`` seconds (0–180; 0 = no siren), then
  plays the controller's pre-recorded voice message ``<n>`` times. ``<alert-id>`` is the CAP
  identifier (printable ASCII, no spaces). **The controller dedupes**: it remembers the alert
  ids it has accepted and answers a repeated ``ACTIVATE`` of one of them ``OK ACTIVE`` without
  sounding again.
* ``CANCEL`` silences the controller if ``<alert-id>`` is sounding; ``OK IDLE`` either way.
* ``STATUS`` is silent. Fields are ``key=value``: ``state`` (``idle``/``active``/``fault``),
  ``mains`` and ``tamper`` (``0``/``1``), ``battery`` (percent), ``alert`` (the sounding alert
  id or ``-``). Unknown keys are ignored, so newer firmware stays compatible.
* ``TEST 0`` runs the silent self-test (amplifier, speaker lines, battery); ``TEST 1`` also
  sounds a short tone. ``ERR <reason>`` means the test did not pass (or could not run).

How this driver uses it
=======================

* **A connection per command** (connect, ``AUTH``, one command, close). Siren controllers drop
  idle sessions and firewalls forget idle flows silently, so a kept connection needs keepalive
  and reconnect logic; and a call cancelled half-way through a reply would leave a kept stream
  out of step. At one status poll a minute and a few activations a day, the extra handshake
  costs nothing. Commands are serialized with a lock (the controller serves one client at a
  time), and waiting for the lock counts against the timeout.
* **Bounded time.** Every call — lock, connect, ``AUTH``, command, reply — runs under one
  ``asyncio.timeout(settings.timeout)``.
* **Errors.** Connection refused/reset/closed and timeouts raise :class:`TransientError`
  (instance ``retrying``); ``ERR auth`` raises :class:`AuthError` (``needs_auth``); a
  malformed reply raises :class:`DriverError`. For ``activate`` and ``cancel`` a controller
  that cannot be reached is not an exception but an :class:`ActivationResult` with outcome
  ``unreachable``, and a refusal (``ERR <reason>``) is outcome ``failed`` with the reason;
  ``ERR auth`` still raises :class:`AuthError`, because an operator must act.
* **Idempotent activation, at two levels.** The driver remembers the result of each
  *confirmed* activation (``OK ACTIVE``) and returns it for a repeated ``activate`` of the same
  ``Alert.identifier`` without sending anything (after ``cancel`` it returns the cancellation).
  An activation that got no answer (``unreachable``) or was refused (``failed``) is not
  remembered, so a retry sends ``ACTIVATE`` again — safe, because the controller dedupes by
  alert id too. The driver's memory is per driver object (lost on a restart); the
  controller's covers that gap.
* **No secrets in messages.** The password only ever goes to the socket; replies quoted in
  error messages are shortened and have the password masked.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import msgspec
from nabat.interfaces import (
    ActivationOutcome,
    ActivationResult,
    Alert,
    AlertDevice,
    AuthError,
    ConfigError,
    DeviceState,
    DeviceStatus,
    DriverContext,
    DriverError,
    Secret,
    SelfTestResult,
    Signal,
    TransientError,
    WarningMessage,
)

__all__ = ["ControllerRefused", "ControllerSettings", "ExampleSirenController", "parse_status"]

MAX_LINE = 1024
_ALERT_ID = re.compile(r"^[!-~]{1,128}$")  # printable ASCII, no spaces: one protocol token
_REMEMBERED = 1024  # confirmed activations kept for deduplication
T = TypeVar("T")


class ControllerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """``[instances.<id>.settings]`` of an ``example_siren.controller``."""

    host: Annotated[str, msgspec.Meta(min_length=1)]
    """Controller address (name or IP)."""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 4001
    password: Secret | None = None
    """``{ env = "NAME" }`` or ``{ file = "PATH" }``; omit for a controller without one."""
    timeout: Annotated[float, msgspec.Meta(gt=0, le=120)] = 5.0
    """Seconds for one whole call: connect, authenticate, command, reply. Keep it below the
    instance's ``timeout`` (the hub's outer limit)."""


class ControllerRefused(DriverError):
    """The controller answered ``ERR <reason>`` (other than ``ERR auth``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"controller refused: {reason}" if reason else "controller refused")
        self.reason = reason


def _now() -> datetime:
    return datetime.now(UTC)


_STATES = {"idle": DeviceState.IDLE, "active": DeviceState.ACTIVE, "fault": DeviceState.FAULT}


def _flag(value: str | None, key: str) -> bool | None:
    if value is None:
        return None
    if value in ("0", "1"):
        return value == "1"
    raise DriverError(f"malformed STATUS reply: {key}={value[:16]!r} is not 0 or 1")


def parse_status(reply: str, checked_at: datetime | None = None) -> DeviceStatus:
    """Turn the text after ``OK`` of a ``STATUS`` reply into a :class:`DeviceStatus`.

    ``state=idle mains=1 battery=97 tamper=0 alert=-``; only ``state`` is required, unknown
    keys are ignored. Raises :class:`DriverError` for a reply that cannot be understood.
    """
    fields: dict[str, str] = {}
    for token in reply.split():
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise DriverError(f"malformed STATUS reply: {token[:32]!r} is not key=value")
        fields[key] = value
    raw_state = fields.get("state")
    if raw_state is None:
        raise DriverError("malformed STATUS reply: no state")
    state = _STATES.get(raw_state)
    if state is None:
        raise DriverError(f"malformed STATUS reply: unknown state {raw_state[:16]!r}")
    battery: float | None = None
    if "battery" in fields:
        try:
            battery = float(fields["battery"])
        except ValueError:
            raise DriverError(
                f"malformed STATUS reply: battery={fields['battery'][:16]!r} is not a number"
            ) from None
        if not 0 <= battery <= 100:
            raise DriverError(f"malformed STATUS reply: battery={battery:g} is not 0-100")
    mains_ok = _flag(fields.get("mains"), "mains")
    tamper = _flag(fields.get("tamper"), "tamper")
    alert = fields.get("alert")
    problems = []
    if mains_ok is False:
        problems.append("on battery: mains power lost")
    if tamper:
        problems.append("tamper switch open")
    return DeviceStatus(
        state=state,
        checked_at=checked_at or _now(),
        mains_ok=mains_ok,
        battery_pct=battery,
        tamper=tamper,
        active_alert=None if alert in (None, "", "-") else alert,
        detail="; ".join(problems),
    )


class ExampleSirenController(AlertDevice):
    """One siren controller reached over TCP (see the module docstring for the protocol)."""

    kind = "example_siren.controller"
    Settings = ControllerSettings

    def __init__(self, context: DriverContext, settings: ControllerSettings) -> None:
        super().__init__(context, settings)
        self.settings: ControllerSettings = settings
        self._lock = asyncio.Lock()
        self._results: OrderedDict[str, ActivationResult] = OrderedDict()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the settings, then reach the controller, log in and read its status: wrong
        password → AuthError (``needs_auth``), unreachable → TransientError (``retrying``)."""
        password = self._password()
        if password is not None and (not password or any(c in password for c in "\r\n")):
            raise ConfigError("the controller password must be non-empty and on one line")
        status = await self.status()
        self.context.log.info(
            "example_siren.connected",
            host=self.settings.host,
            port=self.settings.port,
            state=status.state.value,
        )

    async def stop(self) -> None:
        """Nothing to release: every command uses its own connection."""

    # -- AlertDevice -----------------------------------------------------------------------
    async def activate(self, alert: Alert, message: WarningMessage) -> ActivationResult:
        identifier = alert.identifier
        if not _ALERT_ID.match(identifier):
            return self._result(
                identifier,
                ActivationOutcome.FAILED,
                "the alert identifier is not a printable ASCII token (at most 128 characters)"
                " and cannot be sent to this controller",
            )
        seconds = 0 if message.signal is Signal.NONE else message.signal_seconds
        command = f"ACTIVATE {identifier} {seconds} {message.repeat}"

        async def deduped() -> ActivationResult:
            # Checked under the lock, so two concurrent activations of one alert send once.
            known = self._results.get(identifier)
            if known is not None:
                return known
            reply = await self._session(command)
            if reply.split()[:1] != ["ACTIVE"]:
                raise DriverError(f"unexpected reply to ACTIVATE: {self._quote(reply)}")
            detail = f"{reply}: signal {seconds} s, message x{message.repeat}"
            result = self._result(identifier, ActivationOutcome.ACTIVATED, detail)
            self._remember(result)
            return result

        return await self._as_result(identifier, deduped)

    async def cancel(self, alert_identifier: str) -> ActivationResult:
        if not _ALERT_ID.match(alert_identifier):
            return self._result(
                alert_identifier, ActivationOutcome.FAILED, "not a valid alert identifier"
            )

        async def cancelled() -> ActivationResult:
            reply = await self._session(f"CANCEL {alert_identifier}")
            result = self._result(alert_identifier, ActivationOutcome.CANCELLED, reply)
            if alert_identifier in self._results:
                self._remember(result)  # a late retry of the activation must not re-sound
            return result

        return await self._as_result(alert_identifier, cancelled)

    async def status(self) -> DeviceStatus:
        return parse_status(await self._command("STATUS"))

    async def self_test(self, audible: bool = False) -> SelfTestResult:
        try:
            reply = await self._command(f"TEST {int(audible)}")
        except ControllerRefused as exc:
            return SelfTestResult(passed=False, audible=audible, at=_now(), detail=exc.reason)
        passed = reply.split()[:1] == ["PASS"]
        return SelfTestResult(passed=passed, audible=audible, at=_now(), detail=reply)

    # -- the protocol ----------------------------------------------------------------------
    def _password(self) -> str | None:
        return self.settings.password.reveal() if self.settings.password is not None else None

    def _quote(self, text: str) -> str:
        """A controller's words, safe to show: shortened, the password masked."""
        password = self._password()
        if password:
            text = text.replace(password, "***")
        return repr(text[:80] + ("…" if len(text) > 80 else ""))

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    async def _command(self, command: str) -> str:
        """Run one command in its own session; return the text after ``OK``."""
        return await self._bounded(lambda: self._session(command))

    async def _bounded(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run ``body`` under the lock and the timeout; transport trouble → TransientError."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                async with self._lock:
                    return await body()
        except TimeoutError:
            raise TransientError(
                f"controller {self._where} did not answer within {self.settings.timeout:g} s"
            ) from None
        except ConnectionRefusedError:
            raise TransientError(f"controller {self._where} refused the connection") from None
        except OSError as exc:
            # Connection reset, no route, DNS failure…: the OS's words carry no secret.
            reason = exc.strerror or type(exc).__name__
            raise TransientError(f"controller {self._where} unreachable: {reason}") from None

    async def _as_result(
        self, identifier: str, body: Callable[[], Awaitable[ActivationResult]]
    ) -> ActivationResult:
        """Run an activate/cancel ``body``: an unreachable or silent controller becomes
        outcome ``unreachable``, a refusal ``failed``; AuthError and DriverError propagate."""
        try:
            return await self._bounded(body)
        except ControllerRefused as exc:
            return self._result(identifier, ActivationOutcome.FAILED, exc.reason)
        except TransientError as exc:
            return self._result(identifier, ActivationOutcome.UNREACHABLE, str(exc))

    async def _session(self, command: str) -> str:
        reader, writer = await asyncio.open_connection(
            self.settings.host, self.settings.port, limit=MAX_LINE
        )
        try:
            password = self._password()
            if password is not None:
                await self._send(writer, f"AUTH {password}")
                await self._reply(reader, "AUTH")
            await self._send(writer, command)
            return await self._reply(reader, command.split()[0])
        finally:
            # Closing the transport is synchronous; not awaiting wait_closed() keeps a
            # cancelled call from blocking here (the peer sees EOF either way).
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, line: str) -> None:
        writer.write(line.encode("utf-8") + b"\n")
        await writer.drain()

    async def _reply(self, reader: asyncio.StreamReader, verb: str) -> str:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise TransientError(
                f"controller {self._where} closed the connection before answering {verb}"
            ) from None
        except asyncio.LimitOverrunError:
            raise DriverError(
                f"controller {self._where} sent a reply longer than {MAX_LINE} bytes to {verb}"
            ) from None
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n").strip()
        head, _, rest = line.partition(" ")
        if head == "OK":
            return rest.strip()
        if head == "ERR":
            reason = rest.strip()
            if reason == "auth" or reason.startswith("auth "):
                if self.settings.password is None:
                    raise AuthError(
                        f"controller {self._where} requires a password and none is configured"
                    )
                raise AuthError(f"controller {self._where} rejected the password ({verb})")
            password = self._password()
            if password:
                reason = reason.replace(password, "***")
            raise ControllerRefused(reason[:200])
        raise DriverError(f"unexpected reply to {verb}: {self._quote(line)}")

    # -- results ---------------------------------------------------------------------------
    @staticmethod
    def _result(identifier: str, outcome: ActivationOutcome, detail: str) -> ActivationResult:
        return ActivationResult(
            alert_identifier=identifier, outcome=outcome, at=_now(), detail=detail
        )

    def _remember(self, result: ActivationResult) -> None:
        self._results[result.alert_identifier] = result
        self._results.move_to_end(result.alert_identifier)
        while len(self._results) > _REMEMBERED:
            self._results.popitem(last=False)
