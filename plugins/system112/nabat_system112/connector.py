"""``system112.connector``: the link between the hub and a System-112 centre.

In: the 112 platform POSTs incident cards to ``/plugins/system112/<instance>/eido`` (EIDO
JSON) or ``/cards`` (the simple card), signed per Standard Webhooks. Each becomes the hub's
incident (``incident.created|updated|closed``) under an id derived from the card's own, with the
nearest cameras linked; the answer is a receipt naming the hub's incident.

Out: incidents that did not come from this 112 centre (opened by operators, rules, other
connectors) are POSTed to ``forward_url`` as EIDO, signed, through the hub's durable delivery.
The 112 centre must confirm receipt — in the answer (``{"status": "accepted"}``) or later at
``/acks`` — within ``ack_timeout`` (30 s, the norm) of the incident's event; otherwise
``system112.ack.overdue`` is raised (severity severe), and a late or refused confirmation is
published too. Unconfirmed incidents are kept in a state file, so a restart does not forget
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar, Literal

import httpx
import msgspec
from nabat.events import Event, Severity
from nabat.interfaces import (
    SERVICES,
    ConfigError,
    Connector,
    DeliveryResult,
    DeliveryStatus,
    DriverContext,
    Incident,
    IncidentChange,
    IncidentStatus,
    Secret,
    TransientError,
    incident_of,
)
from nabat.interfaces.webhooks import signed_headers

from .card import parse_card
from .eido import EidoError, incident_from_eido, incident_to_eido, parse_eido, prepare

__all__ = ["Ack", "AckOverdue", "AckReceived", "Receipt", "System112Connector", "System112Settings"]

_NAMESPACE = uuid.UUID("6f0e4a52-3c1d-4b8e-9a57-112112112112")
_ACCEPTED = ("accepted", "rejected")
_KEEP = timedelta(days=1)


class System112Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    inbound_secrets: Annotated[list[Secret], msgspec.Meta(min_length=1)]
    """``whsec_…`` secrets the 112 centre signs its requests with (two while rotating)."""
    forward_url: str | None = None
    """Where hub incidents go as EIDO; none: nothing is forwarded."""
    forward_secret: Secret | None = None
    """``whsec_…`` secret our forwards are signed with."""
    agency: str = "nabat"
    """Our agency id in EIDO documents (``updatedByAgencyReference``)."""
    ack_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Seconds the 112 centre has to confirm a forwarded incident (the norm is 30)."""
    forward_types: list[str] = []
    """Forward only incidents of these ``type``s; empty: every incident not from this 112."""

    def __post_init__(self) -> None:
        if self.forward_url is not None:
            if not self.forward_url.startswith(("http://", "https://")):
                raise ValueError("forward_url must be an http(s):// URL")
            if self.forward_secret is None:
                raise ValueError("forward_url needs forward_secret (the signing secret)")


class Receipt(msgspec.Struct, kw_only=True):
    """What the 112 centre gets back for a card: the hub's incident and what changed."""

    incident: str
    change: IncidentChange
    version: int
    municipality: str | None = None


class Ack(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A 112 centre's confirmation of a forwarded incident (``/acks`` or the POST's answer)."""

    incident: Annotated[str, msgspec.Meta(min_length=1, max_length=300)] | None = None
    """Our incident id or the EIDO ``$id`` we sent; may be left out in the POST's answer."""
    status: Literal["accepted", "rejected"]
    card: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    """The 112 centre's own card number for it."""
    at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    """When 112 says it confirmed (with an offset); reported, lateness is by our clock."""
    operator: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class AckReceived(msgspec.Struct, frozen=True, kw_only=True):
    """``system112.ack.accepted`` / ``system112.ack.rejected``."""

    incident: str
    status: str
    seconds: float
    """From the incident's event to the confirmation."""
    late: bool
    card: str | None = None
    operator: str | None = None
    reason: str | None = None
    at: datetime | None = None
    """The confirmation's time as 112 gave it."""


class AckOverdue(msgspec.Struct, frozen=True, kw_only=True):
    """``system112.ack.overdue``: no confirmation within ``ack_timeout``."""

    incident: str
    waited: float
    forwarded: bool
    """Whether the 112 centre at least took the POST (else it was unreachable)."""
    detail: str = ""


class _Pending(msgspec.Struct, kw_only=True):
    incident: str
    eido_id: str
    since: datetime
    deadline: datetime
    municipality: str | None = None
    forwarded: bool = False
    detail: str = ""
    overdue: bool = False


class _State(msgspec.Struct):
    """What the connector keeps across restarts (``pending-acks.json``)."""

    pending: dict[str, _Pending] = {}
    confirmed: dict[str, datetime] = {}
    """Incidents (and their EIDO ids) 112 confirmed: their updates are not tracked again and a
    repeated confirmation is fine."""


_ack_decoder = msgspec.json.Decoder(Ack)
_state = msgspec.json.Decoder(_State)
_KEEP_CONFIRMED = 20_000


class System112Connector(Connector):
    kind = "system112.connector"
    Settings = System112Settings
    subscribes: ClassVar[tuple[str, ...]] = ("incident.*",)

    def __init__(self, context: DriverContext, settings: System112Settings) -> None:
        super().__init__(context, settings)
        self.origin = f"system112:{context.instance_id}"
        self.http: httpx.AsyncClient | None = None
        self.pending: dict[str, _Pending] = {}
        self._recent: dict[str, datetime] = {}  # confirmed: see _State.confirmed
        self._changed = asyncio.Event()
        self._writing = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(max(1.0, self.context.timeout * 0.9)), follow_redirects=False
        )
        self._load()
        await asyncio.to_thread(prepare)

    async def stop(self) -> None:
        http, self.http = self.http, None
        if http is not None:
            await http.aclose()

    def _load(self) -> None:
        """The confirmations still awaited when the hub last stopped (a small file)."""
        path = self._state_path()
        if os.path.exists(path):
            try:
                with open(path, "rb") as fh:
                    state = _state.decode(fh.read())
            except (OSError, msgspec.DecodeError) as exc:
                raise ConfigError(f"state file {path}: {exc}") from None
            self.pending, self._recent = state.pending, state.confirmed

    def _state_path(self) -> str:
        return str(self.context.data_dir / "pending-acks.json")

    async def _save(self) -> None:
        """Write the state file (atomically, off the event loop) and wake the deadline
        watcher."""
        if len(self._recent) > _KEEP_CONFIRMED:
            for old in sorted(self._recent, key=self._recent.__getitem__)[: _KEEP_CONFIRMED // 10]:
                del self._recent[old]
        body = msgspec.json.encode(_State(pending=self.pending, confirmed=self._recent))
        path = self._state_path()

        def write() -> None:
            with open(path + ".tmp", "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(path + ".tmp", path)

        async with self._writing:
            await asyncio.to_thread(write)
        self._changed.set()

    async def run(self) -> None:
        """Watch the confirmations' deadlines."""
        while True:
            now = datetime.now(UTC)
            due = [p for p in self.pending.values() if not p.overdue and p.deadline <= now]
            for pending in due:
                await self._overdue(pending, now)
            # Never confirmed: the alarm was raised; after a day it is only clutter.
            stale = [k for k, p in self.pending.items() if p.overdue and now - p.deadline > _KEEP]
            for key in stale:
                del self.pending[key]
            if stale:
                await self._save()
            upcoming = [p.deadline for p in self.pending.values() if not p.overdue]
            wait = min(((d - now).total_seconds() for d in upcoming), default=3600.0)
            self._changed.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for drops a cancellation that lands
            # as the event is set, and this loop would outlive the connector's stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.05, wait)):
                    await self._changed.wait()

    async def _overdue(self, pending: _Pending, now: datetime) -> None:
        pending.overdue = True
        waited = (now - pending.since).total_seconds()
        self.context.log.warning(
            "system112.ack_overdue", incident=pending.incident, waited=round(waited, 1)
        )
        await self.context.publish(
            self.context.event(
                "system112.ack.overdue",
                AckOverdue(
                    incident=pending.incident,
                    waited=round(waited, 3),
                    forwarded=pending.forwarded,
                    detail=pending.detail,
                ),
                subject=pending.incident,
                correlationid=pending.incident,
                municipality=pending.municipality,
                severity=Severity.SEVERE,
            )
        )
        await self._save()

    # -- in: cards -------------------------------------------------------------------------
    def incident_id(self, external_id: str) -> str:
        """The hub's id of a 112 card: stable, and distinct per 112 centre."""
        return str(uuid.uuid5(_NAMESPACE, f"{self.context.instance_id}\n{external_id}"))

    async def receive_card(self, body: bytes) -> Receipt:
        """A simple card (raises :class:`~.card.CardError`)."""
        card = parse_card(body)
        return await self._report(card.id, card.incident(self.origin), card.municipality)

    async def receive_eido(self, body: bytes) -> Receipt:
        """An EIDO document (raises :class:`~.eido.EidoError`)."""
        # Validation walks the schema: up to a few hundred ms for a large document.
        found = incident_from_eido(await asyncio.to_thread(parse_eido, body))
        incident = msgspec.structs.replace(
            found.incident,
            origin=self.origin,
            external_id=found.external_id,
            updated_at=found.updated_at,
            status=IncidentStatus.CLOSED if found.closed else found.incident.status,
        )
        return await self._report(found.external_id, incident, None)

    async def _report(
        self, external_id: str, incident: Incident, municipality: str | None
    ) -> Receipt:
        incident_id = self.incident_id(external_id)
        severity = Severity.SEVERE if incident.victims else Severity.MODERATE
        change, record = await self.context.incidents.report(
            incident_id,
            incident,
            source=self.context.source,
            municipality=municipality or (None if incident.location else self.context.municipality),
            severity=severity,
        )
        self.context.log.info(
            "system112.card", incident=incident_id, change=str(change), version=record.version
        )
        return Receipt(
            incident=incident_id,
            change=change,
            version=record.version,
            municipality=record.municipality,
        )

    # -- out: forwards ---------------------------------------------------------------------
    def _wanted(self, event: Event) -> Incident | None:
        if self.settings.forward_url is None or event.subject is None:
            return None
        try:
            incident = incident_of(event)
        except ValueError as exc:
            self.context.log.warning(
                "system112.unreadable_incident", event=event.id, error=str(exc)[:200]
            )
            return None
        if incident.origin == self.origin:
            return None  # 112's own incident: it knows
        if self.settings.forward_types and incident.type not in self.settings.forward_types:
            return None
        return incident

    async def handle(self, event: Event) -> DeliveryResult:
        now = datetime.now(UTC)
        incident = self._wanted(event)
        if incident is None:
            return DeliveryResult(status=DeliveryStatus.DELIVERED, at=now, detail="not forwarded")
        s = self.settings
        assert self.http is not None and s.forward_url is not None and s.forward_secret
        incident_id = event.subject
        assert incident_id is not None
        eido_id = f"urn:emergency:uid:incidentid:{incident_id}:{s.agency}"
        pending = self.pending.get(incident_id)
        if pending is None and incident_id not in self._recent:
            # The norm counts from the incident, not from our first successful POST: an
            # unreachable 112 centre, or an incident we cannot even send, must raise the alarm.
            pending = self.pending[incident_id] = _Pending(
                incident=incident_id,
                eido_id=eido_id,
                since=event.time,
                deadline=event.time + timedelta(seconds=s.ack_timeout),
                municipality=event.municipality,
            )
            await self._save()
        try:
            document = await asyncio.to_thread(  # validated against the schema: off the loop
                incident_to_eido,
                msgspec.structs.replace(
                    incident, services=[x for x in incident.services if x in SERVICES]
                ),
                incident_id=incident_id,
                issuer=f"nabat.{s.agency}",
                agency=s.agency,
                updated_at=event.time,
                municipality=event.municipality,
            )
        except (EidoError, ValueError) as exc:  # retrying cannot help: a dead letter, named
            await self._note(pending, f"cannot be sent as EIDO: {exc}")
            self.context.log.error("system112.unsendable", incident=incident_id, error=str(exc))
            return DeliveryResult(
                status=DeliveryStatus.REJECTED, at=now, detail=f"not valid EIDO: {exc}"[:300]
            )
        body = json.dumps(document, ensure_ascii=False).encode()
        headers = signed_headers(s.forward_secret.reveal(), event.id, body)
        headers["Content-Type"] = "application/json"
        try:
            response = await self.http.post(s.forward_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            await self._note(pending, f"{type(exc).__name__}")
            raise TransientError(f"112 forward: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 500 or response.status_code == 429:
            await self._note(pending, f"HTTP {response.status_code}")
            raise TransientError(f"112 forward: HTTP {response.status_code}")
        if response.status_code >= 300:
            await self._note(pending, f"refused: HTTP {response.status_code}")
            # Only the status: an answer's text may echo the incident's personal data.
            return DeliveryResult(
                status=DeliveryStatus.REJECTED, at=now, detail=f"HTTP {response.status_code}"
            )
        if pending is not None:
            pending.forwarded = True
            pending.detail = f"HTTP {response.status_code}, awaiting confirmation"
            await self._save()
        answer = self._inline_ack(response)
        if answer is not None:
            try:
                await self.acknowledge(msgspec.structs.replace(answer, incident=incident_id))
            except Exception as exc:  # the POST went through: never redo it for this
                self.context.log.error(
                    "system112.answer_unusable", incident=incident_id, error=repr(exc)
                )
        return DeliveryResult(
            status=DeliveryStatus.DELIVERED, at=now, detail=f"HTTP {response.status_code}"
        )

    async def _note(self, pending: _Pending | None, detail: str) -> None:
        if pending is not None:
            pending.detail = detail
            await self._save()

    @staticmethod
    def _inline_ack(response: httpx.Response) -> Ack | None:
        if "json" not in response.headers.get("content-type", ""):
            return None
        try:
            answer = msgspec.json.decode(response.content)
            if not isinstance(answer, dict) or answer.get("status") not in _ACCEPTED:
                return None
            return msgspec.convert(answer, Ack)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    # -- confirmations ---------------------------------------------------------------------
    def parse_ack(self, body: bytes) -> Ack:
        return _ack_decoder.decode(body)

    async def acknowledge(self, ack: Ack) -> bool:
        """Record a confirmation; False when no forwarded incident matches it."""
        key = ack.incident or ""
        pending = self.pending.get(key) or next(
            (p for p in self.pending.values() if p.eido_id == key), None
        )
        if pending is None:
            return key in self._recent  # a repeated confirmation is fine
        now = datetime.now(UTC)
        # Our clock decides lateness: 112's own ``at`` is reported, not trusted.
        seconds = (now - pending.since).total_seconds()
        del self.pending[pending.incident]
        self._recent[pending.incident] = self._recent[pending.eido_id] = now
        await self._save()
        late = pending.overdue or seconds > self.settings.ack_timeout
        await self.context.publish(
            self.context.event(
                f"system112.ack.{ack.status}",
                AckReceived(
                    incident=pending.incident,
                    status=ack.status,
                    seconds=round(seconds, 3),
                    late=late,
                    card=ack.card,
                    operator=ack.operator,
                    reason=ack.reason,
                    at=ack.at,
                ),
                subject=pending.incident,
                correlationid=pending.incident,
                municipality=pending.municipality,
                severity=Severity.MODERATE if ack.status == "rejected" or late else Severity.INFO,
            )
        )
        return True
