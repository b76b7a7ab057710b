"""The example siren plugin, driven through a real hub against a fake controller on a socket.

The hub finds the plugin the way production does: through the ``nabat`` entry point of the
installed distribution, enabled by ``plugins.toml`` text — no plugin object is handed to it.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from importlib.metadata import entry_points

import pytest
from nabat.interfaces import (
    ActivationOutcome,
    Alert,
    AlertDevice,
    AuthError,
    CapSeverity,
    Certainty,
    DeviceState,
    DriverError,
    Info,
    MsgType,
    Status,
    TransientError,
    Urgency,
    WarningMessage,
)
from nabat.testing import record, run_hub

PASSWORD = "s3cret-Pa55"  # the fake controller's default password (conftest.PASSWORD)
MESSAGE = WarningMessage(signal_seconds=180, repeat=2)


def flood_alert(identifier: str = "krd-2024-000117") -> Alert:
    return Alert(
        identifier=identifier,
        sender="edds@krasnodar.example",
        sent=datetime.now(UTC),
        status=Status.ACTUAL,
        msg_type=MsgType.ALERT,
        info=[
            Info(
                event="Угроза подтопления",
                urgency=Urgency.IMMEDIATE,
                severity=CapSeverity.SEVERE,
                certainty=Certainty.OBSERVED,
            )
        ],
    )


def siren(hub) -> AlertDevice:
    device = hub.instance("siren-1")
    assert isinstance(device, AlertDevice)
    return device


# -- discovery and start ----------------------------------------------------------------------
def test_the_distribution_declares_the_entry_point():
    (ep,) = entry_points(group="nabat", name="example_siren")
    assert ep.value == "nabat_example_siren.plugin"
    assert ep.dist is not None and ep.dist.metadata["Name"] == "nabat-example-siren"


async def test_the_hub_discovers_the_plugin_and_starts_the_instance(
    controller, hub_config, wait_state, tmp_path
):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        events = record(hub, "hub.unit.>")
        await wait_state(hub, events, "siren-1", "running")
        assert hub.state_of("example_siren") == "running"
        assert hub.instance("siren-1").kind == "example_siren.controller"
        # start() verified the controller: logged in, then read its status.
        assert controller.commands == [f"AUTH {PASSWORD}", "STATUS"]


# -- activation -------------------------------------------------------------------------------
async def test_activation_reaches_the_controller(controller, hub_config, tmp_path):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        result = await siren(hub).activate(flood_alert(), MESSAGE)

        assert result.outcome == ActivationOutcome.ACTIVATED
        assert result.alert_identifier == "krd-2024-000117"
        assert controller.verbs("ACTIVATE") == ["ACTIVATE krd-2024-000117 180 2"]
        assert controller.soundings == ["krd-2024-000117"]
        status = await siren(hub).status()
        assert status.state == DeviceState.ACTIVE
        assert status.active_alert == "krd-2024-000117"


async def test_a_repeated_activation_is_not_sent_again(controller, hub_config, tmp_path):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        device = siren(hub)
        first = await device.activate(flood_alert(), MESSAGE)
        again = await device.activate(flood_alert(), MESSAGE)
        # Two callers racing with one new alert: still one command.
        racing = await asyncio.gather(
            *(device.activate(flood_alert("krd-2"), MESSAGE) for _ in range(3))
        )

        assert again == first
        assert {r.outcome for r in racing} == {ActivationOutcome.ACTIVATED}
        assert controller.verbs("ACTIVATE") == [
            "ACTIVATE krd-2024-000117 180 2",
            "ACTIVATE krd-2 180 2",
        ]


async def test_an_unanswered_activation_is_unreachable_and_a_retry_does_not_sound_twice(
    controller, hub_config, tmp_path
):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        device = siren(hub)
        controller.hang.add("ACTIVATE")  # the siren sounds, but the answer is lost

        lost = await device.activate(flood_alert(), MESSAGE)

        # The driver's own timeout (settings.timeout = 0.5 s) answered, not the hub's.
        assert lost.outcome == ActivationOutcome.UNREACHABLE
        assert "did not answer within 0.5 s" in lost.detail
        controller.hang.clear()
        retried = await device.activate(flood_alert(), MESSAGE)
        assert retried.outcome == ActivationOutcome.ACTIVATED
        # Not confirmed, so the driver sent it again; the controller deduped by alert id.
        assert len(controller.verbs("ACTIVATE")) == 2
        assert controller.soundings == ["krd-2024-000117"]
        # The cancelled call left the driver usable.
        assert (await device.status()).state == DeviceState.ACTIVE


async def test_a_refused_activation_fails_with_the_reason_and_may_be_retried(
    controller, hub_config, tmp_path
):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        device = siren(hub)
        controller.replies["ACTIVATE"] = "ERR amplifier fault"

        refused = await device.activate(flood_alert(), MESSAGE)

        assert refused.outcome == ActivationOutcome.FAILED
        assert refused.detail == "amplifier fault"
        del controller.replies["ACTIVATE"]
        retried = await device.activate(flood_alert(), MESSAGE)
        assert retried.outcome == ActivationOutcome.ACTIVATED
        assert len(controller.verbs("ACTIVATE")) == 2


async def test_cancel_silences_and_the_alert_is_not_sounded_again(controller, hub_config, tmp_path):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        device = siren(hub)
        await device.activate(flood_alert(), MESSAGE)

        cancelled = await device.cancel("krd-2024-000117")
        late_retry = await device.activate(flood_alert(), MESSAGE)

        assert cancelled.outcome == ActivationOutcome.CANCELLED
        assert (await device.status()).state == DeviceState.IDLE
        assert late_retry == cancelled
        assert len(controller.verbs("ACTIVATE")) == 1


async def test_an_unreachable_controller_gives_an_unreachable_result(
    controller, hub_config, tmp_path
):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        device = siren(hub)
        await controller.close()

        result = await device.activate(flood_alert(), MESSAGE)

        assert result.outcome == ActivationOutcome.UNREACHABLE
        assert "refused the connection" in result.detail
        with pytest.raises(TransientError, match="refused the connection"):
            await device.status()


async def test_an_identifier_the_protocol_cannot_carry_fails_without_sending(
    controller, hub_config, tmp_path
):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        result = await siren(hub).activate(flood_alert("two words"), MESSAGE)
        assert result.outcome == ActivationOutcome.FAILED
        assert controller.verbs("ACTIVATE") == []


# -- states: needs_auth, retrying ----------------------------------------------------------
async def test_a_wrong_password_puts_the_instance_in_needs_auth(
    make_controller, hub_config, wait_state, tmp_path
):
    fake = await make_controller(password="another-password").start()
    async with run_hub(hub_config(fake.port), tmp_path) as hub:
        events = record(hub, "hub.unit.>")
        await wait_state(hub, events, "siren-1", "needs_auth")
        # needs_auth is retried (every 0.05 s here): the next attempt says why.
        event = await events.wait_for("hub.unit.needs_auth", subject="siren-1")
        assert "rejected the password" in event.data.reason
        assert all(PASSWORD not in repr(e) for e in events.events)
        assert fake.verbs("STATUS") == []  # it stopped at AUTH
        assert hub.state_of("example_siren") == "running"  # the plugin itself is fine


async def test_a_missing_password_puts_the_instance_in_needs_auth(
    controller, hub_config, wait_state, tmp_path
):
    config = hub_config(
        controller.port, settings=f'host = "127.0.0.1", port = {controller.port}, timeout = 0.5'
    )
    async with run_hub(config, tmp_path) as hub:
        events = record(hub, "hub.unit.>")
        await wait_state(hub, events, "siren-1", "needs_auth")
        event = await events.wait_for("hub.unit.needs_auth", subject="siren-1")
        assert "requires a password and none is configured" in event.data.reason


async def test_a_controller_not_listening_is_retrying_then_recovers(
    make_controller, closed_port, hub_config, wait_state, tmp_path
):
    async with run_hub(hub_config(closed_port), tmp_path) as hub:
        events = record(hub, "hub.unit.>")
        await wait_state(hub, events, "siren-1", "retrying")
        event = await events.wait_for("hub.unit.retrying", subject="siren-1")
        assert "refused the connection" in event.data.reason

        await make_controller(port=closed_port).start()  # the controller comes back

        await events.wait_for("hub.unit.running", subject="siren-1")
        assert hub.state_of("siren-1") == "running"


async def test_a_hanging_controller_times_out_at_start_and_is_retrying(
    controller, hub_config, wait_state, tmp_path
):
    controller.hang.add("STATUS")  # accepts, logs in, never answers STATUS
    async with run_hub(hub_config(controller.port, timeout=10), tmp_path) as hub:
        events = record(hub, "hub.unit.>")
        await wait_state(hub, events, "siren-1", "retrying")
        event = await events.wait_for("hub.unit.retrying", subject="siren-1")
        # The driver's own 0.5 s bound fired, well inside the hub's outer 10 s limit.
        assert "did not answer within 0.5 s" in event.data.reason
        await controller.wait_for_command("STATUS", count=2)  # and it keeps trying

        controller.hang.clear()
        await events.wait_for("hub.unit.running", subject="siren-1")


async def test_bad_settings_fail_only_their_instance(controller, hub_config, tmp_path):
    extra = f"""
    [instances.siren-typo]
    kind = "example_siren.controller"
    settings = {{ host = "127.0.0.1", port = {controller.port}, pasword = "x" }}

    [instances.siren-inline-secret]
    kind = "example_siren.controller"
    settings = {{ host = "127.0.0.1", port = {controller.port}, password = "written-inline" }}
    """
    async with run_hub(hub_config(controller.port, extra=extra), tmp_path) as hub:
        assert hub.state_of("siren-typo") == "failed"
        assert hub.state_of("siren-inline-secret") == "failed"
        assert hub.state_of("siren-1") == "running"


# -- status and self-test -------------------------------------------------------------------
async def test_status_reports_power_tamper_and_battery(controller, hub_config, tmp_path):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        controller.mains, controller.battery, controller.tamper = 0, 41, 1

        status = await siren(hub).status()

        assert status.state == DeviceState.IDLE
        assert status.mains_ok is False
        assert status.battery_pct == 41
        assert status.tamper is True
        assert status.active_alert is None
        assert "mains power lost" in status.detail and "tamper" in status.detail


async def test_the_builtin_watch_polls_the_controller(controller, hub_config, tmp_path):
    config = hub_config(
        controller.port, watch="enabled = true\nsettings = { device_interval = 0.2, jitter = 0 }"
    )
    async with run_hub(config, tmp_path) as hub:
        changes = record(hub, "siren.status.>")
        controller.state, controller.mains = "fault", 0

        event = await changes.wait_for("siren.status.fault", subject="siren-1")

        assert event.municipality == "krasnodar"
        assert event.data.mains_ok is False
        assert "mains power lost" in event.data.detail


async def test_self_test(controller, hub_config, tmp_path):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        device = siren(hub)
        silent = await device.self_test()
        assert silent.passed and not silent.audible
        assert controller.verbs("TEST") == ["TEST 0"]

        controller.replies["TEST"] = "ERR speaker line 2 open"
        failed = await device.self_test(audible=True)
        assert not failed.passed and failed.audible
        assert failed.detail == "speaker line 2 open"
        assert controller.verbs("TEST") == ["TEST 0", "TEST 1"]


# -- replies the driver must not trust ------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("HELLO", "unexpected reply to STATUS"),
        ("OK state=sleeping", "unknown state"),
        ("OK mains=1", "no state"),
        ("OK " + "x" * 2000, "longer than 1024 bytes"),
        (f"ERR bad password {PASSWORD}", "controller refused: bad password ***"),
    ],
)
async def test_bad_replies_raise_driver_errors_without_secrets(
    controller, hub_config, tmp_path, reply, error
):
    async with run_hub(hub_config(controller.port), tmp_path) as hub:
        controller.replies["STATUS"] = reply
        with pytest.raises(DriverError, match=re.escape(error)) as caught:
            await siren(hub).status()
        assert not isinstance(caught.value, TransientError | AuthError)
        assert PASSWORD not in str(caught.value)
