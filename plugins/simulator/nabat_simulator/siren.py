"""``simulator.siren``: a warning device that answers like a real controller."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import msgspec
from nabat.interfaces import (
    ActivationOutcome,
    ActivationResult,
    Alert,
    AlertDevice,
    DeviceState,
    DeviceStatus,
    DriverContext,
    SelfTestResult,
    WarningMessage,
)


class SirenSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    seed: int | None = None
    response_delay: float = 0.2
    """Seconds the controller takes to answer a command."""
    failure_rate: float = 0.0
    """Chance that an activation is refused (amplifier fault)."""
    mains_failure_rate: float = 0.05
    """Chance, per status poll, that mains power drops (or comes back when it is down)."""
    time_scale: float = 1.0
    """Speed-up of the signal duration: 60 plays a 3-minute signal in 3 s."""


class SimulatedSiren(AlertDevice):
    kind = "simulator.siren"
    Settings = SirenSettings

    def __init__(self, context: DriverContext, settings: SirenSettings) -> None:
        super().__init__(context, settings)
        self._rng = random.Random(
            settings.seed if settings.seed is not None else context.instance_id
        )
        self._results: dict[str, ActivationResult] = {}
        self._active: str | None = None
        self._active_until = 0.0
        self._mains_ok = True
        self._battery = 100.0

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _is_active(self) -> bool:
        loop = asyncio.get_running_loop()
        if self._active and loop.time() >= self._active_until:
            self._active = None
        return self._active is not None

    async def activate(self, alert: Alert, message: WarningMessage) -> ActivationResult:
        previous = self._results.get(alert.identifier)
        if previous is not None:
            return previous  # idempotent: a retried command does not sound twice
        await asyncio.sleep(self.settings.response_delay)
        if self._rng.random() < self.settings.failure_rate:
            result = ActivationResult(
                alert_identifier=alert.identifier,
                outcome=ActivationOutcome.FAILED,
                at=self._now(),
                detail="amplifier fault (simulated)",
            )
        else:
            seconds = (message.signal_seconds + 30 * message.repeat) / self.settings.time_scale
            self._active = alert.identifier
            self._active_until = asyncio.get_running_loop().time() + seconds
            result = ActivationResult(
                alert_identifier=alert.identifier,
                outcome=ActivationOutcome.ACTIVATED,
                at=self._now(),
                detail=(
                    f"signal {message.signal.value} {message.signal_seconds}s, "
                    f"message x{message.repeat}"
                ),
            )
        self._results[alert.identifier] = result
        return result

    async def cancel(self, alert_identifier: str) -> ActivationResult:
        await asyncio.sleep(self.settings.response_delay)
        detail = "stopped" if self._active == alert_identifier else "nothing active"
        if self._active == alert_identifier:
            self._active = None
        return ActivationResult(
            alert_identifier=alert_identifier,
            outcome=ActivationOutcome.CANCELLED,
            at=self._now(),
            detail=detail,
        )

    async def status(self) -> DeviceStatus:
        await asyncio.sleep(self.settings.response_delay / 2)
        if self._rng.random() < self.settings.mains_failure_rate:
            self._mains_ok = not self._mains_ok
        self._battery = (
            min(100.0, self._battery + 5) if self._mains_ok else max(0.0, self._battery - 7)
        )
        if self._is_active():
            state = DeviceState.ACTIVE
        elif not self._mains_ok and self._battery < 20:
            state = DeviceState.FAULT
        else:
            state = DeviceState.IDLE
        return DeviceStatus(
            state=state,
            checked_at=self._now(),
            mains_ok=self._mains_ok,
            battery_pct=round(self._battery, 1),
            tamper=False,
            active_alert=self._active,
            detail="" if self._mains_ok else "on battery: mains power lost (simulated)",
        )

    async def self_test(self, audible: bool = False) -> SelfTestResult:
        await asyncio.sleep(self.settings.response_delay)
        passed = self._battery >= 20
        return SelfTestResult(
            passed=passed,
            audible=audible,
            at=self._now(),
            detail="ok" if passed else f"battery {self._battery:.0f}% below 20%",
        )
