"""The hub keeps running what works: connectors restart, jobs are isolated, broken probes
become honest states."""

from __future__ import annotations

import sys

from nabat.events import Event
from nabat.interfaces import HealthState, UnitState
from nabat.testing import eventually, record, run_hub, wait_for_state

BASE = """
[hub]
language = "en"
retry_initial = 0.05
retry_max = 0.2

[plugins.tp_devices]
[plugins.tp_observer]

[plugins.watch.settings]
camera_interval = 0.1
jitter = 0.0
"""


async def test_a_connector_that_drops_is_restarted_with_backoff(test_plugins, tmp_path):
    relay = sys.modules.get("tp_devices")
    if relay is not None:
        relay.Relay.runs = 0
        relay.Relay.handled.clear()
    config = (
        BASE
        + """
    [instances.relay-112]
    kind = "tp_devices.relay"
    settings = { fail_runs = 2 }
    """
    )
    async with run_hub(config, tmp_path, wait=False) as hub:
        events = record(hub, "incident.>", "hub.unit.>")
        mine = await events.wait_for("incident.created", timeout=5)
        assert mine.source == "/nabat/instances/relay-112"
        history = [s.state for s in hub.supervisor.history if s.name == "relay-112"]
        assert history.count(UnitState.RETRYING) == 2
        assert history[-1] == UnitState.RUNNING
        # Hub events matching `subscribes` reach handle() through durable delivery; the
        # connector's own events are not echoed back to it.
        await hub.publish(Event(type="incident.updated", source="/nabat/plugins/x", subject="c1"))
        relay = sys.modules["tp_devices"].Relay
        await eventually(lambda: relay.handled, what="delivery to the connector")
        assert [e.type for e in relay.handled] == ["incident.updated"]


async def test_a_failing_job_is_isolated_and_reported(test_plugins, tmp_path):
    async with run_hub(BASE, tmp_path, wait=False) as hub:
        events = record(hub, "test.>")
        # The broken job fails again and again, is reported each time, and never stops the
        # healthy job beside it.
        await events.wait_for(
            "test.fault", subject="tp_devices", where=lambda e: e.data["context"] == "job:broken"
        )
        ticks = len(events.of_type("test.tick"))
        await events.wait_for_count("test.tick", ticks + 2)
        await events.wait_for_count("test.fault", 2)
        broken = hub.scheduler.jobs["tp_devices:broken"]
        assert broken.failures >= 2 and broken.last_error == "ValueError: job bug"
        assert hub.state_of("tp_devices") == UnitState.RUNNING


async def test_probes_that_raise_or_hang_count_as_unreachable(test_plugins, tmp_path):
    config = (
        BASE
        + """
    [instances.cam-raise]
    kind = "tp_devices.camera"
    settings = { behaviour = "raise" }

    [instances.cam-hang]
    kind = "tp_devices.camera"
    timeout = 0.2
    settings = { behaviour = "hang" }

    [instances.cam-ok]
    kind = "tp_devices.camera"
    """
    )
    async with run_hub(config, tmp_path, wait=False) as hub:
        events = record(hub, "camera.health.>")
        raised = await events.wait_for("camera.health.unreachable", subject="cam-raise", timeout=5)
        assert "probe exploded" in raised.data.reason
        hung = await events.wait_for("camera.health.unreachable", subject="cam-hang", timeout=5)
        assert "TimeoutError" in hung.data.reason
        ok = await events.wait_for("camera.health.ok", subject="cam-ok", timeout=5)
        assert ok.data.state == HealthState.OK
        # Instances stay running: a camera fault is a health state, not a driver crash.
        assert hub.state_of("cam-raise") == UnitState.RUNNING


async def test_credentials_rejected_at_run_time_put_the_instance_in_needs_auth(
    test_plugins, tmp_path
):
    config = (
        BASE.replace("retry_max = 0.2", "retry_max = 0.2\nneeds_auth_retry = 0.2")
        + """
    [instances.cam-auth]
    kind = "tp_devices.camera"
    settings = { behaviour = "auth_once" }
    """
    )
    async with run_hub(config, tmp_path, wait=False) as hub:
        events = record(hub, "camera.health.>", "hub.unit.>")
        health = await events.wait_for("camera.health.auth_failed", subject="cam-auth", timeout=5)
        assert "rejected user" in health.data.reason
        await wait_for_state(hub, "cam-auth", UnitState.NEEDS_AUTH)
        assert "rejected user" in hub.status_of("cam-auth").reason
        # After needs_auth_retry the hub restarts the driver, and the camera works again.
        await events.wait_for("camera.health.ok", subject="cam-auth", timeout=5)
        states = [s.state for s in hub.supervisor.history if s.name == "cam-auth"]
        assert states[-3:] == [UnitState.NEEDS_AUTH, UnitState.STARTING, UnitState.RUNNING]
