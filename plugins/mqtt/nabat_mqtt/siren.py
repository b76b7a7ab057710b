"""``mqtt.siren``: a warning device behind an MQTT broker (protocol in :mod:`.protocol`).

Commands go out with QoS 1 and are matched to the device's acknowledgement by id; an
activation not acknowledged within the instance's timeout is ``unreachable`` (the alert service
retries it; the device is idempotent per alert). Status comes from the device's retained
``status`` topic; its ``online`` topic (with ``"0"`` as the device's last will) tells the hub at
once when the device drops off the broker.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
from nabat.interfaces import (
    ActivationMemory,
    ActivationOutcome,
    ActivationResult,
    Alert,
    AlertDevice,
    DeviceState,
    DeviceStatus,
    DriverContext,
    Secret,
    SelfTestResult,
    TransientError,
    WarningMessage,
    uuid7,
)

from .broker import Broker
from .protocol import Ack, Command, Status

__all__ = ["MqttSiren", "MqttSirenSettings"]

_OUTCOMES = {
    "activated": ActivationOutcome.ACTIVATED,
    "cancelled": ActivationOutcome.CANCELLED,
    "failed": ActivationOutcome.FAILED,
}
_STATES = {"idle": DeviceState.IDLE, "active": DeviceState.ACTIVE, "fault": DeviceState.FAULT}
_encode = msgspec.json.encode


class MqttSirenSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    host: str
    """The broker."""
    port: int = 1883
    username: str | None = None
    password: Secret | None = None
    tls: bool = False
    topic_prefix: str = "nabat/sirens"
    device_id: str | None = None
    """The device's id in its topics (default: the instance id)."""
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if (
            not self.topic_prefix
            or any(c in self.topic_prefix for c in "#+")
            or self.topic_prefix.endswith("/")
        ):
            raise ValueError("topic_prefix: a plain topic path without wildcards or trailing '/'")


class MqttSiren(AlertDevice):
    kind = "mqtt.siren"
    Settings = MqttSirenSettings

    def __init__(self, context: DriverContext, settings: MqttSirenSettings) -> None:
        super().__init__(context, settings)
        self.device = settings.device_id or context.instance_id
        self.broker: Broker | None = None
        self.status_seen: Status | None = None
        self.status_at: datetime | None = None
        self.online: bool | None = None
        self._waiting: dict[str, asyncio.Future[Ack]] = {}
        self.memory = ActivationMemory()

    @property
    def _topic(self) -> str:
        return f"{self.settings.topic_prefix}/{self.device}"

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        password = s.password.reveal() if s.password is not None else None
        self.broker = Broker.acquire(
            (s.host, s.port, s.username, s.tls), password, self.context.log
        )
        await self.broker.attach(s.topic_prefix, self.device, self._on_message)
        try:
            # Within the instance's timeout (the hub's own limit on start), to give the reason.
            async with asyncio.timeout(min(s.connect_timeout, self.context.timeout * 0.8)):
                await self.broker.connected.wait()
        except TimeoutError:
            why = self.broker.last_error or "no answer"
            await self.stop()
            raise TransientError(
                f"cannot connect to the MQTT broker {s.host}:{s.port}: {why}"
            ) from None

    async def stop(self) -> None:
        broker, self.broker = self.broker, None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(TransientError("the driver stopped"))
        self._waiting.clear()
        if broker is not None:
            broker.detach(self.settings.topic_prefix, self.device)
            await broker.release()

    # -- messages from the device -----------------------------------------------------------
    def _on_message(self, device: str, kind: str, payload: bytes) -> None:
        if kind == "ack":
            ack = msgspec.json.decode(payload, type=Ack)
            future = self._waiting.pop(ack.id, None)
            if future is not None and not future.done():
                future.set_result(ack)
        elif kind == "status":
            self.status_seen = msgspec.json.decode(payload, type=Status)
            self.status_at = datetime.now(UTC)
        elif kind == "online":
            self.online = payload.strip() in (b"1", b"true")

    # -- commands ---------------------------------------------------------------------------
    async def _command(self, command: Command) -> Ack | None:
        """Send ``command``; its acknowledgement, or None when none came in time."""
        broker = self.broker
        if broker is None:
            raise TransientError("the driver is not started")
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._waiting[command.id] = future
        try:
            await broker.publish(f"{self._topic}/cmd", _encode(command))
        except Exception as exc:
            self._waiting.pop(command.id, None)
            raise TransientError(f"cannot send to the device: {exc}") from None
        try:
            async with asyncio.timeout(max(0.1, self.context.timeout * 0.9)):
                return await future
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(command.id, None)

    def _now(self) -> datetime:
        return datetime.now(UTC)

    async def activate(self, alert: Alert, message: WarningMessage) -> ActivationResult:
        # Idempotent: a retried or concurrent activation does not start the signal twice.
        return await self.memory.once(alert.identifier, lambda: self._activate(alert, message))

    async def _activate(self, alert: Alert, message: WarningMessage) -> ActivationResult:
        ack = await self._command(
            Command(
                id=uuid7(),
                action="activate",
                alert=alert.identifier,
                signal=message.signal.value,
                signal_seconds=message.signal_seconds,
                text=message.text,
                audio=message.audio,
                repeat=message.repeat,
            )
        )
        if ack is None:
            why = (
                "the device is offline (last will)"
                if self.online is False
                else "no acknowledgement"
            )
            return ActivationResult(
                alert_identifier=alert.identifier,
                outcome=ActivationOutcome.UNREACHABLE,
                at=self._now(),
                detail=f"{why} within {self.context.timeout * 0.9:.1f} s",
            )
        result = ActivationResult(
            alert_identifier=alert.identifier,
            outcome=_OUTCOMES.get(ack.outcome or "", ActivationOutcome.FAILED),
            at=self._now(),
            detail=ack.detail
            or ("" if ack.outcome in _OUTCOMES else f"unknown outcome {ack.outcome!r}"),
        )
        return result

    async def cancel(self, alert_identifier: str) -> ActivationResult:
        ack = await self._command(Command(id=uuid7(), action="cancel", alert=alert_identifier))
        self.memory.forget(alert_identifier)
        if ack is None:
            return ActivationResult(
                alert_identifier=alert_identifier,
                outcome=ActivationOutcome.UNREACHABLE,
                at=self._now(),
                detail="no acknowledgement of the cancel",
            )
        return ActivationResult(
            alert_identifier=alert_identifier,
            outcome=_OUTCOMES.get(ack.outcome or "", ActivationOutcome.FAILED),
            at=self._now(),
            detail=ack.detail,
        )

    async def status(self) -> DeviceStatus:
        now = self._now()
        if self.online is False:
            return DeviceStatus(
                state=DeviceState.OFFLINE, checked_at=now, detail="offline (last will)"
            )
        seen = self.status_seen
        if seen is None:
            return DeviceStatus(
                state=DeviceState.OFFLINE, checked_at=now, detail="no status received"
            )
        return DeviceStatus(
            state=_STATES.get(seen.state, DeviceState.FAULT),
            checked_at=now,
            mains_ok=seen.mains_ok,
            battery_pct=seen.battery_pct,
            tamper=seen.tamper,
            active_alert=seen.active_alert,
            detail=seen.detail
            or ("" if seen.state in _STATES else f"unknown state {seen.state!r}"),
        )

    async def self_test(self, audible: bool = False) -> SelfTestResult:
        ack = await self._command(Command(id=uuid7(), action="self_test", audible=audible))
        if ack is None:
            return SelfTestResult(passed=False, audible=audible, at=self._now(), detail="no answer")
        return SelfTestResult(
            passed=bool(ack.passed), audible=audible, at=self._now(), detail=ack.detail
        )
