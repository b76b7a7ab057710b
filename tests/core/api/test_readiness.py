"""Readiness of warning devices: the technical (silent) and comprehensive (audible, a Test
alert) checks, the per-municipality report over HTTP and from the CLI, and the schedule."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from nabat.config import ConfigInvalid
from nabat.hookspecs import hookimpl
from nabat.interfaces import (
    ActivationOutcome,
    ActivationResult,
    AlertDevice,
    DeviceState,
    DeviceStatus,
    SelfTestResult,
)
from nabat.testing import load_config_text, run_cli


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    state: str = "idle"
    mains_ok: bool = True
    battery: float = 100.0
    self_test: bool = True


class Panel(AlertDevice):
    kind = "readytest.siren"
    Settings = Settings

    def __init__(self, context, settings) -> None:
        super().__init__(context, settings)
        self.audible_tests = 0

    async def activate(self, alert, message):
        ok = self.settings.state != "fault"
        return ActivationResult(
            alert_identifier=alert.identifier,
            outcome=ActivationOutcome.ACTIVATED if ok else ActivationOutcome.FAILED,
            at=datetime.now(UTC),
            detail="sounding" if ok else "amplifier fault",
        )

    async def cancel(self, alert_identifier):
        return ActivationResult(
            alert_identifier=alert_identifier,
            outcome=ActivationOutcome.CANCELLED,
            at=datetime.now(UTC),
        )

    async def status(self):
        return DeviceStatus(
            state=DeviceState(self.settings.state),
            checked_at=datetime.now(UTC),
            mains_ok=self.settings.mains_ok,
            battery_pct=self.settings.battery,
        )

    async def self_test(self, audible=False):
        self.audible_tests += audible
        ok = self.settings.self_test
        return SelfTestResult(
            passed=ok,
            audible=audible,
            at=datetime.now(UTC),
            detail="ok" if ok else "speaker line open",
        )


class Plugin:
    @hookimpl
    def register_drivers(self):
        return [Panel]


def panel(name: str, municipality: str, **settings) -> str:
    body = ", ".join(
        f"{k} = {str(v).lower()}"
        if isinstance(v, bool)
        else f'{k} = "{v}"'
        if isinstance(v, str)
        else f"{k} = {v}"
        for k, v in settings.items()
    )
    return (
        f'[instances.{name}]\nkind = "readytest.siren"\nmunicipality = "{municipality}"\n'
        f"settings = {{ {body} }}\n"
    )


@pytest.fixture
def api_plugins():
    return {"readytest": Plugin()}


@pytest.fixture
def api_config():
    return "\n".join(
        [
            panel("anapa-1", "anapa"),
            panel("anapa-2", "anapa", state="fault"),
            panel("anapa-3", "anapa", mains_ok=False, battery=20.0),
            panel("sochi-1", "sochi"),
            panel("sochi-2", "sochi", self_test=False),
            '[instances.sochi-3]\nkind = "readytest.siren"\nmunicipality = "sochi"\n'
            "settings = { nonsense = 1 }\n",  # cannot start: a failed instance
        ]
    )


async def test_technical_and_comprehensive_checks_and_the_report(api):
    admin = await api.client("admin")
    technical = await admin.post("/api/v1/readiness/technical")
    assert technical.status_code == 200, technical.text
    body = technical.json()
    results = {r["device"]: (r["passed"], r["detail"]) for r in body["results"]}
    assert results["anapa-1"] == (True, "ok")
    assert results["anapa-2"][0] is False and "state fault" in results["anapa-2"][1]
    assert results["anapa-3"] == (False, "no mains, battery 20%")
    assert results["sochi-2"] == (False, "self-test failed: speaker line open")
    assert results["sochi-3"][0] is False and "device not running (failed" in results["sochi-3"][1]
    assert body["passed"] == 2 and body["devices"] == 6
    # Silent: no device sounded.
    assert all(api.hub.instance(d).audible_tests == 0 for d in ("anapa-1", "sochi-1"))

    comprehensive = (await admin.post("/api/v1/readiness/comprehensive")).json()
    outcome = {r["device"]: r["passed"] for r in comprehensive["results"]}
    assert outcome["anapa-1"] and not outcome["anapa-2"] and not outcome["sochi-3"]
    test_alert = await api.hub.alerts.get(comprehensive["results"][0]["check"])
    assert test_alert.alert.status == "Test"  # the population is told it is a test

    reader = await api.client("events:read")
    report = (await reader.get("/api/v1/reports/sirens")).json()
    rows = {r["municipality"]: r for r in report["districts"]}
    assert (rows["anapa"]["devices"], rows["anapa"]["ready"]) == (3, 1)
    assert rows["anapa"]["readiness_pct"] == pytest.approx(33.3)
    assert rows["sochi"]["ready"] == 1
    assert rows["sochi"]["comprehensive_passed"] == 2  # its self-test fails, but it sounds
    assert any(f.startswith("sochi-2: self-test failed") for f in rows["sochi"]["failing"])
    district = await api.client("events:read", municipalities=("sochi",))
    assert [
        r["municipality"]
        for r in (await district.get("/api/v1/reports/sirens")).json()["districts"]
    ] == ["sochi"]
    assert (await reader.post("/api/v1/readiness/technical")).status_code == 403

    # Every device with its state and latest technical result (the console's map).
    sirens = {s["id"]: s for s in (await district.get("/api/v1/sirens")).json()["items"]}
    assert set(sirens) == {"sochi-1", "sochi-2", "sochi-3"}
    assert sirens["sochi-1"]["ready"] is True and sirens["sochi-1"]["instance_state"] == "running"
    assert sirens["sochi-2"]["ready"] is False and "speaker" in sirens["sochi-2"]["detail"]
    assert sirens["sochi-3"]["instance_state"] == "failed"

    # Both checks are scheduled (crontabs of [readiness], the hub's local time).
    assert {"core:readiness-technical", "core:readiness-comprehensive"} <= set(
        api.hub.scheduler.jobs
    )


def test_a_bad_crontab_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigInvalid) as err:
        load_config_text('[readiness]\ntechnical = "every day at nine"\n', tmp_path)
    assert err.value.issues[0].path.startswith("readiness")
    assert "crontab" in err.value.issues[0].reason


async def test_the_cli_report(tmp_path, api, api_config):
    admin = await api.client("admin")
    await admin.post("/api/v1/readiness/technical")
    directory = api.hub.loaded.path.parent
    done = run_cli("report", "sirens", "--config", str(api.hub.loaded.path), cwd=directory)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:4] == [
        "MUNICIPALITY",
        "DEVICES",
        "READY",
        "READINESS",
    ]
    assert "33%" in done.stdout and "speaker line open" in done.stdout
