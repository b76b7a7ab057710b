"""No flapping: a camera is reported down after N bad probes and back after M good ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nabat.cameras.hysteresis import HealthTracker
from nabat.interfaces.camera import CameraHealth, HealthState

OK, BLACK, GONE = HealthState.OK, HealthState.BLACK, HealthState.UNREACHABLE


def run(tracker: HealthTracker, states: list[HealthState]) -> list[HealthState | None]:
    now = datetime.now(UTC)
    return [tracker.observe(CameraHealth(state=s, checked_at=now)) for s in states]


def test_a_good_camera_is_reported_at_once_then_only_on_change():
    assert run(HealthTracker(), [OK, OK, OK]) == [OK, None, None]


def test_one_bad_probe_is_not_an_outage_and_n_in_a_row_are():
    tracker = HealthTracker(fail_after=3, recover_after=2)
    assert run(tracker, [OK, GONE, OK, GONE, GONE, OK]) == [OK, None, None, None, None, None]
    assert run(tracker, [GONE, GONE, GONE]) == [None, None, GONE]


def test_recovery_needs_m_good_probes_in_a_row():
    tracker = HealthTracker(fail_after=2, recover_after=3)
    assert run(tracker, [GONE, GONE]) == [None, GONE]
    assert run(tracker, [OK, OK, GONE, OK, OK, OK]) == [None, None, None, None, None, OK]


def test_a_changed_fault_is_reported_once_it_holds():
    tracker = HealthTracker(fail_after=2, recover_after=2)
    assert run(tracker, [BLACK, BLACK, GONE, BLACK, GONE, GONE]) == [
        None,
        BLACK,
        None,
        None,
        None,
        GONE,
    ]


def test_a_camera_bad_from_the_start_is_reported_after_n():
    assert run(HealthTracker(fail_after=3), [GONE, GONE, GONE, GONE]) == [None, None, GONE, None]


def test_thresholds_must_be_positive():
    with pytest.raises(ValueError):
        HealthTracker(fail_after=0)


def test_rejected_credentials_are_reported_at_once():
    tracker = HealthTracker(fail_after=3)
    assert run(tracker, [OK, HealthState.AUTH_FAILED]) == [OK, HealthState.AUTH_FAILED]


def test_a_refused_destination_is_reported_at_once_and_a_plain_outage_is_not():
    tracker = HealthTracker(fail_after=3)
    now = datetime.now(UTC)
    refused = CameraHealth(state=GONE, checked_at=now, reason_code="destination_refused")
    assert run(tracker, [OK]) == [OK]
    assert tracker.observe(refused) is GONE
    other = HealthTracker(fail_after=3, reported=OK)
    assert run(other, [GONE]) == [None]
