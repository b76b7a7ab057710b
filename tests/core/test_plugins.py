"""Plugin loading and containment, through real entry points.

The fixture installs a distribution of test-only plugins the way pip would (a ``dist-info``
with ``entry_points.txt`` on ``sys.path``), so discovery, selective import and isolation are
exercised exactly as in production.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nabat.config import ConfigInvalid
from nabat.interfaces import UnitKind, UnitState
from nabat.plugins import discover
from nabat.testing import load_config_text, record, run_hub

BASE = """
[hub]
data_dir = "data"
startup_timeout = 0.5
language = "en"
retry_initial = 0.05
retry_max = 0.2
needs_auth_retry = 30
"""


def test_discovery_lists_installed_plugins_without_importing_them(
    test_plugins, tmp_path, monkeypatch
):
    marker = tmp_path / "marker"
    monkeypatch.setenv("NABAT_TP_MARKER", str(marker))
    found, _ = discover()
    assert {"tp_good", "tp_never", "tp_broken", "eventlog", "watch"} <= set(found)
    assert found["tp_good"].distribution == "nabat-test-plugins"
    assert found["tp_good"].version == "1.2.3"
    assert found["eventlog"].builtin and not found["tp_good"].builtin
    assert not marker.exists()


async def test_faulty_plugins_are_contained_and_the_hub_runs_without_them(
    test_plugins, tmp_path, monkeypatch
):
    marker = tmp_path / "marker"
    monkeypatch.setenv("NABAT_TP_MARKER", str(marker))
    config = (
        BASE
        + """
    [plugins.tp_good]
    [plugins.tp_broken]
    [plugins.tp_raises]
    [plugins.tp_hangs]
    [plugins.tp_flaky]
    [plugins.tp_auth]
    [plugins.tp_badhook]
    [plugins.tp_slow_import]
    [plugins.tp_observer]
    [plugins.tp_never]
    enabled = false
    [plugins.not_installed_anywhere]

    [instances.pager-1]
    kind = "tp_good.pager"
    """
    )
    async with run_hub(config, tmp_path) as hub:
        states = record(hub, "hub.unit.>")
        status = {
            name: hub.supervisor.status_of_plugin(name)
            for name in (
                "tp_good",
                "tp_broken",
                "tp_raises",
                "tp_hangs",
                "tp_auth",
                "tp_badhook",
                "tp_slow_import",
                "tp_never",
                "not_installed_anywhere",
            )
        }
        assert status["tp_good"].state == UnitState.RUNNING
        assert status["tp_broken"].state == UnitState.FAILED
        assert "vendor SDK libfoo.so is missing" in status["tp_broken"].reason
        assert status["tp_raises"].state == UnitState.FAILED
        assert "boom in startup" in status["tp_raises"].reason
        assert status["tp_hangs"].state == UnitState.RETRYING
        assert "did not finish within 0.5 s" in status["tp_hangs"].reason
        assert status["tp_auth"].state == UnitState.NEEDS_AUTH
        assert "token rejected" in status["tp_auth"].reason
        assert status["tp_badhook"].state == UnitState.FAILED
        assert "unexpected_argument" in status["tp_badhook"].reason
        assert status["tp_slow_import"].state == UnitState.FAILED
        assert "did not finish" in status["tp_slow_import"].reason
        assert status["tp_never"].state == UnitState.DISABLED
        assert status["not_installed_anywhere"].state == UnitState.FAILED
        assert not marker.exists(), "a disabled plugin must never be imported"

        # The transient one comes up after two retries, with backoff, on its own.
        if hub.state_of("tp_flaky") != UnitState.RUNNING:
            await states.wait_for("hub.unit.running", subject="tp_flaky", timeout=5)
        flaky = [s for s in hub.supervisor.history if s.name == "tp_flaky"]
        assert [s.state for s in flaky] == ["starting", "retrying", "retrying", "running"]
        assert flaky[1].retry_in_s > 0 and "attempt 1" in flaky[1].reason

        # The healthy plugin and its instance work while the others are down.
        assert hub.state_of("pager-1") == UnitState.RUNNING
        from nabat.events import Event

        await hub.publish(Event(type="test.ping", source="/t"))
        await hub.bus.drain()
        assert "test.ping" in [e.type for e in sys.modules["tp_good"].seen]
        # Observers heard about the contained faults.
        faults = sys.modules["tp_observer"].faults
        assert ("tp_raises", "RuntimeError", "startup") in faults


@pytest.mark.parametrize(
    ("behaviour", "state", "reason"),
    [
        ("auth", UnitState.NEEDS_AUTH, "rejected the API key"),
        ("transient", UnitState.RETRYING, "gateway unreachable"),
        ("config", UnitState.FAILED, "gateway URL has no host"),
        ("hang", UnitState.RETRYING, "timed out"),
        ("bug", UnitState.FAILED, "unexpected ZeroDivisionError: driver bug"),
    ],
)
async def test_driver_start_errors_map_to_states(test_plugins, tmp_path, behaviour, state, reason):
    config = (
        BASE
        + f"""
    [plugins.tp_good]
    [instances.pager-{behaviour}]
    kind = "tp_good.pager"
    timeout = 0.3
    settings = {{ behaviour = "{behaviour}" }}

    [instances.pager-ok]
    kind = "tp_good.pager"
    """
    )
    async with run_hub(config, tmp_path) as hub:
        events = record(hub, "hub.unit.>")
        name = f"pager-{behaviour}"
        if hub.state_of(name) != state:
            await events.wait_for(f"hub.unit.{state.value}", subject=name, timeout=5)
        status = hub.supervisor.status(UnitKind.INSTANCE, name)
        assert status.state == state
        assert reason in status.reason
        assert hub.state_of("pager-ok") == UnitState.RUNNING


async def test_a_retrying_driver_recovers_by_itself(test_plugins, tmp_path):
    config = (
        BASE
        + """
    [plugins.tp_good]
    [instances.pager-flaky]
    kind = "tp_good.pager"
    settings = { behaviour = "transient", fail_times = 2 }
    """
    )
    async with run_hub(config, tmp_path, wait=False) as hub:
        events = record(hub, "hub.unit.>")
        if hub.state_of("pager-flaky") != UnitState.RUNNING:
            await events.wait_for("hub.unit.running", subject="pager-flaky", timeout=5)
        flaky = [s.state for s in hub.supervisor.history if s.name == "pager-flaky"]
        assert flaky == ["starting", "retrying", "retrying", "running"]


async def test_bad_settings_fail_the_plugin_with_the_key_path(test_plugins, tmp_path):
    config = (
        BASE
        + """
    [plugins.tp_good]
    settings = { greting = "typo" }

    [instances.pager-1]
    kind = "tp_good.pager"
    settings = { behaviour = 7 }
    """
    )
    async with run_hub(config, tmp_path) as hub:
        paths = {i.path: i for i in hub.issues}
        assert paths["plugins.tp_good.settings.greting"].reason == "unknown key"
        assert paths["plugins.tp_good.settings.greting"].line is not None
        assert hub.state_of("tp_good") == UnitState.FAILED
        assert hub.state_of("pager-1") == UnitState.FAILED
        assert hub.state_of("eventlog") == UnitState.RUNNING


async def test_instance_settings_errors_name_the_key(test_plugins, tmp_path):
    config = (
        BASE
        + """
    [plugins.tp_good]

    [instances.pager-1]
    kind = "tp_good.pager"
    settings = { behaviour = 7 }

    [instances.pager-2]
    kind = "tp_good.nonexistent"
    """
    )
    loaded = load_config_text(config, tmp_path)
    from nabat.hub import Hub

    hub = Hub(loaded)
    issues = {i.path: i for i in await hub.prepare()}
    assert "Expected `str`, got `int`" in issues["instances.pager-1.settings.behaviour"].reason
    assert "unknown driver kind 'tp_good.nonexistent'" in issues["instances.pager-2.kind"].reason
    assert "tp_good.pager" in issues["instances.pager-2.kind"].reason


def test_config_loader_refuses_unknown_keys_before_plugins(tmp_path):
    with pytest.raises(ConfigInvalid):
        load_config_text("[plugins.x]\nenabeld = true\n", Path(tmp_path))
