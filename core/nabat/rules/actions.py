"""The actions rules run: an alert, a notification, an incident, a hand-over to a connector,
a recording of cameras.

Each is idempotent — its id comes from the rule and the event (:func:`~.matching.stable_id`) —
since rules run on a durable subscription that may deliver an event again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..alerts import AlertError, AlertExists, AlertService
from ..alerts.compose import municipality_area, new_alert
from ..events import Event, Severity
from ..instances import Instances
from ..interfaces import Connector
from ..interfaces.alerting import Status, WarningMessage
from ..logs import get_logger
from ..notifications import NotificationRequest, NotificationService
from .matching import RULE_SOURCE, render, stable_id, template_fields
from .model import Action, Rule

__all__ = ["RuleActions"]

log = get_logger("nabat.rules")


class RuleActions:
    def __init__(
        self,
        *,
        alerts: AlertService,
        publish_many: Callable[[Sequence[Event]], Any],
        instances: Instances,
        notifications: NotificationService,
        record: Callable[[list[str], str | None, float | None, str], int] | None = None,
    ) -> None:
        self.alerts = alerts
        self.publish_many = publish_many
        self.instances = instances
        self.notifications = notifications
        self.record = record
        """(cameras, policy, seconds, reason) → how many cameras are now being recorded."""

    async def run(self, rule: Rule, index: int, action: Action, event: Event) -> None:
        source = f"{RULE_SOURCE}{rule.name}"
        correlation = event.correlationid or event.id
        if action.alert is not None:
            await self._alert(rule, index, action, event)
        elif action.notify is not None:
            # Recorded as a request in the journal and delivered durably, each destination
            # retried on its own: this rule's run is done once the request is kept.
            await self.notifications.request(
                NotificationRequest(
                    notifier=action.notify,
                    recipients=list(action.recipients),
                    title=render(action.title, event, f"{rule.name}: {event.type}"),
                    body=render(action.text, event, f"{event.type} {event.subject or ''}".strip()),
                    template=action.template,
                    fields=template_fields(event),
                    severity=event.severity or Severity.INFO,
                    cause=event.id,
                ),
                key=stable_id(rule.name, event, index),
                municipality=event.municipality,
                correlationid=correlation,
            )
        elif action.incident is not None:
            incident_id = stable_id(rule.name, event, index)
            await self.publish_many(
                [
                    Event(
                        id=incident_id,
                        type="incident.created",
                        source=source,
                        subject=incident_id,
                        municipality=event.municipality,
                        correlationid=correlation,
                        severity=action.incident.severity or event.severity or Severity.MODERATE,
                        data={
                            "title": render(action.incident.title, event, action.incident.title),
                            "cause": {"id": event.id, "type": event.type, "source": event.source},
                            "rule": rule.name,
                            "origin": f"rule:{rule.name}",
                        },
                    )
                ]
            )
        elif action.record is not None:
            spec = action.record
            cameras = list(spec.cameras) or ([event.subject] if event.subject else [])
            if self.record is None or not cameras:
                log.warning("rule.record_skipped", rule=rule.name, event=event.id)
                return
            started = self.record(cameras, spec.policy, spec.seconds, f"rule:{rule.name}")
            if not started:
                log.warning("rule.record_nothing", rule=rule.name, event=event.id, cameras=cameras)
        elif action.forward is not None:
            driver = self.instances.driver(action.forward)
            if not isinstance(driver, Connector):
                raise TypeError(f"rule {rule.name}: {action.forward} is not a connector")
            await driver.handle(event)

    async def _alert(self, rule: Rule, index: int, action: Action, event: Event) -> None:
        assert action.alert is not None
        spec = action.alert
        where = spec.municipalities or ([event.municipality] if event.municipality else [])
        if not where:
            log.warning("rule.alert_without_area", rule=rule.name, event=event.id)
            return
        alert = new_alert(
            identifier=f"rule-{rule.name}-{stable_id(rule.name, event, index)[:18]}",
            sender=self.alerts.sender,
            status=Status(spec.status),
            event=spec.event,
            area=municipality_area(where),
            incidents=event.correlationid or event.id,
            headline=spec.headline,
            description=render(spec.text, event, spec.event),
        )
        message = WarningMessage(
            signal_seconds=spec.signal_seconds, text=render(spec.text, event, spec.event)
        )
        try:
            await self.alerts.issue(alert, message, by=f"rule:{rule.name}")
        except AlertExists:
            return  # issued already for this event (a redelivery)
        except AlertError as exc:
            log.warning("rule.alert_refused", rule=rule.name, event=event.id, reason=str(exc))
