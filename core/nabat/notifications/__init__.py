"""Notifications to people: what rules and escalations ask for, delivered durably through
notifier instances (the ``nabat-apprise`` plugin's e-mail, Telegram, SMS gateways, webhooks).

A request is an event (``notification.requested``) in the journal, so it survives a crash or
a notifier that is down. A durable subscription expands it into one delivery per
destination the notifier names (``notification.send``), each retried with backoff on its
own and dead-lettered after the configured attempts; every outcome is an event
(``notification.delivered``, ``notification.retrying``, ``notification.failed``).
"""

from .model import (
    DELIVERED,
    FAILED,
    NOTIFICATION_SOURCE,
    REQUESTED,
    RETRYING,
    SEND,
    NotificationDelivery,
    NotificationOutcome,
    NotificationRequest,
)
from .service import NotificationService


def register_notification_types(types) -> None:
    """The notification events' payloads, typed for readers in the hub."""
    types.register(REQUESTED, NotificationRequest, owner="core")
    types.register(SEND, NotificationDelivery, owner="core")
    for kind in (DELIVERED, RETRYING, FAILED):
        types.register(kind, NotificationOutcome, owner="core")


__all__ = [
    "DELIVERED",
    "FAILED",
    "NOTIFICATION_SOURCE",
    "REQUESTED",
    "RETRYING",
    "SEND",
    "NotificationDelivery",
    "NotificationOutcome",
    "NotificationRequest",
    "NotificationService",
    "register_notification_types",
]
