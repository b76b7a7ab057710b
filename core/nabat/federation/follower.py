"""The following side (the region): every followed site's events into this hub's journal.

The hub's JetStream server *sources* each followed site's stream (``EVENTS_<site>``, in the
site's JetStream domain, across the leaf link) into one stream of its own,
``FOLLOWED_<site>`` (no subjects of its own: a regional stream whose subjects matched a
site's publishes would store them a second time over the leaf link). NATS does the
store-and-forward: a site cut off keeps its events, and the source resumes by itself when
the link returns, in order.

A durable pull consumer reads the followed stream in batches; each batch is appended to the
journal in one durable write, **idempotently by (source, id)** — a redelivered message (this
hub killed between the append and the ack) is not stored or fanned out twice — and only then
acknowledged. Each event keeps its ``site`` (the extension attribute its uplink set). A
message that is not a valid event is logged and terminated (never redelivered in a loop); it
stays in the site's stream for an operator to read.

Every :data:`LINK_CHECK_S` the hub asks each followed site's JetStream (``$JS.<site>.API``,
across the leaf link) about its stream: a site that does not answer is **cut off** — said
with a ``federation.site.unreachable`` event, and ``federation.site.reachable`` when it
answers again — not taken for a site with nothing to report.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..config.model import FederationSettings
from ..events import Event, EventError, decode_event
from ..logs import get_logger
from ..store import Appended
from .connection import RECONNECT_S, Connection
from .naming import site_of, stream_name, with_site

__all__ = ["BATCH", "LINK_CHECK_S", "Follower", "followed_stream"]

log = get_logger("nabat.federation")

LINK_CHECK_S = 5.0
"""How often each followed site is asked whether it is reachable."""
LINK_TIMEOUT_S = 2.0
SOURCE = "/nabat/federation"
BATCH = 256
"""Messages fetched, appended and acknowledged at once."""
SOURCE_DUPLICATE_WINDOW_S = 1.0
"""The followed stream's own window: short, because a sourced message whose id is still in
it is not skipped but blocks that site's whole source (nats-server 2.9, docs/federation.md);
deduplication is the sites' streams' (120 s) and the journal's."""


def followed_stream(site: str) -> str:
    return f"FOLLOWED_{site}"


class Follower:
    """Built by the hub when ``[federation] follow`` lists sites. ``append`` is the hub's
    :meth:`~nabat.publishing.Publisher.publish_many`."""

    def __init__(
        self,
        settings: FederationSettings,
        *,
        site: str,
        hub_name: str,
        append: Callable[[Sequence[Event]], Awaitable[list[Appended]]],
        publish: Callable[[Event], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.site = site
        self.append = append
        self.publish = publish
        self.reachable: dict[str, bool] = {}
        """Each followed site: whether it answered the last check (absent: not asked yet)."""
        self.connection = Connection(settings, name=f"nabat {hub_name} ({site}) follow")
        self.received = 0
        self.stored = 0
        self.rejected = 0
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def stream(self) -> str:
        return followed_stream(self.site)

    @property
    def durable(self) -> str:
        return f"nabat-{self.site}"

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("federation-follow")

    async def _prepare(self, js: Any) -> None:
        from nats.js.api import (
            AckPolicy,
            ConsumerConfig,
            DeliverPolicy,
            ExternalStream,
            RetentionPolicy,
            StorageType,
            StreamConfig,
            StreamSource,
        )
        from nats.js.errors import NotFoundError

        sources = [
            StreamSource(
                name=stream_name(followed),
                external=ExternalStream(
                    api=f"$JS.{followed}.API", deliver=f"deliver.{self.site}.{followed}"
                ),
            )
            for followed in self.settings.follow
        ]
        config = StreamConfig(
            name=self.stream,
            sources=sources,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.settings.stream_max_age_days * 86_400.0,
            max_bytes=int(self.settings.stream_max_mb * 1024 * 1024),
            duplicate_window=SOURCE_DUPLICATE_WINDOW_S,
            description=f"Nabat {self.site}: the events of the sites it follows",
        )
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(config)
            log.info("federation.stream_created", stream=self.stream, follows=self.settings.follow)
        else:
            await js.update_stream(config)
        await js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                max_ack_pending=BATCH * 8,
                ack_wait=60.0,
            ),
        )

    async def _run(self) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        await self.connection.open(self._prepare)
        js = self.connection.js
        self._watch = asyncio.ensure_future(self._watch_sites())
        self._watch.set_name("federation-sites")
        subscription = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        while True:
            try:
                messages = await subscription.fetch(BATCH, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                continue  # nothing new
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away: nats-py reconnects; wait and ask again
                log.warning("federation.fetch_failed", error=str(exc) or repr(exc))
                await asyncio.sleep(RECONNECT_S)
                continue
            await self._take(messages)

    async def _take(self, messages: list[Any]) -> None:
        self.received += len(messages)
        events: list[Event] = []
        kept: list[Any] = []
        for message in messages:
            try:
                event = decode_event(message.data)
            except EventError as exc:
                self.rejected += 1
                log.error(
                    "federation.bad_message",
                    subject=message.subject,
                    stream_seq=message.metadata.sequence.stream,
                    error=str(exc),
                )
                await message.term()
                continue
            site = _site_of_subject(message.subject)
            origin = _origin_site(message.headers)
            claimed = site_of(event)
            if (
                site is None
                or site not in self.settings.follow
                or (origin is not None and origin != site)
                or (claimed is not None and claimed != site)
            ):
                # A site speaking for another (a forged stamp or subject): not stored.
                self.rejected += 1
                log.error(
                    "federation.foreign_claim",
                    subject=message.subject,
                    origin=origin,
                    claimed=claimed,
                    source=event.source,
                    id=event.id,
                )
                await message.term()
                continue
            if claimed is None:
                event = with_site(event, site)  # published without the stamp: the subject says
            events.append(event)
            kept.append(message)
        if events:
            while True:
                try:
                    appended = await self.append(events)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the journal unreachable: keep the batch, retry
                    log.error("federation.append_failed", error=repr(exc), events=len(events))
                    await asyncio.sleep(RECONNECT_S)
            self.stored += sum(1 for a in appended if a.new)
        for message in kept:
            with contextlib.suppress(Exception):  # an ack lost: the redelivery is a duplicate
                await message.ack()

    async def _watch_sites(self) -> None:
        while True:
            for site in self.settings.follow:
                up = await self._answers(site)
                if self.reachable.get(site) == up or (site not in self.reachable and up):
                    self.reachable[site] = up
                    continue  # no change (a site that answers at start is no news)
                self.reachable[site] = up
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
        from ..events import Severity

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
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.connection.close()


def _origin_site(headers: dict[str, str] | None) -> str | None:
    """The site whose stream a sourced message came from: JetStream's ``Nats-Stream-Source``
    header names the origin stream (``EVENTS_<site>``) first."""
    value = (headers or {}).get("Nats-Stream-Source")
    if not value:
        return None
    stream = value.split(" ", 1)[0].split(":", 1)[0]
    prefix = stream_name("")
    return stream[len(prefix) :] if stream.startswith(prefix) else stream


def _site_of_subject(subject: str) -> str | None:
    """``nabat.<site>.<type>`` → ``<site>``."""
    parts = subject.split(".", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "nabat" else None
