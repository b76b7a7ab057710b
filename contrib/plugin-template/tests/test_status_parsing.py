"""The STATUS reply parser, on its own (no hub, no socket)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nabat.interfaces import DeviceState, DriverError
from nabat_example_siren import parse_status

AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_a_full_idle_reply():
    status = parse_status("state=idle mains=1 battery=97 tamper=0 alert=-", AT)
    assert status.state == DeviceState.IDLE
    assert status.checked_at == AT
    assert (status.mains_ok, status.battery_pct, status.tamper) == (True, 97.0, False)
    assert status.active_alert is None
    assert status.detail == ""


def test_an_active_controller_on_battery_with_the_tamper_switch_open():
    status = parse_status("state=active mains=0 battery=63.5 tamper=1 alert=krd-2024-000117")
    assert status.state == DeviceState.ACTIVE
    assert status.active_alert == "krd-2024-000117"
    assert status.battery_pct == 63.5
    assert status.detail == "on battery: mains power lost; tamper switch open"


def test_only_state_is_required_and_unknown_keys_are_ignored():
    status = parse_status("state=fault fw=2.4.1 temp=41")
    assert status.state == DeviceState.FAULT
    assert (status.mains_ok, status.battery_pct, status.tamper) == (None, None, None)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "no state"),
        ("mains=1 battery=97", "no state"),
        ("state=sleeping", "unknown state"),
        ("state=idle mains=yes", "mains='yes' is not 0 or 1"),
        ("state=idle tamper=2", "tamper='2' is not 0 or 1"),
        ("state=idle battery=full", "battery='full' is not a number"),
        ("state=idle battery=140", "battery=140 is not 0-100"),
        ("state=idle ACTIVE", "'ACTIVE' is not key=value"),
    ],
)
def test_malformed_replies_are_driver_errors(reply, reason):
    with pytest.raises(DriverError) as caught:
        parse_status(reply)
    assert reason in str(caught.value)
