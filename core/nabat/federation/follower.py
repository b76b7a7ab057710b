"""The following side (the region): every followed site's events into this hub's journal.

For each followed site the hub's JetStream server *sources* the site's stream
(``EVENTS_<site>``, in the site's JetStream domain, across the leaf link) into a stream of its
own, ``FOLLOWED_<this site>_<site>``: no subjects of its own (a regional stream whose subjects
matched a site's publishes would store them a second time over the leaf link), its own limits
(one site flooding cannot evict another's backlog), and — what the follower trusts — *where*
a message was read says which site it came from, not anything in the message. NATS does the
store-and-forward: a site cut off keeps its events, and the source resumes by itself.

A durable pull consumer per site reads in batches; each batch is appended to the journal in
one durable write, idempotently by (source, id), and only then acknowledged (a redelivered
message is not stored or fanned out twice). What the region stores is the site's record, kept
apart from the region's own:

* the event's ``site`` is the stream's site (a stamp or subject naming another is refused);
* its ``source`` is namespaced, ``/nabat/sites/<site>/…``: two districts' cameras with the
  same id, or events two districts got from one upstream, stay two; and the region's own
  state kept by source (camera health, job claims) cannot be written by a site;
* the hub's own families (``hub.>``, ``federation.>``) are refused from a site;
* rules, incidents and recordings act on their own site's events only
  (:func:`nabat.events.site_of`).

A message that is not a valid event, or is refused, is logged and terminated (never
redelivered in a loop); it stays in the site's stream for an operator to read. A batch the
journal refuses is retried, then split, so one bad event cannot hold a site up for good.

Every :data:`LINK_CHECK_S` the hub asks each followed site's JetStream (``$JS.<site>.API``,
across the leaf link) about its stream: a site that does not answer is **cut off** — said
with a ``federation.site.unreachable`` event, and ``federation.site.reachable`` when it
answers again — not taken for a site with nothing to report. While this hub's own NATS is
down, nothing is said of the sites.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from ..config.model import FederationSettings
from ..delivery import process_identity
from ..events import SITE, Event, EventError, EventTypes, Severity, decode_event, site_of
from ..logs import get_logger
from ..store import Appended, Journal
from ..subjects import matches
from .connection import RECONNECT_S, Connection, add_durable, consume, ensure_stream
from .naming import stream_name, subject_for

__all__ = ["BATCH", "LINK_CHECK_S", "REFUSED_FAMILIES", "Follower", "followed_stream"]

log = get_logger("nabat.federation")

LINK_CHECK_S = 5.0
"""How often each followed site is asked whether it is reachable."""
LINK_TIMEOUT_S = 2.0
SOURCE = "/nabat/federation"
BATCH = 256
"""Messages fetched, appended and acknowledged at once."""
APPEND_TRIES = 3
"""A batch the journal refuses this often is split: its events are tried one by one."""
SOURCE_DUPLICATE_WINDOW_S = 1.0
"""The followed stream's own window: short, because a sourced message whose id is still in
it is not skipped but blocks the site's source (nats-server 2.9, docs/federation.md);
deduplication is the site's stream's (120 s) and the journal's."""
REFUSED_FAMILIES = ("hub.>", "federation.>")
"""What a site may not send: the hub's own bookkeeping (units, job claims) and the
federation's own reports."""


LEASES = "federation-leases"
"""Which process follows which site (key the site, body the process), as recording leases."""


def followed_stream(follower: str, site: str) -> str:
    return f"FOLLOWED_{follower}_{site}"


def namespaced(site: str, source: str) -> str:
    """The region's name for a site's source: ``/nabat/sites/<site>/<source>``."""
    return f"/nabat/sites/{site}/{source.lstrip('/')}"


class Follower:
    """Built by the hub when ``[federation] follow`` lists sites. ``append`` is the hub's
    :meth:`~nabat.publishing.Publisher.publish_many`, ``publish`` its ``publish``."""

    def __init__(
        self,
        settings: FederationSettings,
        *,
        site: str,
        hub_name: str,
        append: Callable[[Sequence[Event]], Awaitable[list[Appended]]],
        publish: Callable[[Event], Awaitable[None]],
        types: EventTypes | None = None,
        journal: Journal | None = None,
        lease_ttl: float = 15.0,
    ) -> None:
        self.settings = settings
        self.site = site
        self.append = append
        self.publish = publish
        self.types = types
        self.journal = journal
        """Where the sites' leases are kept (None: this process follows every site alone)."""
        self.lease_ttl = lease_ttl
        self.owner = process_identity()
        self.leases: set[str] = set()
        """The followed sites this process consumes now (it holds their lease)."""
        self.connection = Connection(settings, name=f"nabat {hub_name} ({site}) follow")
        self.received = 0
        self.stored = 0
        self.rejected = 0
        self.last_event_at: dict[str, datetime] = {}
        """When each site's last event was stored here (since this hub started)."""
        self.stored_by_site: dict[str, int] = {}
        self.reachable: dict[str, bool] = {}
        """Each followed site: whether it answered the last check (absent: not asked yet)."""
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def durable(self) -> str:
        return f"nabat-{self.site}"

    def start(self) -> None:
        task = asyncio.ensure_future(self._run())
        task.set_name("federation-follow")
        self._tasks.append(task)

    async def _prepare(self, js: Any) -> None:
        for followed in self.settings.follow:
            await self._prepare_site(js, followed)

    async def _prepare_site(self, js: Any, followed: str) -> None:
        from nats.js.api import (
            ExternalStream,
            RetentionPolicy,
            StorageType,
            StreamConfig,
            StreamSource,
        )

        name = followed_stream(self.site, followed)
        config = StreamConfig(
            name=name,
            sources=[
                StreamSource(
                    name=stream_name(followed),
                    external=ExternalStream(
                        api=f"$JS.{followed}.API", deliver=f"deliver.{self.site}.{followed}"
                    ),
                )
            ],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.settings.stream_max_age_days * 86_400.0,
            max_bytes=int(self.settings.stream_max_mb * 1024 * 1024),
            duplicate_window=SOURCE_DUPLICATE_WINDOW_S,
            description=f"Nabat {self.site}: the events of site {followed}",
        )
        await ensure_stream(js, config, site=followed)
        # One batch outstanding at most: a process taking over after another died gets that
        # one's unacknowledged batch again first (after ack_wait), never later ones before it.
        await add_durable(js, name, self.durable, max_ack_pending=BATCH)

    async def _run(self) -> None:
        await self.connection.open(self._prepare)
        for followed in self.settings.follow:
            task = asyncio.ensure_future(self._follow(followed))
            task.set_name(f"federation-follow:{followed}")
            self._tasks.append(task)
        watch = asyncio.ensure_future(self._watch_sites())
        watch.set_name("federation-sites")
        self._tasks.append(watch)

    async def _follow(self, followed: str) -> None:
        """One site's events, until the hub stops, while this process holds the site's lease
        (several regional hub processes on one journal: one consumes each site, so its
        events go into the journal in the site's order)."""
        while True:
            if not await self._lease(followed):
                await asyncio.sleep(self.lease_ttl / 3)
                continue
            reader = asyncio.ensure_future(
                consume(
                    self.connection,
                    stream=followed_stream(self.site, followed),
                    durable=self.durable,
                    batch=BATCH,
                    prepare=lambda js: self._prepare_site(js, followed),
                    handle=lambda messages: self._take(followed, messages),
                    site=followed,
                )
            )
            try:
                while not reader.done():
                    await asyncio.sleep(self.lease_ttl / 3)
                    if await self._lease(followed) is False:
                        log.warning("federation.lease_lost", site=followed, owner=self.owner)
                        break
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def _lease(self, followed: str, give_up: bool = False) -> bool | None:
        """Take or renew the lease on following ``followed`` (or give it up); None when the
        journal did not answer (then nobody can take it over, and appends fail anyway)."""
        if self.journal is None:
            self.leases.add(followed)
            return True
        seconds = 0.0 if give_up else self.lease_ttl
        try:
            held = await self.journal.put_record(
                LEASES,
                followed,
                self.owner.encode(),
                expires=datetime.now(UTC) + timedelta(seconds=seconds),
                claim=True,
            )
        except Exception as exc:
            log.warning("federation.lease_unknown", site=followed, error=str(exc))
            return None
        if held and not give_up:
            if followed not in self.leases:
                log.info("federation.lease_taken", site=followed, owner=self.owner)
            self.leases.add(followed)
        else:
            self.leases.discard(followed)
        return held

    def _accept(self, followed: str, message: Any) -> Event | None:
        """The region's record of one message from ``followed``'s stream, or None (refused,
        said in the log)."""
        try:
            event = decode_event(message.data, self.types)
        except EventError as exc:
            self._refuse(followed, message, f"not a valid event: {exc}")
            return None
        claimed = site_of(event)
        if message.subject != subject_for(followed, event.type):
            self._refuse(followed, message, "its subject is not its site's and type's", event)
        elif claimed is not None and claimed != followed:
            self._refuse(followed, message, f"it claims site {claimed!r}", event)
        elif any(matches(family, event.type) for family in REFUSED_FAMILIES):
            self._refuse(followed, message, "the hub's own family", event)
        else:
            return msgspec.structs.replace(
                event,
                source=namespaced(followed, event.source),
                extensions={**(event.extensions or {}), SITE: followed},
            )
        return None

    def _refuse(self, followed: str, message: Any, why: str, event: Event | None = None) -> None:
        self.rejected += 1
        log.error(
            "federation.refused",
            site=followed,
            subject=message.subject,
            reason=why,
            source=event.source if event else None,
            id=event.id if event else None,
        )

    async def _take(self, followed: str, messages: list[Any]) -> None:
        self.received += len(messages)
        events: list[Event] = []
        kept: list[Any] = []
        for message in messages:
            event = self._accept(followed, message)
            if event is None:
                with contextlib.suppress(Exception):
                    await message.term()  # not redelivered; it stays in the site's stream
                continue
            events.append(event)
            kept.append(message)
        if events:
            stored = await self._store(followed, events, kept)
            self.stored += stored
            self.stored_by_site[followed] = self.stored_by_site.get(followed, 0) + stored
            self.last_event_at[followed] = datetime.now(UTC)
        for message in kept:
            with contextlib.suppress(Exception):  # an ack lost: the redelivery is a duplicate
                await message.ack()

    async def _store(self, followed: str, events: list[Event], messages: list[Any]) -> int:
        """Append ``events`` (the new ones counted). A batch the journal keeps refusing is
        tried event by event: one it refuses while others of the batch go in is refused for
        good (terminated, said) and dropped from ``messages``, so the site goes on. When
        nothing goes in, the journal itself is failing: the batch is raised back, to be
        read again later (that site waits; nothing is dropped)."""
        for attempt in range(APPEND_TRIES):
            try:
                return sum(1 for a in await self.append(events) if a.new)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the journal unreachable, or one event it refuses
                log.error(
                    "federation.append_failed",
                    site=followed,
                    events=len(events),
                    attempt=attempt + 1,
                    error=repr(exc),
                )
                await asyncio.sleep(RECONNECT_S / 4)
        if len(events) == 1:
            raise RuntimeError("the journal refuses the event")
        stored, went_in, refused = 0, 0, []
        for event, message in zip(events, messages, strict=True):
            try:
                stored += sum(1 for a in await self.append([event]) if a.new)
                went_in += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                refused.append((event, message))
        if not went_in:
            raise RuntimeError("the journal refuses every event of the batch")
        for event, message in refused:
            self._refuse(followed, message, "the journal refuses it", event)
            with contextlib.suppress(Exception):
                await message.term()
            messages.remove(message)
        return stored

    # -- reachability -----------------------------------------------------------------------
    async def _watch_sites(self) -> None:
        while True:
            if self.connection.connected:  # our own NATS down says nothing of the sites
                answers = await asyncio.gather(
                    *(self._answers(site) for site in self.settings.follow)
                )
                for site, up in zip(self.settings.follow, answers, strict=True):
                    before = self.reachable.get(site)
                    self.reachable[site] = up
                    if before is None and up:
                        continue  # a site that answers at start is no news
                    if before != up and site in self.leases:  # said once, by its follower
                        await self._say(site, up)
            await asyncio.sleep(LINK_CHECK_S)

    async def _answers(self, site: str) -> bool:
        nc = self.connection.nc
        if nc is None or not nc.is_connected:
            return False
        try:
            js = nc.jetstream(domain=site, timeout=LINK_TIMEOUT_S)
            await js.stream_info(stream_name(site))
        except asyncio.CancelledError:
            raise
        except Exception:  # no answer across the leaf link (or no stream yet): cut off
            return False
        return True

    async def _say(self, site: str, up: bool) -> None:
        if up:
            log.info("federation.site_reachable", site=site)
        else:
            log.warning("federation.site_cut_off", site=site)
        try:
            await self.publish(
                Event(
                    type="federation.site.reachable" if up else "federation.site.unreachable",
                    source=SOURCE,
                    subject=site,
                    severity=Severity.INFO if up else Severity.SEVERE,
                    data={"site": site, "reachable": up},
                )
            )
        except Exception as exc:  # the journal failing: the log has it
            log.error("federation.event_failed", site=site, error=repr(exc))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.connection.close()
        for followed in list(self.leases):  # another process may follow them at once
            await self._lease(followed, give_up=True)
