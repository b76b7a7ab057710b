"""The duty service: each incident's handling against its norm (docs/duty.md).

An incident that a ``[[duty.norms]]`` entry matches (its type and severity) gets a handling
record with three clocks — acknowledge, pass to the services, first report — and the norm's
SOP checklist. People stop the clocks through the API and the console; the sweep (every
``check_interval``) marks a clock that ran out as missed — a severe ``duty.norm.missed`` —
and starts the norm's escalation chain: one notification per step, each ``after`` seconds
after the one before, until someone acknowledges.

Several hub processes may share the journal: every change to a record is a compare-and-swap
(``Journal.update_record``/``swap_record``), and what a change publishes — events, notification
requests — has ids derived from the incident and the step, published before the swap, so a
process that loses the race publishes nothing new (the journal already has those ids).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from ..config.model import DutySettings, EscalationStep, NormSettings
from ..delivery import DeliveryService
from ..events import Event, Severity, site_of
from ..ids import uuid7
from ..interfaces import DeliveryResult, DeliveryStatus, Job
from ..interfaces.incident import incident_of
from ..logs import get_logger
from ..notifications import NotificationRequest, NotificationService
from ..store import Journal
from ..store.delivery import Order, SubscriptionSpec
from .model import (
    ACKNOWLEDGED,
    COLLECTION,
    DISPATCHED,
    ESCALATED,
    ESCALATION_STOPPED,
    MISSED,
    OPENED,
    REPORTED,
    SOURCE,
    TICKED,
    Clock,
    ClockName,
    Escalation,
    Handling,
    Notified,
    Step,
)

__all__ = ["DutyError", "DutyService", "EditedNorms"]

log = get_logger("nabat.duty")
SETTINGS = "duty_settings"
SETTINGS_KEY = "norms"
REFRESH_S = 3.0
"""How soon every process takes up norms an administrator changed."""
CLOSED = "incident_handling_closed"
CLOSED_KEEP_DAYS = 90


class EditedNorms(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Norms and escalation chains an administrator set in the console, in place of the
    configuration's ``[duty]`` ones (the posts and ``check_interval`` stay configured)."""

    norms: list[NormSettings] = []
    escalation: dict[str, list[EscalationStep]] = {}
    by: str = ""
    at: datetime | None = None


AUDIT = "audit"
_decoder = msgspec.json.Decoder(Handling)


class DutyError(Exception):
    """An action on an incident's handling that cannot be done: ``status`` says why (404:
    no handling, 409: closed or not possible now)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@dataclass
class _Change:
    events: list[Event]
    requests: list[tuple[str, NotificationRequest]]


def _derived(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "nabat-duty:" + ":".join(parts)))


class DutyService:
    """``hub.duty``."""

    def __init__(
        self,
        settings: DutySettings,
        *,
        journal: Journal,
        publish_many: Callable[[Sequence[Event]], Awaitable[Any]],
        notifications: NotificationService,
        site: str | None = None,
        hub_name: str = "nabat",
    ) -> None:
        self.config = settings
        self.settings = settings
        """The norms in force: ``[duty]`` from the configuration, or what an administrator
        set in the console (journal record, re-read every few seconds by every process)."""
        self._read_at = -1e9
        self.journal = journal
        self.publish_many = publish_many
        self.notifications = notifications
        self.site = site
        self.hub_name = hub_name

    # -- which norm ------------------------------------------------------------------------
    def norm_for(self, type_: str | None, severity: str | None) -> NormSettings | None:
        """The first norm whose types and severities take the incident (empty: any)."""
        for norm in self.settings.norms:
            if norm.types and (type_ or "") not in norm.types:
                continue
            if norm.severities and (severity or "") not in norm.severities:
                continue
            return norm
        return None

    def _norm(self, name: str) -> NormSettings | None:
        return next((n for n in self.settings.norms if n.name == name), None)

    # -- the norms in force ----------------------------------------------------------------
    async def refresh(self, *, force: bool = False) -> DutySettings:
        """The norms in force, re-read when older than ``REFRESH_S``."""
        now = time.monotonic()
        if not force and now - self._read_at < REFRESH_S:
            return self.settings
        stored = await self.journal.get_record(SETTINGS, SETTINGS_KEY)
        if stored is None:
            self.settings = self.config
        else:
            edited = msgspec.json.decode(stored.body, type=EditedNorms)
            self.settings = msgspec.structs.replace(
                self.config, norms=edited.norms, escalation=edited.escalation
            )
        self._read_at = now
        return self.settings

    async def edited(self) -> EditedNorms | None:
        """What an administrator set in place of the configuration's norms, if anything."""
        stored = await self.journal.get_record(SETTINGS, SETTINGS_KEY)
        return None if stored is None else msgspec.json.decode(stored.body, type=EditedNorms)

    async def set_norms(self, edited: EditedNorms | None) -> DutySettings:
        """Put ``edited`` in force (None: back to the configuration's), for every process."""
        if edited is None:
            await self.journal.delete_record(SETTINGS, SETTINGS_KEY)
        else:
            # Validated as a whole: a chain a norm names must exist.
            DutySettings(norms=edited.norms, escalation=edited.escalation)
            await self.journal.put_record(SETTINGS, SETTINGS_KEY, msgspec.json.encode(edited))
        return await self.refresh(force=True)

    # -- reading ---------------------------------------------------------------------------
    async def get(self, incident_id: str) -> Handling | None:
        stored = await self.journal.get_record(COLLECTION, incident_id)
        if stored is None:
            stored = await self.journal.get_record(CLOSED, incident_id)
        return None if stored is None else _decoder.decode(stored.body)

    async def open(self) -> list[Handling]:
        found = []
        async for stored in self.journal.all_records(COLLECTION):
            handling = _decoder.decode(stored.body)
            if handling.closed_at is None:
                found.append(handling)
        return found

    # -- incidents arriving and closing ----------------------------------------------------
    async def subscribe(self, delivery: DeliveryService) -> None:
        spec = SubscriptionSpec(
            id="duty",
            patterns=("incident.created", "incident.closed"),
            order=Order.ORDERED,
            max_attempts=20,
            max_age=86_400.0,
        )
        await delivery.add(spec, self.observe)

    async def observe(self, event: Event) -> DeliveryResult:
        now = datetime.now(UTC)
        site = site_of(event)
        if event.subject is None or (site is not None and site != self.site):
            # Another site's incident (at the region): its own hub runs its clocks.
            return DeliveryResult(status=DeliveryStatus.DELIVERED, at=now, detail="not ours")
        try:
            incident = incident_of(event)
        except ValueError as exc:
            return DeliveryResult(status=DeliveryStatus.REJECTED, at=now, detail=str(exc))
        if event.type == "incident.closed":
            await self._closed(event.subject, event.time)
            return DeliveryResult(status=DeliveryStatus.DELIVERED, at=now)
        await self.refresh()
        norm = self.norm_for(incident.type, event.severity)
        if norm is None:
            return DeliveryResult(status=DeliveryStatus.DELIVERED, at=now, detail="no norm")
        opened = event.time
        clocks = [
            Clock(name=name, due=opened + timedelta(seconds=seconds))
            for name, seconds in (
                (ClockName.ACKNOWLEDGE, norm.acknowledge),
                (ClockName.DISPATCH, norm.dispatch),
                (ClockName.REPORT, norm.report),
            )
            if seconds > 0
        ]
        handling = Handling(
            incident=event.subject,
            norm=norm.name,
            municipality=event.municipality,
            title=incident.title,
            opened_at=opened,
            clocks=clocks,
            checklist=[Step(text=text) for text in norm.checklist],
        )
        if await self.journal.put_record(
            COLLECTION, event.subject, msgspec.json.encode(handling), only_new=True
        ):
            log.info("duty.opened", incident=event.subject, norm=norm.name)
        # Said after the record is kept (the console reads it on this event); its id is the
        # incident's, so a redelivery says it once.
        await self.publish_many(
            [
                self._event(
                    handling,
                    OPENED,
                    {"clocks": {c.name.value: c.due.isoformat() for c in handling.clocks}},
                    id=_derived(event.subject, "opened"),
                )
            ]
        )
        return DeliveryResult(status=DeliveryStatus.DELIVERED, at=now)

    async def _closed(self, incident_id: str, at: datetime) -> None:
        def close(h: Handling) -> _Change | None:
            if h.closed_at is not None:
                return None
            h.closed_at = at
            running = h.escalation
            if running is not None:
                running.stopped_at, running.stopped_by, running.next_at = at, "closed", None
            return _Change([], [])

        closed = await self._change(incident_id, close)
        if closed is not None and closed.closed_at is not None:
            # Out of the open records the sweep reads, kept for a while with the incident.
            await self.journal.put_record(
                CLOSED,
                incident_id,
                msgspec.json.encode(closed),
                expires=closed.closed_at + timedelta(days=CLOSED_KEEP_DAYS),
            )
            await self.journal.delete_record(COLLECTION, incident_id)

    # -- people's actions ------------------------------------------------------------------
    async def acknowledge(self, incident_id: str, *, by: str) -> Handling:
        """Take the incident: the acknowledge clock stops, and an escalation under way
        stops with it (whoever is told has taken it)."""
        now = datetime.now(UTC)

        def take(h: Handling) -> _Change | None:
            self._open_or_fail(h)
            events = []
            clock = h.clock(ClockName.ACKNOWLEDGE)
            if clock is not None and clock.running:
                clock.done_at, clock.done_by = now, by
                events.append(self._event(h, ACKNOWLEDGED, {"by": by, "late": _late(clock)}))
            running = h.escalation
            if running is not None:
                running.stopped_at, running.stopped_by, running.next_at = now, by, None
                events.append(
                    self._event(
                        h,
                        ESCALATION_STOPPED,
                        {"by": by, "chain": running.chain, "steps": len(running.notified)},
                    )
                )
            return _Change(events, []) if events else None

        return await self._act(incident_id, take)

    async def dispatch(self, incident_id: str, services: list[str], *, by: str) -> Handling:
        """Passed to the services (``01``–``04``): that clock stops."""
        return await self._finish(
            incident_id, ClockName.DISPATCH, DISPATCHED, ", ".join(services), by
        )

    async def report(self, incident_id: str, text: str, *, by: str) -> Handling:
        """The first report went out: that clock stops."""
        return await self._finish(incident_id, ClockName.REPORT, REPORTED, text, by)

    async def tick(self, incident_id: str, index: int, *, done: bool, by: str) -> Handling:
        """Tick (or untick) a checklist step, with who and when."""
        now = datetime.now(UTC)

        def mark(h: Handling) -> _Change | None:
            self._open_or_fail(h)
            if not 0 <= index < len(h.checklist):
                raise DutyError(404, f"incident {h.incident}: no checklist step {index}")
            step = h.checklist[index]
            if (step.done_at is not None) == done:
                return None
            step.done_at, step.done_by = (now, by) if done else (None, None)
            data = {"by": by, "step": index, "text": step.text, "done": done}
            return _Change([self._event(h, TICKED, data)], [])

        return await self._act(incident_id, mark)

    async def _finish(
        self, incident_id: str, name: ClockName, kind: str, detail: str, by: str
    ) -> Handling:
        now = datetime.now(UTC)

        def finish(h: Handling) -> _Change | None:
            self._open_or_fail(h)
            clock = h.clock(name)
            if clock is None:
                raise DutyError(409, f"the norm {h.norm} has no {name.value} clock")
            if not clock.running:
                return None
            clock.done_at, clock.done_by, clock.detail = now, by, detail
            data = {"by": by, "detail": detail, "late": _late(clock)}
            events = [self._event(h, kind, data)]
            running = h.escalation
            if running is not None and running.reason is name:
                # What was late is done: the chain it started stops with it.
                running.stopped_at, running.stopped_by, running.next_at = now, by, None
                events.append(
                    self._event(
                        h,
                        ESCALATION_STOPPED,
                        {"by": by, "chain": running.chain, "steps": len(running.notified)},
                    )
                )
            return _Change(events, [])

        return await self._act(incident_id, finish)

    @staticmethod
    def _open_or_fail(h: Handling) -> None:
        if h.closed_at is not None:
            raise DutyError(409, f"incident {h.incident} is closed")

    async def _act(
        self, incident_id: str, change: Callable[[Handling], _Change | None]
    ) -> Handling:
        handling = await self._change(incident_id, change)
        if handling is None:
            if await self.journal.get_record(CLOSED, incident_id) is not None:
                raise DutyError(409, f"incident {incident_id} is closed")
            raise DutyError(404, f"incident {incident_id!r} has no handling norm")
        return handling

    # -- the clocks ------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        # Every process may sweep: each change is a compare-and-swap.
        return [
            Job(id="duty-clocks", func=self.sweep, every=self.config.check_interval, shared=True)
        ]

    async def sweep(self, now: datetime | None = None) -> None:
        """Mark the clocks that ran out, take the escalation steps that are due."""
        now = now or datetime.now(UTC)
        await self.refresh()
        for handling in await self.open():
            if self._due(handling, now):
                try:
                    await self._change(handling.incident, lambda h: self._advance(h, now))
                except Exception as exc:  # one record's trouble never stops the others
                    log.error("duty.sweep_failed", incident=handling.incident, error=repr(exc))

    @staticmethod
    def _due(h: Handling, now: datetime) -> bool:
        if h.closed_at is not None:
            return False
        if any(c.running and c.missed_at is None and c.due <= now for c in h.clocks):
            return True
        running = h.escalation
        return running is not None and running.next_at is not None and running.next_at <= now

    def _advance(self, h: Handling, now: datetime) -> _Change | None:
        if h.closed_at is not None:
            return None
        norm = self._norm(h.norm)
        events: list[Event] = []
        requests: list[tuple[str, NotificationRequest]] = []
        for clock in h.clocks:
            if clock.running and clock.missed_at is None and clock.due <= now:
                clock.missed_at = now
                events.append(
                    self._event(
                        h,
                        MISSED,
                        {"clock": clock.name.value, "due": clock.due.isoformat(), "norm": h.norm},
                        id=_derived(h.incident, "missed", clock.name.value),
                        severity=Severity.SEVERE,
                    )
                )
                log.warning("duty.norm_missed", incident=h.incident, clock=clock.name.value)
                chain = norm.escalation if norm is not None else None
                steps = self.settings.escalation.get(chain or "", [])
                if h.escalation is None and steps:
                    h.escalations.append(
                        Escalation(
                            chain=chain or "",
                            reason=clock.name,
                            started_at=now,
                            next_at=now + timedelta(seconds=steps[0].after),
                        )
                    )
        running = h.escalation
        steps = self.settings.escalation.get(running.chain, []) if running else []
        while (
            running is not None
            and running.next_at is not None
            and running.next_at <= now
            and running.next_step < len(steps)
        ):
            index = running.next_step
            step = steps[index]
            # From the record as it was, not the clock: a process racing this one derives
            # the same ids, so whoever loses the swap has published nothing new.
            key = _derived(h.incident, "escalation", str(len(h.escalations)), "step", str(index))
            fields = {
                "incident": h.incident,
                "title": h.title or h.incident,
                "municipality": h.municipality or "",
                "norm": h.norm,
                "step": step.name,
                "hub": self.hub_name,
                "opened": h.opened_at.isoformat(timespec="seconds"),
            }
            requests.append(
                (
                    key,
                    NotificationRequest(
                        notifier=step.notify,
                        recipients=list(step.recipients),
                        template="incident_escalation",
                        fields=fields,
                        localized={
                            "clock": f"console.duty.clock.{running.reason.value}",
                            "action": f"notification.duty_action.{running.reason.value}",
                        },
                        severity=Severity.SEVERE,
                        cause=h.incident,
                    ),
                )
            )
            running.notified.append(
                Notified(
                    step=index,
                    name=step.name,
                    at=now,
                    notifier=step.notify,
                    recipients=list(step.recipients),
                    request=key,
                )
            )
            events.append(
                self._event(
                    h,
                    ESCALATED,
                    {
                        "step": index,
                        "name": step.name,
                        "notifier": step.notify,
                        "recipients": list(step.recipients),
                        "request": key,
                        "clock": running.reason.value,
                    },
                    id=_derived(key, "event"),
                    severity=Severity.SEVERE,
                )
            )
            log.warning("duty.escalated", incident=h.incident, step=index, name=step.name)
            running.next_step += 1
            running.next_at = (
                now + timedelta(seconds=steps[running.next_step].after)
                if running.next_step < len(steps)
                else None
            )
        return _Change(events, requests) if events or requests else None

    # -- one change, safe against other processes ------------------------------------------
    async def _change(
        self, incident_id: str, change: Callable[[Handling], _Change | None]
    ) -> Handling | None:
        """Apply ``change`` to the record by compare-and-swap: what it publishes goes out
        first (ids derived, so a lost race repeats nothing), then the record is swapped;
        a lost race runs ``change`` again on the fresh record."""
        for _ in range(50):
            stored = await self.journal.get_record(COLLECTION, incident_id)
            if stored is None:
                return None
            handling = _decoder.decode(stored.body)
            done = change(handling)
            if done is None:
                return handling
            handling.version += 1
            for key, request in done.requests:
                await self.notifications.request(
                    request, key=key, municipality=handling.municipality, correlationid=incident_id
                )
            if done.events:
                await self.publish_many(done.events)
            if await self.journal.swap_record(
                COLLECTION, incident_id, stored.body, msgspec.json.encode(handling)
            ):
                await self._audit(done.events)
                return handling
        raise DutyError(409, f"incident {incident_id}: too many concurrent changes")

    def _event(
        self,
        h: Handling,
        kind: str,
        data: dict[str, Any],
        *,
        id: str | None = None,
        severity: Severity = Severity.INFO,
    ) -> Event:
        return Event(
            id=id or uuid7(),
            type=kind,
            source=SOURCE,
            subject=h.incident,
            municipality=h.municipality,
            correlationid=h.incident,
            severity=severity,
            data={"incident": h.incident, "norm": h.norm, **data},
        )

    async def _audit(self, events: list[Event]) -> None:
        """Every step of handling in the audit log, beside the API's entries: people's
        actions by them, the hub's escalations by ``hub:duty``."""
        rows = []
        for event in events:
            data = event.data if isinstance(event.data, dict) else {}
            by = str(data.get("by") or "hub:duty")
            detail = {
                k: v if isinstance(v, str | int | bool) else str(v)
                for k, v in data.items()
                if k != "by" and v is not None
            }
            entry = {
                "id": uuid7(),
                "time": datetime.now(UTC).isoformat(),
                "actor": by,
                "action": event.type,
                "detail": detail,
            }
            rows.append((entry["id"], msgspec.json.encode(entry), None))
        if rows:
            try:
                await self.journal.put_records(AUDIT, rows)
            except Exception as exc:  # the events are kept; the audit copy is retried never
                log.error("duty.audit_failed", error=repr(exc))


def _late(clock: Clock) -> bool:
    return clock.done_at is not None and clock.done_at > clock.due
