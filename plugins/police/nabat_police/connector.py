"""``police.connector``: licence-plate reads against a hotlist; incidents to the police.

* ``plate.read`` events (from ANPR cameras, through the ingest API or a plugin), data
  ``{plate, camera, confidence, image}``: a read of a wanted plate with enough confidence is
  published as ``police.hotlist.hit`` — to the 02 dispatch — with the list's reason and the
  camera, in the read's municipality. Both alphabets match (see :mod:`.plates`).
* incidents of police interest (``incident.*`` whose data names service ``02``, or a type in
  ``forward_types``) are POSTed to the police webhook as CloudEvents JSON, signed per Standard
  Webhooks; the hub's durable delivery retries them until the police system acknowledges.

The hotlist is read at start and again whenever the file changes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import ClassVar

import httpx
import msgspec
from nabat.events import Event, Severity, encode_event
from nabat.interfaces import (
    ConfigError,
    Connector,
    DeliveryResult,
    DeliveryStatus,
    DriverContext,
    Secret,
    TransientError,
)
from nabat.interfaces.webhooks import signed_headers

from .plates import Hotlist, HotlistError, normalize

__all__ = ["HotlistHit", "PoliceConnector", "PoliceSettings"]


class PoliceSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    hotlist: str
    """CSV file ``plate;reason;priority``."""
    min_confidence: float = 0.8
    """Plate reads below this are not matched (a misread must not send a patrol)."""
    forward_url: str | None = None
    """The police system's webhook for incidents; none: no forwarding."""
    forward_secret: Secret | None = None
    """``whsec_…`` signing secret of that webhook."""
    forward_types: list[str] = []
    """Incident types (``data.type``) always forwarded, besides those naming service 02."""

    def __post_init__(self) -> None:
        if self.forward_url is not None and not self.forward_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("forward_url must be an http(s):// URL")
        if self.forward_url is not None and self.forward_secret is None:
            raise ValueError("forward_url needs forward_secret (the webhook signing secret)")


class HotlistHit(msgspec.Struct, frozen=True, kw_only=True):
    """``police.hotlist.hit``."""

    plate: str
    """As read."""
    listed_as: str
    reason: str
    priority: str
    camera: str | None = None
    confidence: float | None = None
    image: str | None = None
    read_id: str


class PoliceConnector(Connector):
    kind = "police.connector"
    Settings = PoliceSettings
    subscribes: ClassVar[tuple[str, ...]] = ("plate.read", "incident.*")

    def __init__(self, context: DriverContext, settings: PoliceSettings) -> None:
        super().__init__(context, settings)
        self.hotlist = Hotlist({})
        self._loaded_mtime: float | None = None
        self.http: httpx.AsyncClient | None = None

    def _load(self) -> None:
        path = os.path.join(os.getcwd(), self.settings.hotlist)
        try:
            mtime = os.stat(path).st_mtime
        except OSError as exc:
            raise ConfigError(f"hotlist {self.settings.hotlist}: {exc.strerror}") from None
        if mtime == self._loaded_mtime:
            return
        try:
            self.hotlist = Hotlist.load(path)
        except HotlistError as exc:
            raise ConfigError(f"hotlist: {exc}") from None
        self._loaded_mtime = mtime
        self.context.log.info("police.hotlist_loaded", plates=len(self.hotlist))

    async def start(self) -> None:
        self._load()
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(max(1.0, self.context.timeout * 0.9)))

    async def stop(self) -> None:
        http, self.http = self.http, None
        if http is not None:
            await http.aclose()

    async def handle(self, event: Event) -> DeliveryResult:
        now = datetime.now(UTC)
        if event.type == "plate.read":
            await self._plate(event)
            return DeliveryResult(status=DeliveryStatus.DELIVERED, at=now)
        return await self._forward(event)

    async def _plate(self, event: Event) -> None:
        try:
            self._load()  # the file may have changed
        except ConfigError as exc:
            self.context.log.warning("police.hotlist_unreadable", error=str(exc))
        data = msgspec.to_builtins(event.data) if event.data is not None else {}
        if not isinstance(data, dict) or not isinstance(data.get("plate"), str):
            return  # not a plate read we understand
        confidence = data.get("confidence")
        if isinstance(confidence, int | float) and confidence < self.settings.min_confidence:
            return
        entry = self.hotlist.match(data["plate"])
        if entry is None:
            return
        hit = HotlistHit(
            plate=data["plate"],
            listed_as=entry.plate,
            reason=entry.reason,
            priority=entry.priority,
            camera=data.get("camera") or event.subject,
            confidence=confidence if isinstance(confidence, int | float) else None,
            image=data.get("image"),
            read_id=event.id,
        )
        self.context.log.info(
            "police.hotlist_hit", plate=normalize(hit.plate), camera=hit.camera, reason=hit.reason
        )
        await self.context.publish(
            self.context.event(
                "police.hotlist.hit",
                hit,
                subject=hit.camera or normalize(hit.plate),
                municipality=event.municipality,
                correlationid=event.correlationid or event.id,
                severity=Severity.SEVERE if entry.priority == "high" else Severity.MODERATE,
            )
        )

    def _of_interest(self, event: Event) -> bool:
        data = msgspec.to_builtins(event.data) if event.data is not None else {}
        if not isinstance(data, dict):
            return False
        services = data.get("services") or []
        if isinstance(services, list) and any(str(s) in ("02", "police") for s in services):
            return True
        return bool(self.settings.forward_types) and data.get("type") in self.settings.forward_types

    async def _forward(self, event: Event) -> DeliveryResult:
        now = datetime.now(UTC)
        s = self.settings
        if s.forward_url is None or not self._of_interest(event):
            return DeliveryResult(status=DeliveryStatus.DELIVERED, at=now, detail="not forwarded")
        assert self.http is not None and s.forward_secret is not None
        body = encode_event(event)
        headers = signed_headers(s.forward_secret.reveal(), event.id, body)
        headers["Content-Type"] = "application/cloudevents+json"
        try:
            response = await self.http.post(s.forward_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"police webhook: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"police webhook: HTTP {response.status_code}")
        if response.status_code >= 300:
            return DeliveryResult(
                status=DeliveryStatus.REJECTED,
                at=now,
                detail=f"HTTP {response.status_code}: {response.text[:200]}",
            )
        return DeliveryResult(
            status=DeliveryStatus.DELIVERED, at=now, detail=f"HTTP {response.status_code}"
        )
