"""Outbound webhooks: agencies register a URL and get matching events, signed, durably.

Each registration is a record (collection ``webhooks``) and a durable subscription of the
journal (``webhook:<id>``), so delivery inherits everything :mod:`nabat.delivery` gives:
at-least-once from the journal, retry with backoff, dead letters, one delivering process at a
time. Events go out as CloudEvents JSON signed per Standard Webhooks (``webhook-id`` is the
event id, so receivers drop retried duplicates). The signing secret is shown once, at creation;
rotating it keeps the old one signing beside the new for a day, so receivers can switch over.

Every hub process re-reads the registrations every ``_SYNC_EVERY`` seconds, so one created
through another process starts delivering here too (only the lease holder actually sends).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import aiohttp
import msgspec

from ..ids import uuid7
from ..logs import get_logger
from ..netguard import DestinationPolicy
from ..netguard_aiohttp import guarded_session
from ..store.delivery import IssueState, Order, SubscriptionSpec
from ..webhooks import WebhookSender, generate_secret

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["OutboundWebhooks", "SigningSecret", "WebhookRegistration"]

log = get_logger("nabat.api.outbound")
COLLECTION = "webhooks"
_SYNC_EVERY = 10.0
_ROTATION_OVERLAP = timedelta(days=1)


class SigningSecret(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    secret: str
    expires: datetime | None = None


class WebhookRegistration(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    url: str
    types: tuple[str, ...]
    municipalities: tuple[str, ...] = ()
    description: str = ""
    order: Literal["ordered", "parallel"] = "ordered"
    owner: str
    """Token id of the creator; only it (and admins) may see or change this registration."""
    owner_name: str = ""
    created: datetime
    secrets: tuple[SigningSecret, ...]

    def delivery_id(self) -> str:
        return f"webhook:{self.id}"

    def live_secrets(self, now: datetime | None = None) -> list[str]:
        now = now or datetime.now(UTC)
        return [s.secret for s in self.secrets if s.expires is None or s.expires > now]


class OutboundWebhooks:
    def __init__(self, hub: Hub, *, timeout: float = 10.0) -> None:
        self.hub = hub
        self.timeout = timeout
        self._client: aiohttp.ClientSession | None = None
        self._running: dict[str, WebhookRegistration] = {}
        self._senders: dict[str, WebhookSender] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        api = hub.config.api
        self.policy = DestinationPolicy.parse(
            api.webhook_destinations, public=api.webhook_allow_public
        )
        """Where registrations may point (``[api] webhook_destinations``)."""

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        # Every connection is checked against the destination policy when it is made, on the
        # addresses the name resolves to then (DNS rebinding), not only at registration.
        self._client = guarded_session(self.policy, limit=256)
        await self.sync()
        self._task = asyncio.get_running_loop().create_task(self._resync(), name="api:webhooks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for reg_id in list(self._running):
            await self._halt(reg_id)
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(_SYNC_EVERY)
            try:
                await self.sync()
            except Exception as exc:
                log.warning("webhooks.sync_failed", error=repr(exc))

    async def sync(self) -> None:
        """Make the running dispatchers match the stored registrations."""
        async with self._lock:
            stored = {r.id: r for r in await self.all()}
            for reg_id in list(self._running):
                if reg_id not in stored:
                    await self._halt(reg_id)
            for reg_id, reg in stored.items():
                if self._running.get(reg_id) != reg:
                    await self._run(reg)

    async def _run(self, reg: WebhookRegistration) -> None:
        assert self._client is not None
        old = self._senders.pop(reg.id, None)
        sender = WebhookSender(
            reg.url,
            reg.live_secrets(),
            timeout=self.timeout,
            client=self._client,
            disclose="class",  # the registering caller reads last_error
        )
        spec = SubscriptionSpec(
            id=reg.delivery_id(),
            patterns=reg.types,
            municipalities=reg.municipalities,
            order=Order(reg.order),
            concurrency=8,
            timeout=self.timeout + 5,
        )
        await self.hub.delivery.add(spec, sender)
        self._senders[reg.id] = sender
        self._running[reg.id] = reg
        if old is not None:
            await old.aclose()

    async def _halt(self, reg_id: str) -> None:
        self._running.pop(reg_id, None)
        await self.hub.delivery.remove(f"webhook:{reg_id}")
        sender = self._senders.pop(reg_id, None)
        if sender is not None:
            await sender.aclose()

    # -- registrations ---------------------------------------------------------------------
    async def all(self) -> list[WebhookRegistration]:
        return [
            msgspec.json.decode(r.body, type=WebhookRegistration)
            async for r in self.hub.journal.all_records(COLLECTION)
        ]

    async def get(self, reg_id: str) -> WebhookRegistration | None:
        record = await self.hub.journal.get_record(COLLECTION, reg_id)
        return (
            None if record is None else msgspec.json.decode(record.body, type=WebhookRegistration)
        )

    async def create(
        self,
        *,
        url: str,
        types: tuple[str, ...],
        municipalities: tuple[str, ...],
        description: str,
        order: Literal["ordered", "parallel"],
        owner: str,
        owner_name: str,
    ) -> WebhookRegistration:
        reg = WebhookRegistration(
            id=f"wh_{uuid7().replace('-', '')[:20]}",
            url=url,
            types=types,
            municipalities=municipalities,
            description=description,
            order=order,
            owner=owner,
            owner_name=owner_name,
            created=datetime.now(UTC),
            secrets=(SigningSecret(secret=generate_secret()),),
        )
        await self._save(reg, only_new=True)
        # A new registration starts at the journal's end: it gets what happens from now on.
        await self.sync()
        return reg

    async def rotate(self, reg: WebhookRegistration) -> WebhookRegistration:
        now = datetime.now(UTC)
        kept = tuple(
            SigningSecret(secret=s.secret, expires=s.expires or now + _ROTATION_OVERLAP)
            for s in reg.secrets
            if s.expires is None or s.expires > now
        )
        rotated = msgspec.structs.replace(
            reg, secrets=(SigningSecret(secret=generate_secret()), *kept)
        )
        await self._save(rotated)
        await self.sync()
        return rotated

    async def delete(self, reg: WebhookRegistration) -> None:
        await self.hub.journal.delete_record(COLLECTION, reg.id)
        await self.sync()
        await self.hub.journal.delete_subscription(reg.delivery_id())

    async def _save(self, reg: WebhookRegistration, *, only_new: bool = False) -> None:
        await self.hub.journal.put_record(
            COLLECTION, reg.id, msgspec.json.encode(reg), only_new=only_new
        )

    # -- state -----------------------------------------------------------------------------
    async def state(self, reg: WebhookRegistration) -> dict[str, object]:
        """Delivery progress: cursor, lag, retrying and dead events, the last error."""
        journal = self.hub.journal
        sub = await journal.subscription(reg.delivery_id())
        issues = await journal.issues(reg.delivery_id(), limit=1000)
        last = await journal.last_seq()
        retrying = [i for i in issues if i.state is IssueState.RETRY]
        dead = [i for i in issues if i.state is IssueState.DEAD]
        latest = max(issues, key=lambda i: i.first_failed_at, default=None)
        dispatcher = self.hub.delivery.dispatchers.get(reg.delivery_id())
        now = datetime.now(UTC)
        return {
            "lag": max(0, last - sub.cursor) if sub else None,
            "retrying": len(retrying),
            "dead": len(dead),
            "last_error": latest.last_error if latest else None,
            "next_attempt_at": min(
                (i.next_attempt_at for i in retrying if i.next_attempt_at), default=None
            ),
            "delivering_process": (
                sub.lease_owner if sub and sub.lease_until and sub.lease_until > now else None
            ),
            "delivered_by_this_process": dispatcher.stats.delivered if dispatcher else 0,
        }

    async def retry_dead(self, reg: WebhookRegistration) -> int:
        revived = await self.hub.journal.revive_dead(reg.delivery_id())
        dispatcher = self.hub.delivery.dispatchers.get(reg.delivery_id())
        if dispatcher is not None:
            dispatcher.wake()
        return revived
