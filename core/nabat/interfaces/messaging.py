"""The Notifier and Connector interfaces.

A :class:`Notifier` delivers one notification (SMS gateway, e-mail, Telegram, a dispatch
console) and says what happened. The hub's durable delivery calls it at least once per
notification, so a driver must be **idempotent by** ``Notification.id``: pass it to the peer as
an idempotency key where the peer supports one. ``send`` returns within ``timeout``; it does not
retry on its own (the hub retries with backoff and keeps the dead letters) and reports a
temporary failure as ``DeliveryStatus.RETRY`` or by raising ``TransientError``.

A :class:`Connector` is a long-running link to another system (System-112, a police system, a
neighbouring region): ``run`` receives from the peer and publishes events until cancelled;
``handle`` sends hub events to the peer. The hub restarts ``run`` with backoff when it raises
``TransientError`` or returns, and reports ``needs_auth`` on ``AuthError``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import ClassVar

import msgspec

from ..events import Event, Severity
from .driver import Driver

__all__ = ["Connector", "DeliveryResult", "DeliveryStatus", "Notification", "Notifier"]


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One message to deliver. ``id`` is the idempotency key (the event id by default)."""

    id: str
    recipients: list[str]
    title: str
    body: str
    severity: Severity = Severity.INFO
    event: Event | None = None
    language: str = "ru"
    attachments: list[str] = []
    """URLs of attachments (snapshots) the notifier may fetch or link."""
    destination: str = ""
    """Which of :meth:`Notifier.destinations` this is for ("": the notifier as a whole)."""


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"  # the peer accepted it
    RETRY = "retry"  # temporary failure: try again later
    REJECTED = "rejected"  # the peer refused it for good (bad recipient, too large): dead letter


class DeliveryResult(msgspec.Struct, frozen=True, kw_only=True):
    status: DeliveryStatus
    at: datetime
    detail: str = ""
    remote_id: str | None = None
    """The peer's id for what it accepted (message id, ticket number)."""
    retry_after: float | None = None
    """Seconds the peer asked us to wait before retrying."""


class Notifier(Driver):
    """Delivers notifications."""

    interface: ClassVar[str] = "notifier"
    language: str = "ru"
    """The language of what it sends (``ru``/``en``): catalog templates render in it."""

    def destinations(self, notification: Notification) -> list[tuple[str, list[str]]]:
        """Where ``notification`` goes, as ``(destination, recipients)`` pairs, each delivered
        and retried on its own (one mail server, one chat). The name is shown to operators
        in the outcome events: never a secret. The default is the notifier as one
        destination with every recipient."""
        return [("", list(notification.recipients))]

    async def send(self, notification: Notification) -> DeliveryResult:
        """Deliver to ``notification.destination``; return within ``timeout``."""
        raise NotImplementedError


class Connector(Driver):
    """A long-running source and/or sink of events."""

    interface: ClassVar[str] = "connector"
    subscribes: ClassVar[tuple[str, ...]] = ()
    """Subject patterns of hub events to pass to :meth:`handle` (empty: a pure source)."""

    async def run(self) -> None:
        """Receive from the peer and publish through ``self.context.publish`` until cancelled.
        The default does nothing and waits: a pure sink."""
        import asyncio

        await asyncio.Event().wait()

    async def handle(self, event: Event) -> DeliveryResult:
        """Send one hub event to the peer (idempotent by ``event.id``)."""
        raise NotImplementedError
