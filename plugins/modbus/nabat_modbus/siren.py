"""``modbus.siren``: a warning device behind Modbus TCP (the points in :mod:`.registers`).

One TCP connection per instance, opened at start and reopened by the next call after it fails.
Every call (activate, cancel, status, self-test) is one sequence of requests under a lock,
bounded by 90 % of the instance's timeout, so a status poll never interleaves with an
activation.

Activation writes the message, duration and repeat registers, then 1 to the activate coil,
then reads the state register until the device reports ``active`` (``activated``), a fault
(``failed`` with the fault) or ``confirm_s`` passes (``failed``). A device that cannot be
reached or does not answer is ``unreachable``, which the alert service retries; a Modbus
exception response is ``failed`` naming the point and the exception code (busy and gateway
codes are ``unreachable``). Activation is idempotent per alert identifier: an alert already
activated is answered from memory, and a retry after an attempt whose outcome was lost (the
coil written, no answer) first reads the state and does not write the coil again when the
device is already active.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from nabat.interfaces import (
    ActivationMemory,
    ActivationOutcome,
    ActivationResult,
    Alert,
    AlertDevice,
    ConfigError,
    DeviceState,
    DeviceStatus,
    DriverContext,
    DriverError,
    NotSupported,
    SelfTestResult,
    Signal,
    TransientError,
    WarningMessage,
)

from .link import DeviceRefused, Link, Unreachable
from .registers import Point, RegisterMap

__all__ = ["ModbusSiren", "ModbusSirenSettings"]

_STATES = {"idle": DeviceState.IDLE, "active": DeviceState.ACTIVE, "fault": DeviceState.FAULT}
_POLL_S = 0.05
"""How often the state (or the self-test result) is read while waiting for it to change."""


class ModbusSirenSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 502
    unit_id: Annotated[int, msgspec.Meta(ge=0, le=255)] = 1
    """The Modbus unit (device) id; behind a gateway, the device's address on its serial line."""
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Seconds for the TCP connect and for each request (default: 80 % of the instance's
    timeout, which bounds each whole call in any case)."""
    confirm_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    """How long the state may take to show ``active`` after the activate coil (``idle`` after
    a stop)."""
    self_test_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """How long the self-test may run before its result is read as a failure."""
    tracks: dict[str, Annotated[int, msgspec.Meta(ge=0, le=65535)]] = {}
    """Names of the pre-recorded messages (an alert's ``audio``) → their numbers in the device;
    an ``audio`` that is a number is used as it is."""
    registers: RegisterMap = msgspec.field(default_factory=RegisterMap)

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise ValueError("host: a host name or address")


class ModbusSiren(AlertDevice):
    kind = "modbus.siren"
    Settings = ModbusSirenSettings

    def __init__(self, context: DriverContext, settings: ModbusSirenSettings) -> None:
        super().__init__(context, settings)
        self.map = settings.registers
        self.link = Link(
            settings.host,
            settings.port,
            settings.unit_id,
            settings.timeout or context.timeout * 0.8,
        )
        self._lock = asyncio.Lock()
        self.memory = ActivationMemory()
        self.current: str | None = None
        """The alert the device sounds (as far as this hub knows)."""
        self._written: str | None = None
        """The alert whose activate coil was written last, confirmed or not."""

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def budget(self) -> float:
        return self.context.timeout * 0.9

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[float]:
        """One sequence of requests: under the lock, within the budget; yields the deadline
        (loop time). Overrunning the budget is :class:`Unreachable`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget
        try:
            async with asyncio.timeout_at(deadline):
                async with self._lock:
                    yield deadline
        except TimeoutError:
            self.link.drop()
            raise Unreachable(
                f"no answer from {self.link.peer} within {self.budget:.1f} s"
            ) from None

    def _point(self, key: str) -> Point | None:
        return self.map.point(key)

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _result(self, alert: str, outcome: ActivationOutcome, detail: str) -> ActivationResult:
        return ActivationResult(
            alert_identifier=alert, outcome=outcome, at=self._now(), detail=detail
        )

    async def _state(self) -> tuple[DeviceState, str]:
        """The device's state and, for a fault, what the device says of it."""
        point = self._point("state_register")
        if point is None:
            state = DeviceState.ACTIVE if self.current else DeviceState.IDLE
            return state, "no state_register: the state last commanded"
        code = int(await self.link.read(point))
        name = self.map.state_of(code)
        if name is None:
            return DeviceState.FAULT, f"unknown state code {code}"
        state = _STATES[name]
        if state is not DeviceState.FAULT:
            return state, ""
        return state, await self._fault_detail(code)

    async def _fault_detail(self, state_code: int) -> str:
        point = self._point("fault_register")
        if point is None:
            return f"the device reports a fault (state code {state_code})"
        fault = int(await self.link.read(point))
        words = self.map.fault_codes.get(str(fault))
        return f"the device reports a fault: code {fault}" + (f" ({words})" if words else "")

    async def _wait_state(
        self, until: set[DeviceState], limit: float, deadline: float
    ) -> tuple[DeviceState, str]:
        """Read the state until it is one of ``until`` (or a fault), for up to ``limit`` s."""
        loop = asyncio.get_running_loop()
        end = min(loop.time() + limit, deadline - _POLL_S)
        while True:
            state, detail = await self._state()
            if state in until or state is DeviceState.FAULT or loop.time() >= end:
                return state, detail
            await asyncio.sleep(_POLL_S)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and read every status point once: a point the device does not have is a
        configuration error naming it."""
        try:
            async with self._session():
                for point in self.map.readable():
                    await self.link.read(point)
        except Unreachable as exc:
            raise TransientError(str(exc)) from None
        except DeviceRefused as exc:
            self.link.drop()
            if exc.transient:
                raise TransientError(str(exc)) from None
            point = exc.point
            raise ConfigError(
                f"registers.{point.key}: {point.table} {point.address} is not readable on the "
                f"device (Modbus exception {exc.code}, {exc.words}); fix the register map"
            ) from None

    async def stop(self) -> None:
        self.link.close()

    # -- activation -------------------------------------------------------------------------
    async def activate(self, alert: Alert, message: WarningMessage) -> ActivationResult:
        # Idempotent: a retried or concurrent activation does not write the coil again.
        return await self.memory.once(alert.identifier, lambda: self._activate(alert, message))

    def _track(self, audio: str | None) -> int:
        if audio is None:
            return 0
        if audio in self.settings.tracks:
            return self.settings.tracks[audio]
        if audio.isdigit() and int(audio) <= 65535:
            return int(audio)
        known = ", ".join(sorted(self.settings.tracks)) or "none configured"
        raise ValueError(
            f"audio {audio!r} is neither a track number nor a name in tracks ({known})"
        )

    def _writes(self, message: WarningMessage) -> list[tuple[Point, int]]:
        values = {
            "message_register": lambda: self._track(message.audio),
            "duration_register": lambda: (
                0 if message.signal is Signal.NONE else message.signal_seconds
            ),
            "repeat_register": lambda: message.repeat,
        }
        writes = []
        for key, value in values.items():
            point = self._point(key)
            if point is not None:
                writes.append((point, value()))
        return writes

    async def _activate(self, alert: Alert, message: WarningMessage) -> ActivationResult:
        ident = alert.identifier
        try:
            writes = self._writes(message)
        except ValueError as exc:
            return self._result(ident, ActivationOutcome.FAILED, str(exc))
        coil = self._point("activate_coil")
        assert coil is not None, "activate_coil is required"
        what = ", ".join(f"{p.key.removesuffix('_register')} {v}" for p, v in writes)
        try:
            async with self._session() as deadline:
                if self._written == ident and self._point("state_register") is not None:
                    # A retry after an attempt whose answer was lost: the coil may be written.
                    state, _ = await self._state()
                    if state is DeviceState.ACTIVE:
                        return self._activated(ident, "active (confirmed on a retry)")
                for point, value in writes:
                    await self.link.write(point, value)
                self._written = ident
                await self.link.write(coil, True)
                state, detail = await self._wait_state(
                    {DeviceState.ACTIVE}, self.settings.confirm_s, deadline
                )
        except Unreachable as exc:
            return self._result(ident, ActivationOutcome.UNREACHABLE, str(exc))
        except DeviceRefused as exc:
            outcome = ActivationOutcome.UNREACHABLE if exc.transient else ActivationOutcome.FAILED
            return self._result(ident, outcome, str(exc))
        if state is DeviceState.ACTIVE:
            return self._activated(ident, "active" + (f" ({what})" if what else ""))
        if state is DeviceState.FAULT:
            return self._result(ident, ActivationOutcome.FAILED, detail)
        return self._result(
            ident,
            ActivationOutcome.FAILED,
            f"the device did not report active within {self.settings.confirm_s:g} s "
            f"after {coil} (state {state.value})",
        )

    def _activated(self, ident: str, detail: str) -> ActivationResult:
        result = self._result(ident, ActivationOutcome.ACTIVATED, detail)
        self.memory.remember(result)
        self.current = ident
        return result

    async def cancel(self, alert_identifier: str) -> ActivationResult:
        """Stop the signal: 0 to the activate coil, then 1 to the stop coil, then wait for the
        state to leave ``active``. Raises when the device cannot be reached or refuses, so an
        alert's record never shows a cancel that did not happen."""
        if self.current is not None and self.current != alert_identifier:
            return self._result(
                alert_identifier,
                ActivationOutcome.CANCELLED,
                f"not sounding this alert (it sounds {self.current}): left as it is",
            )
        activate, stop = self._point("activate_coil"), self._point("stop_coil")
        assert activate is not None
        try:
            async with self._session() as deadline:
                await self.link.write(activate, False)
                if stop is not None:
                    await self.link.write(stop, True)
                self.memory.forget(alert_identifier)
                self._written = None
                state, detail = await self._wait_state(
                    {DeviceState.IDLE}, self.settings.confirm_s, deadline
                )
        except Unreachable as exc:
            raise TransientError(f"cancel not delivered: {exc}") from None
        except DeviceRefused as exc:
            if exc.transient:
                raise TransientError(str(exc)) from None
            raise DriverError(str(exc)) from None
        if state is DeviceState.ACTIVE:
            raise DriverError(
                f"the device still reports active {self.settings.confirm_s:g} s after "
                f"{stop or activate}"
            )
        self.current = None
        return self._result(
            alert_identifier,
            ActivationOutcome.CANCELLED,
            f"stopped (state {state.value})" + (f": {detail}" if detail else ""),
        )

    # -- status and self-test ---------------------------------------------------------------
    async def status(self) -> DeviceStatus:
        """Read the state, mains, battery and tamper points (reads only: silent)."""
        m = self.map
        try:
            async with self._session():
                state, detail = await self._state()
                mains = None
                if (
                    point := self._point("mains_input") or self._point("mains_register")
                ) is not None:
                    mains = bool(await self.link.read(point))
                battery = None
                if (point := self._point("battery_register")) is not None:
                    battery = round(int(await self.link.read(point)) * m.battery_scale, 1)
                tamper = None
                if (point := self._point("tamper_input")) is not None:
                    tamper = bool(await self.link.read(point))
        except Unreachable as exc:
            return DeviceStatus(state=DeviceState.OFFLINE, checked_at=self._now(), detail=str(exc))
        except DeviceRefused as exc:
            return DeviceStatus(state=DeviceState.FAULT, checked_at=self._now(), detail=str(exc))
        if state is not DeviceState.ACTIVE:
            self.current = None if state is DeviceState.IDLE else self.current
        return DeviceStatus(
            state=state,
            checked_at=self._now(),
            mains_ok=mains,
            battery_pct=battery,
            tamper=tamper,
            active_alert=self.current if state is DeviceState.ACTIVE else None,
            detail=detail,
        )

    async def self_test(self, audible: bool = False) -> SelfTestResult:
        """Pulse the self-test coil (1, then 0) and read the result register until the test
        is over. Silent: the map has no audible test (a ``Test`` alert is one)."""
        if audible:
            raise NotSupported("a Modbus siren has no audible self-test in its register map")
        coil, result = self._point("self_test_coil"), self._point("self_test_result_register")
        if coil is None:
            raise NotSupported("the register map has no self_test_coil")
        m = self.map
        code: int | None = None
        try:
            async with self._session() as deadline:
                await self.link.write(coil, True)
                if result is not None:
                    loop = asyncio.get_running_loop()
                    end = min(loop.time() + self.settings.self_test_s, deadline - 2 * _POLL_S)
                    while (code := int(await self.link.read(result))) == m.self_test_running:
                        if loop.time() >= end:
                            break
                        await asyncio.sleep(_POLL_S)
                await self.link.write(coil, False)  # the end of the pulse
        except Unreachable as exc:
            raise TransientError(f"self-test: {exc}") from None
        except DeviceRefused as exc:
            return SelfTestResult(passed=False, audible=False, at=self._now(), detail=str(exc))
        if result is None:
            detail = f"the device accepted {coil} (no result register)"
            return SelfTestResult(passed=True, audible=False, at=self._now(), detail=detail)
        if code == m.self_test_passed:
            return SelfTestResult(passed=True, audible=False, at=self._now(), detail="passed")
        detail = (
            f"no result within {self.settings.self_test_s:g} s"
            if code == m.self_test_running
            else f"the device reports self-test result code {code}"
        )
        return SelfTestResult(passed=False, audible=False, at=self._now(), detail=detail)
