"""The ``nabat`` command, run as a real process the way an integrator runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from nabat.testing import free_port, run_cli

ROOT = Path(__file__).resolve().parents[2]


nabat = run_cli


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The root plugins.toml, copied so the hub's data directory lands in tmp_path (and the
    API on a free port, so a busy 8080 cannot fail the suite)."""
    text = (ROOT / "plugins.toml").read_text(encoding="utf-8")
    assert 'listen = "127.0.0.1:8080"' in text
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{free_port()}")
    (tmp_path / "plugins.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_version(tmp_path):
    out = nabat("version", cwd=tmp_path)
    assert out.returncode == 0
    assert out.stdout.startswith("nabat 0.1.0 (Python 3.")
    assert "nabat-simulator" in out.stdout


def test_config_check_accepts_the_shipped_configuration(demo):
    out = nabat("config", "check", cwd=demo)
    assert out.returncode == 0, out.stderr
    assert "is valid: 5 plugins enabled, 7 instances" in out.stdout


def test_config_check_lists_every_problem_with_file_line_and_key(tmp_path):
    (tmp_path / "bad.toml").write_text(
        '[hub]\nlog_level = "loud"\n\n[plugins.simulator]\nsettings = { incident_evry = 3 }\n\n'
        '[instances.cam-1]\nkind = "simulator.camera"\nmunicipality = "krasnodar"\n'
        'settings = { fault_rate = "often" }\n'
    )
    out = nabat("config", "check", "bad.toml", cwd=tmp_path)
    assert out.returncode == 1
    assert "bad.toml:2: hub.log_level: Invalid enum value 'loud'" in out.stderr
    # Plugin and driver settings are checked once the core tables are valid (the plugins
    # must be loaded to know their settings types): fix, rerun, and the rest shows.
    fixed = (tmp_path / "bad.toml").read_text().replace('log_level = "loud"', 'log_level = "info"')
    (tmp_path / "bad.toml").write_text(fixed)
    out = nabat("config", "check", "bad.toml", cwd=tmp_path)
    assert out.returncode == 1
    assert "bad.toml:5: plugins.simulator.settings.incident_evry: unknown key" in out.stderr
    assert (
        "bad.toml:10: instances.cam-1.settings.fault_rate: Expected `float`, got `str`"
        in out.stderr
    )


def test_config_show_resolves_defaults_and_masks_secrets(tmp_path, test_plugins):
    (tmp_path / "plugins.toml").write_text(
        '[plugins.tp_good]\nsettings = { api_key = { env = "TP_API_KEY" }, '
        'endpoint = "https://ops:s3cr3t@gw.example/api" }\n'
    )
    env = {"TP_API_KEY": "key-12345", "PYTHONPATH": str(test_plugins)}
    out = nabat("config", "show", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    settings = shown["plugins"]["tp_good"]["settings"]
    assert settings["api_key"] == "***"
    assert settings["endpoint"] == "https://ops:***@gw.example/api"
    assert settings["greeting"] == "hi"  # default filled in
    assert shown["hub"]["retry_max"] == 300.0
    assert "key-12345" not in out.stdout and "s3cr3t" not in out.stdout


def test_plugins_lists_what_is_installed_enabled_and_loadable(demo):
    out = nabat("plugins", "--json", cwd=demo)
    assert out.returncode == 0, out.stderr
    listed = {p["plugin"]: p for p in json.loads(out.stdout)["plugins"]}
    assert listed["simulator"]["enabled"] and listed["simulator"]["state"] == "ready"
    assert listed["simulator"]["drivers"] == ["simulator.camera", "simulator.siren"]
    assert listed["eventlog"]["distribution"] == "nabat"
    assert listed["example_siren"]["enabled"] is False
    assert listed["example_siren"]["state"] == "disabled"
    table = nabat("plugins", cwd=demo)
    assert "simulator" in table.stdout and "krd-cam-001" in table.stdout


@asynccontextmanager
async def running_hub(cwd: Path, env: dict[str, str] | None = None):
    """``nabat run`` as a real process; killed at the end if a test left it running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nabat",
        "run",
        cwd=cwd,
        env={**os.environ, "NABAT_LANG": "en", **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop_hub(
    proc: asyncio.subprocess.Process, signum: int = signal.SIGTERM
) -> tuple[int, str]:
    """Send ``signum``; return the exit code and what the hub logged while stopping."""
    proc.send_signal(signum)
    async with asyncio.timeout(20):
        rest = (await proc.stderr.read()).decode()
        return await proc.wait(), rest


async def _read_until(
    stream: asyncio.StreamReader, wanted: set[str], timeout: float, key: str = "type"
) -> list[dict]:
    lines: list[dict] = []
    async with asyncio.timeout(timeout):
        while wanted:
            raw = await stream.readline()
            if not raw:
                break
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # the human banner
            lines.append(line)
            wanted.discard(line.get(key))
    return lines


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_run_logs_events_from_the_first_second_and_stops_cleanly(demo, signum):
    async with running_hub(demo) as proc:
        started = asyncio.get_running_loop().time()
        wanted = {"camera.health.ok", "siren.status.idle"}
        lines = await _read_until(proc.stderr, set(wanted), timeout=10)
        elapsed = asyncio.get_running_loop().time() - started
        events = [line for line in lines if line.get("event") == "event"]
        assert {e["type"] for e in events} >= wanted
        assert all(line["ts"].endswith("Z") and "level" in line for line in lines)
        assert elapsed < 10
        code, rest = await stop_hub(proc, signum)
    assert code == 0
    assert '"event":"hub.stopping"' in rest and '"event":"hub.stopped"' in rest
    assert "Nabat hub stopped." in rest
    assert "undelivered_at_shutdown" not in rest


async def test_the_demo_serves_the_api_to_a_token_made_with_the_cli(demo):
    made = nabat(
        "tokens",
        "create",
        "--name",
        "ops-desk",
        "--scopes",
        "events:write,events:read",
        "--municipality",
        "sochi",
        cwd=demo,
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("nabat_") and "shown only now" in made.stderr
    listed = nabat("tokens", "list", cwd=demo)
    assert "ops-desk" in listed.stdout and secret not in listed.stdout
    async with running_hub(demo) as proc:
        [ready] = [
            line
            for line in await _read_until(proc.stderr, {"api.listening"}, timeout=20, key="event")
            if line.get("event") == "api.listening"
        ]
        headers = {"Authorization": f"Bearer {secret}"}
        event = {
            "specversion": "1.0",
            "id": "card-1",
            "source": "urn:112:sochi",
            "type": "incident.created",
            "municipality": "sochi",
            "data": {"text": "ДТП"},
        }
        async with httpx.AsyncClient(base_url=ready["url"], headers=headers) as http:
            assert (await http.get("/health")).status_code == 200
            posted = await http.post("/api/v1/events", json=event)
            assert posted.status_code == 202, posted.text
            found = await http.get("/api/v1/events", params={"type": "incident.created"})
            ids = [item["event"]["id"] for item in found.json()["events"]]
            assert "card-1" in ids
        code, rest = await stop_hub(proc)
    assert code == 0
    assert '"event":"api.stopped"' in rest and '"event":"hub.stopped"' in rest
    revoked = nabat("tokens", "revoke", "ops-desk", cwd=demo)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout


def test_run_refuses_an_invalid_configuration(tmp_path):
    (tmp_path / "plugins.toml").write_text("[hub]\nnmae = 1\n")
    out = nabat("run", cwd=tmp_path, timeout=30)
    assert out.returncode == 1
    assert "plugins.toml:2: hub.nmae: unknown key" in out.stderr


async def test_a_plugin_that_blocks_forever_neither_hangs_the_cli_nor_the_hub(
    tmp_path, test_plugins
):
    (tmp_path / "plugins.toml").write_text(
        "[hub]\nstartup_timeout = 1.0\nretry_initial = 0.2\nretry_max = 0.5\n"
        "[plugins.tp_import_hangs]\n[plugins.tp_blocks]\n[plugins.simulator]\n"
        "settings = { incident_every = 0.2 }\n"
        '[instances.cam]\nkind = "simulator.camera"\nmunicipality = "sochi"\n'
    )
    env = {"PYTHONPATH": str(test_plugins)}
    checked = nabat("config", "check", cwd=tmp_path, env=env, timeout=30)
    assert checked.returncode == 1
    assert "plugins.tp_import_hangs: import did not finish within 1 s" in checked.stderr

    async with running_hub(tmp_path, env) as proc:
        # The blocked plugin is retried (without a new thread each time) while the rest works.
        await _read_until(proc.stderr, {"incident.created"}, timeout=15)
        code, rest = await stop_hub(proc)
    assert code == 0 and '"event":"hub.stopped"' in rest


async def test_run_starts_without_an_instance_whose_table_is_broken(tmp_path):
    (tmp_path / "plugins.toml").write_text(
        "[plugins.simulator]\nsettings = { incident_every = 0.2 }\n"
        '[instances.good]\nkind = "simulator.camera"\nmunicipality = "sochi"\n'
        '[instances.typo]\nkind = "simulator.camera"\nmunicipalty = "sochi"\n'
    )
    checked = nabat("config", "check", cwd=tmp_path)
    assert checked.returncode == 1 and "instances.typo.municipalty: unknown key" in checked.stderr
    async with running_hub(tmp_path) as proc:
        lines = await _read_until(proc.stderr, {"camera.health.ok"}, timeout=15)
        await stop_hub(proc)
    failed = [
        line for line in lines if line.get("event") == "unit.state" and line.get("name") == "typo"
    ]
    assert failed and failed[0]["state"] == "failed"
    assert "municipalty: unknown key" in failed[0]["reason"]
    assert any(line.get("subject") == "good" for line in lines)


def test_cameras_list_shows_the_configured_cameras_too(demo):
    """The demo's five cameras are in plugins.toml, not imported: the list shows them (it said
    «no cameras» while the report counted five)."""
    out = nabat("cameras", "list", cwd=demo)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "MUNICIPALITY", "DRIVER", "URL", "TAGS"]
    ids = [line.split()[0] for line in lines[1:-1]]
    assert ids == [
        "krd-cam-001",
        "krd-cam-002",
        "sochi-cam-001",
        "nvrsk-cam-001",
        "tuapse-cam-001",
    ]
    assert lines[-1] == "5 from plugins.toml, 0 from the inventory"
    assert "krd-siren-01" not in out.stdout  # sirens are not cameras
    only = nabat("cameras", "list", "--municipality", "sochi", "--json", cwd=demo)
    [camera] = json.loads(only.stdout)
    assert camera["id"] == "sochi-cam-001" and camera["source"] == "config"
    assert camera["driver"] == "simulator.camera"


def test_cli_tables_are_in_the_hub_language(demo):
    """[hub] language = "ru" (the demo's): headings and cells in Russian, as the rows' text."""
    russian = nabat("cameras", "list", cwd=demo, env={"NABAT_LANG": ""})
    assert russian.returncode == 0, russian.stderr
    head = russian.stdout.splitlines()[0]
    assert head.split() == ["ИД", "НАЗВАНИЕ", "МУНИЦИПАЛИТЕТ", "ДРАЙВЕР", "АДРЕС", "МЕТКИ"]
    assert "из plugins.toml: 5, из реестра: 0" in russian.stdout
    report = nabat("report", "cameras", cwd=demo, env={"NABAT_LANG": ""})
    assert report.returncode == 0, report.stderr
    heading = next(line for line in report.stdout.splitlines() if "МУНИЦИПАЛИТЕТ" in line)
    assert "ВСЕГО" in heading and "TOTAL" not in heading
    assert not any(word in report.stdout for word in ("MUNICIPALITY", "AVAIL", "LAGGING"))
    english = nabat("report", "cameras", cwd=demo)
    assert "MUNICIPALITY" in english.stdout and "МУНИЦИПАЛИТЕТ" not in english.stdout
