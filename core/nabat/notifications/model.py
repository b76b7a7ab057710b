"""The notification events and what they carry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from ..events import Severity

NOTIFICATION_SOURCE = "/nabat/notifications"
REQUESTED = "notification.requested"
"""Someone is to be told something (a rule, an escalation, the API)."""
SEND = "notification.send"
"""One destination of a request (a mail address, a chat), delivered and retried on its own."""
DELIVERED = "notification.delivered"
RETRYING = "notification.retrying"
FAILED = "notification.failed"
"""A destination given up on (dead letter): nobody was told."""

Text = Annotated[str, msgspec.Meta(max_length=8000)]


class NotificationRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``notification.requested``: what to tell, through which notifier instance.

    ``template`` names a message-catalog entry (``notification.<template>.title`` and
    ``.body``) rendered with ``fields`` in the notifier's language; without it ``title``
    and ``body`` are sent as written."""

    notifier: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    recipients: list[Annotated[str, msgspec.Meta(max_length=320)]] = []
    """Who, in the notifier's terms (mail addresses, chat ids); empty: its configured ones."""
    title: Text = ""
    body: Text = ""
    template: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]+$")] | None = None
    fields: dict[str, str] = {}
    localized: dict[str, str] = {}
    """Fields whose values are message-catalog keys, rendered in the notifier's language too
    (``{"clock": "console.duty.clock.acknowledge"}``)."""
    severity: Severity = Severity.INFO
    attachments: list[str] = []
    cause: str | None = None
    """The id of the event this is about."""


class NotificationDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """``notification.send``: one destination of a request, its text rendered."""

    request: str
    notifier: str
    destination: str
    """The notifier's name for it (``mail:ivanov@edds.example``), never a secret."""
    recipients: list[str] = []
    title: str
    body: str
    severity: Severity = Severity.INFO
    language: str = "ru"
    attachments: list[str] = []


class NotificationOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """``notification.delivered`` / ``.retrying`` / ``.failed``: what became of one
    destination of a request."""

    request: str
    notifier: str
    destination: str
    attempts: int = 0
    """Failed attempts so far (0 on a first-time delivery)."""
    detail: str = ""
    remote_id: str | None = None
    next_attempt_at: datetime | None = None
