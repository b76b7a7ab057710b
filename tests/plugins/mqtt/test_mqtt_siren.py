"""``mqtt.siren`` against the real Mosquitto broker (127.0.0.1:1883): alerts reach simulated
devices (each its own MQTT client with a last will) and are acknowledged; a late device is
retried without sounding twice; a device that drops off the broker is reported offline."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from typing import Any

import aiomqtt
import nabat_mqtt.plugin
import pytest
from nabat.interfaces.alerting import (
    WarningMessage,
)
from nabat.testing import eventually, exercise_alert, record, run_hub

BROKER = ("127.0.0.1", 1883)


def _broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def broker():
    if not _broker_up():
        message = "Mosquitto is not running on 127.0.0.1:1883 (mosquitto -d)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


class Device:
    """A siren controller on the broker: acknowledges commands, keeps its status retained,
    leaves a last will. ``mode``: ``ok``, ``refuse``, ``slow`` (ignores its first command)."""

    def __init__(self, prefix: str, device: str, mode: str = "ok") -> None:
        self.prefix, self.device, self.mode = prefix, device, mode
        self.commands: list[dict[str, Any]] = []
        self.sounding: dict[str, int] = {}  # alert -> times started
        self.task: asyncio.Task[None] | None = None
        self.client: aiomqtt.Client | None = None
        self.ready = asyncio.Event()

    def topic(self, kind: str) -> str:
        return f"{self.prefix}/{self.device}/{kind}"

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        async with asyncio.timeout(5):
            await self.ready.wait()

    async def _run(self) -> None:
        will = aiomqtt.Will(self.topic("online"), b"0", qos=1, retain=True)
        async with aiomqtt.Client(
            *BROKER, identifier=f"dev-{uuid.uuid4().hex[:8]}", will=will, keepalive=5
        ) as client:
            self.client = client
            await client.subscribe(self.topic("cmd"), qos=1)
            await client.publish(self.topic("online"), b"1", qos=1, retain=True)
            await self._status(client, "idle")
            self.ready.set()
            async for message in client.messages:
                command = json.loads(message.payload)
                self.commands.append(command)
                await self._handle(client, command)

    async def _status(self, client: aiomqtt.Client, state: str, alert: str | None = None) -> None:
        body = {
            "state": state,
            "mains_ok": True,
            "battery_pct": 96.0,
            "tamper": False,
            "active_alert": alert,
        }
        await client.publish(self.topic("status"), json.dumps(body), qos=1, retain=True)

    async def _handle(self, client: aiomqtt.Client, command: dict[str, Any]) -> None:
        action, alert = command["action"], command.get("alert")
        if self.mode == "slow" and len(self.commands) == 1:
            return  # the first command is lost: the hub must retry
        ack: dict[str, Any] = {"id": command["id"], "alert": alert}
        if action == "activate":
            if self.mode == "refuse":
                ack.update(outcome="failed", detail="amplifier fault")
            else:
                if alert not in self.sounding:  # idempotent per alert
                    self.sounding[alert] = 0
                self.sounding[alert] += 0 if self.sounding[alert] else 1
                ack.update(outcome="activated", detail=f"sounding {command['signal_seconds']} s")
                await self._status(client, "active", alert)
        elif action == "cancel":
            self.sounding.pop(alert, None)
            ack.update(outcome="cancelled", detail="stopped")
            await self._status(client, "idle")
        elif action == "self_test":
            ack.update(
                passed=True, detail="amplifier ok" + (", audible" if command.get("audible") else "")
            )
        await client.publish(self.topic("ack"), json.dumps(ack), qos=1)

    async def drop(self) -> None:
        """Vanish without a clean disconnect: the broker publishes the last will."""
        assert self.client is not None
        self.client._client.socket().close()  # paho's socket: no DISCONNECT packet is sent
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def config(prefix: str, *devices: str) -> str:
    lines = [
        '[hub]\nlanguage = "en"\ndata_dir = "data"\n',
        "[plugins.eventlog]\nenabled = false\n",
        "[plugins.mqtt]\n",
        "[plugins.watch.settings]\ndevice_interval = 3600.0\ncamera_interval = 3600.0\n",
        "[alerts]\nattempts = 3\nretry_delay = 0.05\n",
    ]
    for name in devices:
        lines.append(
            f'[instances.{name}]\nkind = "mqtt.siren"\nmunicipality = "anapa"\ntimeout = 1.0\n'
            f'settings = {{ host = "127.0.0.1", port = 1883, topic_prefix = "{prefix}" }}\n'
        )
    return "\n".join(lines)


async def test_an_alert_reaches_mqtt_sirens_and_each_acknowledgement_is_tracked(tmp_path):
    prefix = f"test/{uuid.uuid4().hex[:8]}/sirens"
    devices = {
        "anapa-s1": Device(prefix, "anapa-s1"),
        "anapa-s2": Device(prefix, "anapa-s2", mode="slow"),
        "anapa-s3": Device(prefix, "anapa-s3", mode="refuse"),
    }
    for device in devices.values():
        await device.start()
    try:
        async with run_hub(
            config(prefix, *devices, "anapa-s4"), tmp_path, plugins={"mqtt": nabat_mqtt.plugin}
        ) as hub:
            statuses = record(hub, "siren.status.*")
            alert = exercise_alert("anapa")
            record_ = await hub.alerts.issue(
                alert, WarningMessage(signal_seconds=60, text="Внимание!"), by="test"
            )
            done = await hub.alerts.wait(record_.id, 15)
            outcomes = {d.device: (d.outcome.value, d.attempts) for d in done.devices}
            assert outcomes["anapa-s1"] == ("activated", 1)
            assert outcomes["anapa-s2"] == ("activated", 2)  # first command lost, retried
            assert outcomes["anapa-s3"][0] == "failed"
            assert outcomes["anapa-s4"][0] == "unreachable"  # no device behind the topic
            assert devices["anapa-s2"].sounding == {alert.identifier: 1}  # sounded once
            s1 = [c for c in devices["anapa-s1"].commands if c["action"] == "activate"]
            assert s1[0]["alert"] == alert.identifier and s1[0]["signal"] == "attention_all"
            assert s1[0]["signal_seconds"] == 60 and s1[0]["text"] == "Внимание!"

            siren = hub.instance("anapa-s1")
            status = await siren.status()
            assert status.state == "active" and status.active_alert == alert.identifier
            assert status.battery_pct == 96.0
            test = await siren.self_test(audible=False)
            assert test.passed and test.detail == "amplifier ok"

            cancelled = await hub.alerts.cancel(alert.identifier, by="test")
            assert {d.device: d.outcome.value for d in cancelled.devices}["anapa-s1"] == "cancelled"
            await eventually(
                lambda: siren.status_seen and siren.status_seen.state == "idle", what="idle"
            )

            # A device that drops off the broker: its last will marks it offline at once.
            await devices["anapa-s1"].drop()
            await eventually(lambda: siren.online is False, what="the last will", timeout=15)
            watcher = hub.plugins["watch"].obj.watcher
            await watcher.poll_device(siren)
            await hub.bus.drain()
            assert any(
                e.type == "siren.status.offline" and e.subject == "anapa-s1"
                for e in statuses.events
            )
    finally:
        for device in devices.values():
            await device.stop()


async def test_an_unreachable_broker_is_retried_with_the_reason(tmp_path):
    text = config("x/sirens", "gone").replace("port = 1883", "port = 9")
    async with run_hub(text, tmp_path, plugins={"mqtt": nabat_mqtt.plugin}) as hub:
        await eventually(lambda: hub.state_of("gone") == "retrying", what="retrying")
        assert "cannot connect to the MQTT broker 127.0.0.1:9" in hub.status_of("gone").reason
