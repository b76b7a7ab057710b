"""Durable delivery of notifications (see the package docstring).

Two steps on one parallel durable subscription, so one slow or failing notifier never holds
up another's messages:

1. ``notification.requested`` → the notifier instance renders the text (its language, the
   catalog's template) and names its destinations; one ``notification.send`` event each,
   with an id derived from the request's (a repeated expansion appends nothing new).
2. ``notification.send`` → the notifier's ``send``; a temporary failure is retried with
   backoff, a refusal or the last attempt makes it a dead letter (``nabat deliveries``) and a
   ``notification.failed`` event of severity *severe*.

Delivery is at least once: a hub that dies between the peer's acceptance and the recorded
outcome sends that destination again (the notification id goes along as an idempotency key
where the peer supports one).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from ..config.model import NotificationSettings
from ..delivery import DeliveryService
from ..events import Event, Severity
from ..i18n import Messages
from ..instances import Instances
from ..interfaces import (
    DeliveryResult,
    DeliveryStatus,
    Notification,
    Notifier,
    TransientError,
)
from ..logs import get_logger
from ..store.delivery import DeliveryIssue, IssueState, Order, SubscriptionSpec
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

__all__ = ["NotificationService"]

log = get_logger("nabat.notifications")
SUBSCRIPTION = "notifications"
STARTING_WAIT_S = 15.0
"""How long a delivery waits for a notifier instance that is still starting."""
_request = msgspec.json.Decoder(NotificationRequest)
_delivery = msgspec.json.Decoder(NotificationDelivery)


def _derived(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "nabat-notification:" + ":".join(parts)))


def _as(decoder: msgspec.json.Decoder, data: Any) -> Any:
    return decoder.decode(msgspec.json.encode(data))


class NotificationService:
    """``hub.notifications``: ask for a notification; the hub delivers it."""

    def __init__(
        self,
        settings: NotificationSettings,
        *,
        instances: Instances,
        publish_many: Callable[[Sequence[Event]], Awaitable[Any]],
    ) -> None:
        self.settings = settings
        self.instances = instances
        self.publish_many = publish_many

    async def request(
        self,
        request: NotificationRequest,
        *,
        key: str | None = None,
        municipality: str | None = None,
        correlationid: str | None = None,
    ) -> str:
        """Record the request in the journal (durable once this returns); its id. ``key``
        makes it idempotent: the same key asked twice is one notification."""
        event = Event(
            id=key or str(uuid.uuid4()),
            type=REQUESTED,
            source=NOTIFICATION_SOURCE,
            subject=request.notifier,
            municipality=municipality,
            correlationid=correlationid,
            severity=request.severity,
            data=request,
        )
        await self.publish_many([event])
        return event.id

    async def subscribe(self, delivery: DeliveryService) -> None:
        s = self.settings
        spec = SubscriptionSpec(
            id=SUBSCRIPTION,
            patterns=(REQUESTED, SEND),
            order=Order.PARALLEL,
            concurrency=s.concurrency,
            max_attempts=s.max_attempts,
            max_age=s.max_age,
            backoff_initial=s.backoff_initial,
            backoff_max=s.backoff_max,
            timeout=s.timeout,
        )
        await delivery.add(spec, self._deliver, on_failure=self._failed)

    # -- delivery --------------------------------------------------------------------------
    async def _notifier(self, name: str) -> Notifier:
        rt = self.instances.get(name)
        if rt is None:
            raise LookupError(f"no notifier instance {name!r} in plugins.toml")
        # Just after the hub starts, deliveries come before the notifier is up: give it a
        # moment rather than spend an attempt and a backoff on it.
        for _ in range(int(STARTING_WAIT_S / 0.1)):
            status = self.instances.status(name)
            if rt.driver is not None or (status is not None and status.state.value != "starting"):
                break
            await asyncio.sleep(0.1)
        try:
            driver = self.instances.driver(name)
        except KeyError:
            status = self.instances.status(name)
            state = status.state.value if status else "not started"
            raise TransientError(f"notifier {name} is not running ({state})") from None
        if not isinstance(driver, Notifier):
            raise LookupError(f"instance {name!r} is not a notifier ({rt.entry.kind})")
        return driver

    async def _deliver(self, event: Event) -> DeliveryResult:
        now = datetime.now(UTC)
        try:
            if event.type == REQUESTED:
                return await self._expand(event, _as(_request, event.data))
            return await self._send(event, _as(_delivery, event.data))
        except (msgspec.ValidationError, LookupError) as exc:  # never deliverable: dead letter
            return DeliveryResult(status=DeliveryStatus.REJECTED, at=now, detail=str(exc))

    async def _expand(self, event: Event, request: NotificationRequest) -> DeliveryResult:
        notifier = await self._notifier(request.notifier)
        language = notifier.language
        title, body = request.title, request.body
        if request.template:
            messages = Messages(language)
            fields = dict(request.fields)
            fields.update({name: messages(key) for name, key in request.localized.items()})
            title = messages(f"notification.{request.template}.title", **fields)
            body = messages(f"notification.{request.template}.body", **fields)
        proto = Notification(
            id=event.id,
            recipients=list(request.recipients),
            title=title,
            body=body,
            severity=request.severity,
            event=event,
            language=language,
            attachments=list(request.attachments),
        )
        sends = [
            Event(
                id=_derived(event.id, destination),
                type=SEND,
                source=NOTIFICATION_SOURCE,
                subject=request.notifier,
                municipality=event.municipality,
                correlationid=event.correlationid or event.id,
                severity=request.severity,
                data=NotificationDelivery(
                    request=event.id,
                    notifier=request.notifier,
                    destination=destination,
                    recipients=recipients,
                    title=title,
                    body=body,
                    severity=request.severity,
                    language=language,
                    attachments=list(request.attachments),
                ),
            )
            for destination, recipients in notifier.destinations(proto)
        ]
        if not sends:
            raise LookupError(f"notifier {request.notifier} has no destination for this")
        await self.publish_many(sends)
        log.info("notification.expanded", request=event.id, destinations=len(sends))
        return DeliveryResult(status=DeliveryStatus.DELIVERED, at=datetime.now(UTC))

    async def _send(self, event: Event, delivery: NotificationDelivery) -> DeliveryResult:
        notifier = await self._notifier(delivery.notifier)
        result = await notifier.send(
            Notification(
                id=event.id,
                recipients=delivery.recipients,
                title=delivery.title,
                body=delivery.body,
                severity=delivery.severity,
                language=delivery.language,
                attachments=delivery.attachments,
                destination=delivery.destination,
            )
        )
        if result.status is DeliveryStatus.RETRY:
            raise TransientError(
                result.detail or "the peer asked to retry", retry_after=result.retry_after
            )
        if result.status is DeliveryStatus.DELIVERED:
            await self._outcome(
                event,
                delivery,
                DELIVERED,
                Severity.INFO,
                detail=result.detail,
                remote_id=result.remote_id,
            )
            log.info(
                "notification.delivered",
                request=delivery.request,
                notifier=delivery.notifier,
                destination=delivery.destination,
            )
        return result

    async def _failed(self, event: Event, issue: DeliveryIssue) -> None:
        """A failed attempt (and the last one): an event saying so, per destination."""
        dead = issue.state is IssueState.DEAD
        if event.type == SEND:
            delivery = _as(_delivery, event.data)
        else:
            try:
                request = _as(_request, event.data)
            except msgspec.ValidationError:
                return
            delivery = NotificationDelivery(
                request=event.id, notifier=request.notifier, destination="", title="", body=""
            )
        await self._outcome(
            event,
            delivery,
            FAILED if dead else RETRYING,
            Severity.SEVERE if dead else Severity.MINOR,
            attempts=issue.attempts,
            detail=issue.last_error,
            next_attempt_at=issue.next_attempt_at,
        )

    async def _outcome(
        self,
        event: Event,
        delivery: NotificationDelivery,
        kind: str,
        severity: Severity,
        *,
        attempts: int = 0,
        detail: str = "",
        remote_id: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        await self.publish_many(
            [
                Event(
                    id=_derived(event.id, kind, str(attempts)),
                    type=kind,
                    source=NOTIFICATION_SOURCE,
                    subject=delivery.notifier,
                    municipality=event.municipality,
                    correlationid=event.correlationid or event.id,
                    severity=severity,
                    data=NotificationOutcome(
                        request=delivery.request,
                        notifier=delivery.notifier,
                        destination=delivery.destination,
                        attempts=attempts,
                        detail=detail[:2000],
                        remote_id=remote_id,
                        next_attempt_at=next_attempt_at,
                    ),
                )
            ]
        )
