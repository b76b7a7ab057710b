"""``[[rules]]``: matching (type, municipality, severity, data conditions), the actions (alert,
notify, incident, forward) in a running hub on a durable subscription, loop protection and
cooldown, configuration errors, and ``nabat rules test`` as a real command."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import ClassVar

import msgspec
import pytest
from nabat.config import ConfigInvalid
from nabat.events import Event
from nabat.hookspecs import hookimpl
from nabat.interfaces import (
    ActivationOutcome,
    ActivationResult,
    AlertDevice,
    Connector,
    DeliveryResult,
    DeliveryStatus,
    DeviceState,
    DeviceStatus,
    Notifier,
    SelfTestResult,
)
from nabat.rules.engine import RuleEngine
from nabat.testing import eventually, load_config_text, record, run_cli, run_hub

RULES = """
[[rules]]
name = "flood"
cooldown = 3600
when.type = ["sensor.water.*"]
when.municipality = ["sochi"]
when.severity = ["severe"]
when.data = { level_cm = { gt = 300 }, station = { contains = "мзымта" } }

[[rules.then]]
alert = { status = "Exercise", event = "Наводнение", text = "Уровень {data[level_cm]} см" }

[[rules.then]]
notify = "duty"
recipients = ["+79990000000"]
text = "Паводок: {data[level_cm]} см на {data[station]}"

[[rules.then]]
incident = { title = "Подтопление ({municipality})" }

[[rules.then]]
forward = "police"

[[rules]]
name = "any-incident"
when = { type = ["incident.created"] }
then = [{ notify = "duty", text = "incident {subject}" }]
"""


def water(level: float, station: str = "р. Мзымта, Адлер", **attrs) -> Event:
    return Event(
        type="sensor.water.level",
        source=attrs.pop("source", "urn:sensor:mzymta-1"),
        municipality=attrs.pop("municipality", "sochi"),
        severity=attrs.pop("severity", "severe"),
        data={"level_cm": level, "station": station},
        **attrs,
    )


def test_matching_conditions(tmp_path):
    rules = load_config_text(RULES, tmp_path).config.rules
    engine = RuleEngine(rules)
    assert [r.name for r in engine.matching(water(350))] == ["flood"]
    assert engine.matching(water(250)) == []  # level not above 300
    assert engine.matching(water(350, station="р. Сочи")) == []  # station does not contain
    assert engine.matching(water(350, municipality="anapa")) == []
    assert engine.matching(water(350, severity="minor")) == []
    produced = water(350, source="/nabat/rules/other")
    assert engine.matching(produced) == []  # loop protection
    plan = engine.plan(water(350))
    assert [(p.action, p.target) for p in plan] == [
        ("alert", "sochi"),
        ("notify", "duty"),
        ("incident", "sochi"),
        ("forward", "police"),
    ]
    assert plan[1].detail == "Паводок: 350 см на р. Мзымта, Адлер"


def test_bad_rules_are_named(tmp_path):
    bad = RULES.replace('municipality = ["sochi"]', 'municipality = ["atlantis"]')
    with pytest.raises(ConfigInvalid) as err:
        load_config_text(bad, tmp_path)
    assert any("atlantis" in i.reason for i in err.value.issues)
    two = RULES.replace('forward = "police"', 'forward = "police"\nnotify = "duty"')
    with pytest.raises(ConfigInvalid) as err:
        load_config_text(two, tmp_path)
    assert any("exactly one of" in i.reason for i in err.value.issues)


class Duty(Notifier):
    kind = "ruletest.notifier"
    sent: ClassVar[list] = []
    fail_once: ClassVar[bool] = True

    async def send(self, notification):
        if Duty.fail_once:
            Duty.fail_once = False
            return DeliveryResult(status=DeliveryStatus.RETRY, at=datetime.now(UTC), detail="busy")
        Duty.sent.append(notification)
        return DeliveryResult(status=DeliveryStatus.DELIVERED, at=datetime.now(UTC))


class Police(Connector):
    kind = "ruletest.police"
    received: ClassVar[list] = []

    async def handle(self, event):
        Police.received.append(event)
        return DeliveryResult(status=DeliveryStatus.DELIVERED, at=datetime.now(UTC))


class Siren(AlertDevice):
    kind = "ruletest.siren"

    async def activate(self, alert, message):
        return ActivationResult(
            alert_identifier=alert.identifier,
            outcome=ActivationOutcome.ACTIVATED,
            at=datetime.now(UTC),
            detail=message.text or "",
        )

    async def cancel(self, alert_identifier):
        return ActivationResult(
            alert_identifier=alert_identifier,
            outcome=ActivationOutcome.CANCELLED,
            at=datetime.now(UTC),
        )

    async def status(self):
        return DeviceStatus(state=DeviceState.IDLE, checked_at=datetime.now(UTC))

    async def self_test(self, audible=False):
        return SelfTestResult(passed=True, audible=audible, at=datetime.now(UTC))


class Plugin:
    @hookimpl
    def register_drivers(self):
        return [Duty, Police, Siren]


HUB = """
[hub]
language = "en"
data_dir = "data"
[plugins.eventlog]
enabled = false
[instances.duty]
kind = "ruletest.notifier"
[instances.police]
kind = "ruletest.police"
[instances.siren-1]
kind = "ruletest.siren"
municipality = "sochi"
"""


async def test_rules_act_in_a_running_hub(tmp_path):
    Duty.sent, Duty.fail_once, Police.received = [], True, []
    async with run_hub(HUB + RULES, tmp_path, plugins={"ruletest": Plugin()}) as hub:
        seen = record(hub, "alert.>", "incident.*")
        trigger = water(350)
        await hub.publish(trigger)
        await hub.publish(water(360))  # within the cooldown: nothing more
        await eventually(
            lambda: any(e.type == "alert.completed" for e in seen.events), what="alert"
        )
        await eventually(lambda: Duty.sent, what="the notification (after a retry)", timeout=20)
        await eventually(lambda: Police.received, what="the last action: forward")
        await hub.bus.drain()  # the incident event has reached the recorder
        alert = next(e for e in seen.events if e.type == "alert.completed")
        assert alert.data.counts["activated"] == 1
        [incident] = [e for e in seen.events if e.type == "incident.created"]
        assert incident.source == "/nabat/rules/flood" and incident.correlationid == trigger.id
        assert incident.data["title"] == "Подтопление (sochi)"
        flood_note = next(n for n in Duty.sent if n.title.startswith("flood"))
        assert flood_note.body == "Паводок: 350 см на р. Мзымта, Адлер"  # retried after "busy"
        assert [e.id for e in Police.received] == [trigger.id]
        # The incident a rule opened fires "any-incident"? No: rules ignore rules' own events.
        assert not any(n.title.startswith("any-incident") for n in Duty.sent)
        assert hub.rules.fired == 1
        record_ = await hub.alerts.get(alert.data.id)
        assert record_.created_by == "rule:flood"
        assert record_.devices[0].detail == "Уровень 350 см"
        # Another site's incident, followed here, is that site's to act on: no rule fires.
        followed = Event(
            type="incident.created",
            source="/nabat/sites/site-b/urn:112",
            subject="card-8",
            extensions={"site": "site-b"},
        )
        await hub.publish(followed)
        # An incident from elsewhere does fire the second rule.
        await hub.publish(Event(type="incident.created", source="urn:112", subject="card-7"))
        await eventually(
            lambda: any(n.body == "incident card-7" for n in Duty.sent), what="incident rule"
        )
        # Delivered in order: the followed one was handled (and passed over) before card-7.
        assert not any(n.body == "incident card-8" for n in Duty.sent)


def test_rules_test_command(tmp_path):
    (tmp_path / "plugins.toml").write_text(RULES, encoding="utf-8")
    event = msgspec.json.encode(water(420)).decode()
    (tmp_path / "event.json").write_text(event, encoding="utf-8")
    done = run_cli("rules", "test", "event.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["RULE", "ACTION", "TARGET", "WHAT"]
    assert any("flood" in line and "notify" in line and "420" in line for line in lines)
    as_json = json.loads(run_cli("rules", "test", "event.json", "--json", cwd=tmp_path).stdout)
    assert [p["action"] for p in as_json] == ["alert", "notify", "incident", "forward"]
    (tmp_path / "low.json").write_text(msgspec.json.encode(water(10)).decode(), encoding="utf-8")
    none = run_cli("rules", "test", "low.json", cwd=tmp_path)
    assert "no rule matches sensor.water.level" in none.stdout
    (tmp_path / "bad.json").write_text('{"type": 1}', encoding="utf-8")
    bad = run_cli("rules", "test", "bad.json", cwd=tmp_path)
    assert bad.returncode == 1 and "not a valid event" in bad.stderr
    listed = run_cli("rules", "list", cwd=tmp_path)
    assert "flood" in listed.stdout and "alert,notify,incident,forward" in listed.stdout
