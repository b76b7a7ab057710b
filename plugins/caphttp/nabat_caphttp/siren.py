"""``caphttp.siren``: a warning device or gateway that takes CAP 1.2 alerts by HTTP POST.

An activation POSTs the alert as CAP 1.2 XML (``application/cap+xml``), the message to play in
``<parameter>``s (``signal``, ``signal_seconds``, ``audio``, ``repeat``) and the text as the
``<description>``; a cancel POSTs a CAP ``Cancel`` that references it. The gateway's answer:

* 2xx with a CAP ``Ack`` (or no CAP body) → ``activated``;
* 2xx with a CAP ``Error`` → ``failed``, its ``<note>`` as the reason;
* 401/403 → ``AuthError`` (the instance goes to ``needs_auth``);
* other 4xx → ``failed`` with the status and the first line of the body;
* 5xx, timeouts, refused connections → ``unreachable`` (the alert service retries; the gateway
  must be idempotent per alert identifier, as CAP identifiers are unique).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import httpx
import msgspec
from nabat.interfaces import (
    ActivationMemory,
    ActivationOutcome,
    ActivationResult,
    Alert,
    AlertDevice,
    AuthError,
    DeviceState,
    DeviceStatus,
    DriverContext,
    MsgType,
    Parameter,
    Secret,
    SelfTestResult,
    WarningMessage,
)
from nabat.interfaces.cap import CapError, parse_cap, reference_to, to_cap

__all__ = ["CapHttpSettings", "CapHttpSiren"]

CAP_XML = "application/cap+xml"


class CapHttpSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str
    """Where to POST the CAP alerts."""
    auth: Literal["none", "basic", "bearer"] = "none"
    username: str | None = None
    password: Secret | None = None
    """The Basic password, or the bearer token."""
    status_url: str | None = None
    """A GET answering 2xx while the device is ready (default: the ``url`` itself)."""
    verify_tls: bool = True

    def __post_init__(self) -> None:
        for name in ("url", "status_url"):
            value = getattr(self, name)
            if value is not None and not value.startswith(("http://", "https://")):
                raise ValueError(f"{name} must be an http(s):// URL")
        if self.auth != "none" and self.password is None:
            raise ValueError(f"auth = {self.auth!r} needs password")
        if self.auth == "basic" and not self.username:
            raise ValueError("auth = 'basic' needs username")


class CapHttpSiren(AlertDevice):
    kind = "caphttp.siren"
    Settings = CapHttpSettings

    def __init__(self, context: DriverContext, settings: CapHttpSettings) -> None:
        super().__init__(context, settings)
        self.memory = ActivationMemory()
        self.sent: dict[str, Alert] = {}
        self.http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        s = self.settings
        headers = {}
        auth: httpx.Auth | None = None
        if s.auth == "bearer" and s.password is not None:
            headers["Authorization"] = f"Bearer {s.password.reveal()}"
        elif s.auth == "basic" and s.password is not None:
            auth = httpx.BasicAuth(s.username or "", s.password.reveal())
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(max(0.5, self.context.timeout * 0.9)),
            headers=headers,
            auth=auth,
            verify=s.verify_tls,
        )

    async def stop(self) -> None:
        http, self.http = self.http, None
        if http is not None:
            await http.aclose()

    def _result(self, alert_id: str, outcome: ActivationOutcome, detail: str) -> ActivationResult:
        return ActivationResult(
            alert_identifier=alert_id, outcome=outcome, at=datetime.now(UTC), detail=detail
        )

    async def _post(self, alert: Alert) -> ActivationResult:
        assert self.http is not None
        try:
            response = await self.http.post(
                self.settings.url, content=to_cap(alert), headers={"Content-Type": CAP_XML}
            )
        except httpx.TimeoutException:
            return self._result(
                alert.identifier, ActivationOutcome.UNREACHABLE, "no answer in time"
            )
        except httpx.HTTPError as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return self._result(alert.identifier, ActivationOutcome.UNREACHABLE, why)
        if response.status_code in (401, 403):
            raise AuthError(f"the gateway refused the credentials (HTTP {response.status_code})")
        if response.status_code >= 500:
            return self._result(
                alert.identifier,
                ActivationOutcome.UNREACHABLE,
                f"HTTP {response.status_code} from the gateway",
            )
        first = (response.text.strip().splitlines() or [""])[0][:200]
        if response.status_code >= 300:
            return self._result(
                alert.identifier, ActivationOutcome.FAILED, f"HTTP {response.status_code}: {first}"
            )
        answer = None
        if response.content.lstrip().startswith(b"<"):
            try:
                answer = parse_cap(response.content)
            except CapError as exc:
                return self._result(
                    alert.identifier,
                    ActivationOutcome.FAILED,
                    f"the gateway answered with invalid CAP: {exc.problems[0].reason}",
                )
        if answer is not None and answer.msg_type is MsgType.ERROR:
            return self._result(
                alert.identifier, ActivationOutcome.FAILED, answer.note or "CAP Error"
            )
        ok = (
            ActivationOutcome.CANCELLED
            if alert.msg_type is MsgType.CANCEL
            else ActivationOutcome.ACTIVATED
        )
        detail = (answer.note if answer is not None else None) or f"HTTP {response.status_code}"
        return self._result(alert.identifier, ok, detail)

    async def activate(self, alert: Alert, message: WarningMessage) -> ActivationResult:
        return await self.memory.once(alert.identifier, lambda: self._activate(alert, message))

    async def _activate(self, alert: Alert, message: WarningMessage) -> ActivationResult:
        params = [
            Parameter(value_name="signal", value=message.signal.value),
            Parameter(value_name="signal_seconds", value=str(message.signal_seconds)),
            Parameter(value_name="repeat", value=str(message.repeat)),
        ]
        if message.audio:
            params.append(Parameter(value_name="audio", value=message.audio))
        info = [
            msgspec.structs.replace(
                i,
                description=message.text or i.description,
                parameter=[*i.parameter, *params],
            )
            for i in alert.info
        ]
        sent = msgspec.structs.replace(alert, info=info)
        result = await self._post(sent)
        if result.outcome is ActivationOutcome.ACTIVATED:
            self.sent[alert.identifier] = alert
        return result

    async def cancel(self, alert_identifier: str) -> ActivationResult:
        original = self.sent.get(alert_identifier)
        if original is None:
            return self._result(
                alert_identifier, ActivationOutcome.CANCELLED, "not sent to this device"
            )
        cancel = msgspec.structs.replace(
            original,
            identifier=f"{original.identifier}-cancel",
            sent=datetime.now(UTC).replace(microsecond=0),
            msg_type=MsgType.CANCEL,
            references=reference_to(original),
        )
        result = await self._post(cancel)
        if result.outcome is ActivationOutcome.CANCELLED:
            self.memory.forget(alert_identifier)
            self.sent.pop(alert_identifier, None)
        return self._result(alert_identifier, result.outcome, result.detail)

    async def status(self) -> DeviceStatus:
        assert self.http is not None
        now = datetime.now(UTC)
        try:
            response = await self.http.get(self.settings.status_url or self.settings.url)
        except httpx.HTTPError as exc:
            return DeviceStatus(
                state=DeviceState.OFFLINE, checked_at=now, detail=f"{type(exc).__name__}"
            )
        if response.status_code in (401, 403):
            raise AuthError(f"the gateway refused the credentials (HTTP {response.status_code})")
        if response.status_code >= 400 and response.status_code != 405:  # 405: POST only
            return DeviceStatus(
                state=DeviceState.FAULT, checked_at=now, detail=f"HTTP {response.status_code}"
            )
        return DeviceStatus(state=DeviceState.IDLE, checked_at=now)

    async def self_test(self, audible: bool = False) -> SelfTestResult:
        status = await self.status()
        return SelfTestResult(
            passed=status.state is DeviceState.IDLE,
            audible=False,
            at=status.checked_at,
            detail=status.detail or "the gateway answers",
        )
