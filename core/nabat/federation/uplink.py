"""The up-path: this site's events to its JetStream stream, nothing accepted ever lost.

The events ``[federation] up`` selects are read from the journal by a durable delivery
subscription (:mod:`nabat.delivery`), ordered, and published to ``nabat.<site>.<type>`` with
``Nats-Msg-Id`` = the event's identity; the subscription's cursor moves only after JetStream
acknowledged the event (the site's stream holds it, on the site's own leaf node, whatever
the WAN does). While NATS cannot take it — the leaf node down, no answer in time — the
target says :class:`~nabat.delivery.NotReady`: the cursor waits, no attempt is counted,
nothing is dead-lettered. A republished event (the hub killed between JetStream's
acknowledgement and the cursor's write) is dropped by the stream's duplicate window, or — when
it comes later than that — by the following hub's journal ((source, id)). An event that can
never be sent (larger than NATS's ``max_payload``) is dead-lettered, seen with
``nabat deliveries``, instead of holding back every later one.

The site's stream (``EVENTS_<site>``, subjects ``nabat.<site>.>``) is created with
*limits* retention — the only kind the region can source without losing messages — sized by
``stream_max_age_days`` and ``stream_max_mb``, for the longest cut it must outlast.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from ..config.model import FederationSettings
from ..delivery import DeliveryService, NotReady
from ..events import Event, encode_event
from ..interfaces import DeliveryResult, DeliveryStatus
from ..logs import get_logger
from ..store.delivery import Order, SubscriptionSpec
from .connection import Connection, ensure_stream
from .naming import msg_id, site_of, stream_name, subject_for, subjects_of, with_site

__all__ = ["DUPLICATE_WINDOW_S", "Uplink"]

log = get_logger("nabat.federation")

MESSAGE_TOO_LARGE = 10054
"""JetStream's error code for a message over the stream's ``max_msg_size``."""
RECREATE_S = 10.0
DUPLICATE_WINDOW_S = 120.0
"""How long the site's stream remembers a message id: longer than any redelivery after a
crash (the delivery cursor is written at least every second)."""


class Uplink:
    """Built by the hub when ``[federation] servers``, ``up`` and ``[hub] site`` are set."""

    def __init__(self, settings: FederationSettings, *, site: str, hub_name: str) -> None:
        self.settings = settings
        self.site = site
        self.connection = Connection(settings, name=f"nabat {hub_name} ({site}) up")
        self.published = 0
        self._task: asyncio.Task[None] | None = None
        self._recreated = -RECREATE_S

    @property
    def patterns(self) -> tuple[str, ...]:
        """``[federation] up``, the answers to the region's commands when it sends any, and
        the site's district reports."""
        up = tuple(self.settings.up)
        if self.settings.commands_from and "command.>" not in up:
            up += ("command.>",)
        if "site.>" not in up:
            up += ("site.>",)  # the site's district reports
        return up

    @property
    def subscription_id(self) -> str:
        return f"federation-up:{self.site}"

    async def start(self, delivery: DeliveryService) -> None:
        """Subscribe to the journal and connect in the background: a NATS that is down at
        start only makes the cursor wait."""
        self._task = asyncio.ensure_future(self.connection.open(self._ensure_stream))
        self._task.set_name("federation-up-connect")
        spec = SubscriptionSpec(
            id=self.subscription_id,
            patterns=self.patterns,
            order=Order.ORDERED,
            max_attempts=None,  # nothing accepted is ever dropped: NATS trouble only waits
            max_age=None,
            backoff_initial=0.5,
            backoff_max=5.0,
            timeout=self.settings.publish_timeout + 1.0,
        )
        await delivery.add(spec, self.publish)

    async def _ensure_stream(self, js: Any) -> None:
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

        config = StreamConfig(
            name=stream_name(self.site),
            subjects=[subjects_of(self.site)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.settings.stream_max_age_days * 86_400.0,
            max_bytes=int(self.settings.stream_max_mb * 1024 * 1024),
            duplicate_window=DUPLICATE_WINDOW_S,
            description=f"Nabat site {self.site}: events for the region",
        )
        await ensure_stream(js, config)

    async def publish(self, event: Event) -> DeliveryResult:
        """The delivery target: delivered once the site's stream holds the event."""
        from nats.errors import (
            ConnectionClosedError,
            MaxPayloadError,
            NoRespondersError,
            OutboundBufferLimitError,
        )
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.errors import APIError, NoStreamResponseError

        now = datetime.now(UTC)
        came_from = site_of(event)
        if came_from is not None and came_from != self.site:
            # Another site's event this hub follows: its own site sent it up already.
            return DeliveryResult(status=DeliveryStatus.DELIVERED, at=now, detail="not ours")
        js = self.connection.js
        if js is None or not self.connection.connected:
            raise NotReady("not connected to NATS")
        try:
            ack = await js.publish(
                subject_for(self.site, event.type),
                encode_event(with_site(event, self.site)),
                timeout=self.settings.publish_timeout,
                headers={"Nats-Msg-Id": msg_id(event)},
            )
        except MaxPayloadError as exc:  # never fits: a dead letter an operator sees, not a stall
            return DeliveryResult(
                status=DeliveryStatus.REJECTED,
                at=now,
                detail=f"larger than NATS's max_payload ({exc!r}); not sent to the region",
            )
        except NoStreamResponseError as exc:  # the stream is gone (a wiped store): make it again
            await self._recreate()
            raise NotReady(f"the site's stream did not answer: {exc!r}") from exc
        except (
            NatsTimeout,
            NoRespondersError,
            ConnectionClosedError,
            OutboundBufferLimitError,
            TimeoutError,
        ) as exc:
            raise NotReady(f"NATS did not take the event: {exc!r}") from exc
        except APIError as exc:
            if exc.err_code == MESSAGE_TOO_LARGE:
                return DeliveryResult(status=DeliveryStatus.REJECTED, at=now, detail=str(exc))
            if exc.code in (404, 503):  # no stream, JetStream not ready: wait, make it again
                await self._recreate()
                raise NotReady(f"JetStream: {exc}") from exc
            # Anything else is retried (with backoff, counted, visible), never dropped.
            return DeliveryResult(status=DeliveryStatus.RETRY, at=now, detail=f"JetStream: {exc}")
        self.published += 1
        return DeliveryResult(
            status=DeliveryStatus.DELIVERED,
            at=now,
            remote_id=f"{ack.stream}:{ack.seq}",
            detail="duplicate" if ack.duplicate else "",
        )

    async def _recreate(self) -> None:
        """The site's stream again, at most every ``RECREATE_S``."""
        now = asyncio.get_running_loop().time()
        js = self.connection.js
        if js is None or now - self._recreated < RECREATE_S:
            return
        self._recreated = now
        try:
            await self._ensure_stream(js)
        except Exception as exc:
            log.warning("federation.stream_failed", site=self.site, error=str(exc) or repr(exc))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.connection.close()
