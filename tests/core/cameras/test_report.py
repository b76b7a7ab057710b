"""The district report: availability from the journal of health changes, counts, targets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from nabat.cameras.report import availability_series, build_report, to_csv
from nabat.cameras.states import CameraState
from nabat.events import Event, EventTypes
from nabat.interfaces import CameraHealthChange, HealthState
from nabat.regions import load_region
from nabat.store import SqliteJournal

T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)
REGION = load_region("krasnodar-krai")


@pytest.fixture
async def journal(tmp_path):
    types = EventTypes()
    types.register("camera.health.*", CameraHealthChange, owner="test")
    j = SqliteJournal(tmp_path / "journal.sqlite3", types=types)
    await j.open()
    yield j
    await j.close()


def change(camera: str, at: datetime, previous: str | None, state: str) -> Event:
    return Event(
        type=f"camera.health.{state}",
        source=f"/nabat/instances/{camera}",
        subject=camera,
        time=at,
        data=CameraHealthChange(
            camera=camera,
            state=HealthState(state),
            previous=None if previous is None else HealthState(previous),
            checked_at=at,
        ),
    )


def current(state: str, since: datetime) -> CameraState:
    return CameraState(state=HealthState(state), since=since, checked_at=since)


async def test_availability_counts_and_lagging(journal):
    await journal.append(
        [
            change("cam-a", T0 - 48 * H, None, "ok"),  # before the period: not read
            change("cam-a", T0 + 6 * H, "ok", "black"),
            change("cam-a", T0 + 9 * H, "black", "ok"),
            change("cam-c", T0 + 6 * H, None, "ok"),  # imported mid-period
            change("cam-d", T0 + 3 * H, "ok", "unreachable"),
            change("cam-d", T0 + 20 * H, "unreachable", "ok"),  # after the period
        ]
    )
    cameras = {
        "cam-a": "krasnodar",
        "cam-c": "krasnodar",
        "cam-b": "sochi",
        "cam-d": "sochi",
        "cam-new": "sochi",
    }
    states = {
        "cam-a": current("ok", T0 + 9 * H),
        "cam-b": current("frozen", T0 - 30 * H),  # frozen all along
        "cam-c": current("ok", T0 + 6 * H),
        "cam-d": current("ok", T0 + 20 * H),
    }
    report = await build_report(
        journal,
        cameras,
        states,
        REGION,
        since=T0,
        until=T0 + 12 * H,
        generated_at=T0 + 12 * H,
        targets={"krasnodar": 2, "sochi": 3, "tuapsinsky": 1},
        availability_target=80.0,
        language="en",
    )
    rows = {r.municipality: r for r in report.districts}
    krd, sochi, tuapse = rows["krasnodar"], rows["sochi"], rows["tuapsinsky"]
    # cam-a: ok 9 of 12 h; cam-c: ok 6 of its 6 known hours → 15 / 18.
    assert krd.availability_pct == pytest.approx(100 * 15 / 18, abs=0.01)
    assert (krd.total, krd.ok, krd.degraded, krd.offline, krd.unknown) == (2, 2, 0, 0, 0)
    assert not krd.lagging and krd.why == []
    # cam-b frozen 12 h, cam-d ok 3 h then unreachable 9 h (its later recovery not counted),
    # cam-new never probed (unknown, no time counted): 3 / 24.
    assert sochi.availability_pct == pytest.approx(12.5)
    assert (sochi.total, sochi.ok, sochi.degraded, sochi.unknown) == (3, 1, 1, 1)
    assert sochi.lagging and len(sochi.why) == 2
    # A district with a target and no camera at all is lagging, availability unknown.
    assert tuapse.total == 0 and tuapse.availability_pct is None and tuapse.lagging
    assert report.total.total == 5
    assert report.total.availability_pct == pytest.approx(100 * 18 / 42, abs=0.01)
    assert report.total.lagging and report.total.why == ["2 of 3 districts lagging"]

    text = to_csv(report)
    lines = text.splitlines()
    assert lines[0].startswith("municipality,name,total,ok,degraded,offline,unknown")
    assert any(line.startswith("sochi,") and ",yes," in line for line in lines)
    assert lines[-1].startswith("total,Total,5,")


async def test_a_district_token_sees_only_its_rows(journal):
    report = await build_report(
        journal,
        {"a": "sochi", "b": "krasnodar"},
        {},
        REGION,
        since=T0,
        until=T0 + H,
        generated_at=T0 + H,
        targets={},
        availability_target=95.0,
        municipalities=("sochi",),
    )
    assert [r.municipality for r in report.districts] == ["sochi"]
    assert report.districts[0].name == "город-курорт Сочи"
    assert report.districts[0].unknown == 1 and report.districts[0].availability_pct is None


async def test_a_period_not_over_yet_is_reported_up_to_now(journal):
    await journal.append([change("cam-a", T0 + 6 * H, "ok", "black")])
    report = await build_report(
        journal,
        {"cam-a": "sochi"},
        {"cam-a": current("black", T0 + 6 * H)},
        REGION,
        since=T0,
        until=T0 + 30 * 24 * H,  # the month is not over
        generated_at=T0 + 12 * H,
        targets={},
        availability_target=95.0,
    )
    assert report.until == T0 + 12 * H
    assert report.districts[0].availability_pct == pytest.approx(50.0)
    with pytest.raises(ValueError, match="not begun"):
        await build_report(
            journal,
            {},
            {},
            REGION,
            since=T0 + 24 * H,
            until=T0 + 48 * H,
            generated_at=T0,
            targets={},
            availability_target=95.0,
        )


async def test_a_period_must_be_positive(journal):
    with pytest.raises(ValueError, match="since must be before until"):
        await build_report(
            journal,
            {},
            {},
            REGION,
            since=T0,
            until=T0,
            generated_at=T0,
            targets={},
            availability_target=95.0,
        )


async def test_availability_over_time_in_buckets(journal):
    await journal.append(
        [
            change("cam-a", T0 + 1 * H, None, "ok"),
            change("cam-a", T0 + 6 * H, "ok", "unreachable"),  # down 6-9 h
            change("cam-a", T0 + 9 * H, "unreachable", "ok"),
            change("cam-b", T0 + 2 * H, None, "black"),  # black from 2 h on
        ]
    )
    series = await availability_series(
        journal,
        {"cam-a": "krasnodar", "cam-b": "sochi"},
        {"cam-a": current("ok", T0 + 9 * H), "cam-b": current("black", T0 + 2 * H)},
        REGION,
        since=T0,
        until=T0 + 12 * H,
        step=4 * H,
        generated_at=T0 + 11 * H,  # the last bucket is reported up to now
        availability_target=95.0,
        language="en",
    )
    assert series.buckets == [T0, T0 + 4 * H, T0 + 8 * H]
    rows = {r.municipality: r.availability_pct for r in series.districts}
    # cam-a: known from 1 h; 0-4: ok 3/3; 4-8: ok 2/4; 8-11: ok 2/3.
    assert rows["krasnodar"] == [100.0, 50.0, pytest.approx(66.67, abs=0.01)]
    assert rows["sochi"] == [0.0, 0.0, 0.0]
    # Region: 0-4: 3 ok of 3 + 2 known; 4-8: 2 of 8; 8-11: 2 of 6.
    assert series.total.availability_pct == [60.0, 25.0, pytest.approx(33.33, abs=0.01)]
    with pytest.raises(ValueError, match="before now"):
        await availability_series(
            journal,
            {},
            {},
            REGION,
            since=T0 + 12 * H,
            until=T0 + 13 * H,
            step=H,
            generated_at=T0,
            availability_target=95.0,
        )
