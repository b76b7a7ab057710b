"""Journal-first publishing: an event is durable before anyone hears of it.

:meth:`Publisher.publish` appends to the journal, wakes durable delivery and live readers, then
fans the event out on the in-process bus. Several hub processes may share one journal: the
:meth:`tail` loop brings what the others appended onto this process's bus (this process's own
events, remembered by id until the tailer passes them, are skipped without reading their
bodies). :meth:`claim_job_slot` lets exactly one process run each scheduled slot of a job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .bus import Bus
from .delivery import DeliveryService
from .events import Event
from .ids import uuid7
from .logs import get_logger
from .pulse import Pulse
from .store import Appended, Journal

__all__ = ["Publisher"]

log = get_logger("nabat.hub")
_TAIL_PAGE = 5000


class Publisher:
    def __init__(self, journal: Journal, delivery: DeliveryService, *, poll: float) -> None:
        self.journal = journal
        self.delivery = delivery
        self.poll = poll
        self.bus: Bus | None = None
        """Set when the hub starts."""
        self.journal_open = False
        self.appended = Pulse()
        """Pulsed whenever events reach the journal (here or, via the tailer, elsewhere):
        live readers (the API's event stream) wait on it instead of polling."""
        self.tail_from = 0
        self._local_ids: set[str] = set()  # appended here, not yet passed by the tailer

    async def publish(self, event: Event) -> None:
        """Append ``event`` to the journal (durable once this returns), then fan it out."""
        if self.bus is None:
            raise RuntimeError("the hub has not been started")
        if self.journal_open:
            self._local_ids.add(event.id)  # before the append: the tailer may see it first
            try:
                await self.journal.append((event,))
            except BaseException:
                self._local_ids.discard(event.id)
                raise
            self.delivery.notify()
            self.appended.pulse()
        await self.bus.publish(event)

    async def publish_if_started(self, event: Event) -> None:
        """For the supervisor: states reported before the bus exists are not published."""
        if self.bus is not None:
            await self.publish(event)

    async def publish_many(self, events: Sequence[Event]) -> list[Appended]:
        """Append ``events`` in one durable write, then fan out those that are new: an event
        whose (source, id) was already in the journal (a client's retry) is not fanned out
        again. Returns each event's place in the journal and whether it is new."""
        if self.bus is None or not self.journal_open:
            raise RuntimeError("the hub has not been started")
        ids = [e.id for e in events]
        self._local_ids.update(ids)
        try:
            appended = await self.journal.append_checked(events)
        except BaseException:
            self._local_ids.difference_update(ids)
            raise
        self.delivery.notify()
        self.appended.pulse()
        for event, place in zip(events, appended, strict=True):
            if place.new:
                await self.bus.publish(event)
            else:
                self._local_ids.discard(event.id)
        return appended

    async def claim_job_slot(self, job_id: str, slot: int) -> bool:
        """Claim one scheduled run for this process: the journal keeps one event per
        (source, id), so of several processes claiming the same slot exactly one's is stored."""
        if not self.journal_open:
            return True
        claim = Event(
            type="hub.job.claimed",
            source=f"/nabat/jobs/{job_id}",
            id=f"{job_id}@{slot}",
            subject=job_id,
            data={"job": job_id, "slot": slot, "owner": self.delivery.owner, "run": uuid7()},
        )
        await self.journal.append((claim,))
        stored = await self.journal.get(claim.source, claim.id)
        # Ours only if our very claim was stored: the same process may reach one slot twice
        # (a late run lands in the next slot, then that slot's own run comes).
        return (
            stored is not None
            and stored.event.type == claim.type
            and isinstance(stored.event.data, dict)
            and stored.event.data.get("run") == claim.data["run"]
        )

    async def tail(self) -> None:
        """Bring events appended by other hub processes on this journal onto the local bus
        (checked every ``poll`` seconds), so live listeners see them too. Only ids are read
        first: what this process wrote itself is skipped without reading its body."""
        after = self.tail_from
        while True:
            await asyncio.sleep(self.poll)
            try:
                while True:
                    rows = await self.journal.ids_after(after, _TAIL_PAGE)
                    foreign: list[int] = []
                    for seq, event_id in rows:
                        if event_id in self._local_ids:
                            self._local_ids.discard(event_id)
                        else:
                            foreign.append(seq)
                    if foreign and self.bus is not None:
                        for stored in await self.journal.events_at(foreign):
                            await self.bus.publish(stored.event)
                        self.delivery.notify()
                        self.appended.pulse()
                    if rows:
                        after = rows[-1][0]
                    if len(rows) < _TAIL_PAGE:
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                quiet = getattr(exc, "outage", False)  # told once, by the journal's health
                (log.debug if quiet else log.warning)("journal.tail_failed", error=repr(exc))
