"""contrib/systemd: the unit stays hardened, runs commands that exist, and passes
``systemd-analyze verify`` where that tool is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nabat.cli import cli
from nabat.config.model import HubSettings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "nabat.service"
SYSUSERS = ROOT / "contrib" / "systemd" / "nabat.sysusers"
NABAT = "/opt/nabat/.venv/bin/nabat"
CONFIG = "/etc/nabat/plugins.toml"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → key → every value given (systemd lets a key repeat; an empty value
    resets the list, which is kept here as ``""``)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        assert not line.endswith("\\"), "keep directives on one line"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def one(section: dict[str, list[str]], key: str) -> str:
    assert key in section, f"{key}= is missing"
    values = section[key]
    assert len(values) == 1, f"{key}= is given {len(values)} times"
    return values[0]


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "User": "nabat",
    "Group": "nabat",
    "StateDirectory": "nabat",
    "KillMode": "mixed",
    "Restart": "on-failure",
    "Type": "exec",
}


def test_the_service_is_hardened(unit):
    service = unit["Service"]
    wrong = {k: service.get(k) for k, v in HARDENING.items() if service.get(k) != [v]}
    assert not wrong, f"hardening directives changed or missing: {wrong}"
    assert service.get("SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    families = one(service, "RestrictAddressFamilies").split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]
    for key in ("ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "BindPaths"):
        assert key not in service, f"{key}= belongs in a site's drop-in (README)"


def test_restarts_are_bounded_and_the_stop_fits_the_hubs_shutdown(unit):
    service, section = unit["Service"], unit["Unit"]
    assert float(one(service, "RestartSec")) >= 1
    assert int(one(section, "StartLimitBurst")) >= 1
    assert int(one(section, "StartLimitIntervalSec")) > 0
    # API requests, drivers, a plugin's shutdown hook and the bus drain each have up to
    # [hub] shutdown_timeout, one after another (cli/run.py, Hub.stop).
    assert float(one(service, "TimeoutStopSec")) >= 4 * HubSettings().shutdown_timeout


def test_the_commands_exist_in_nabat(unit):
    service = unit["Service"]
    start = one(service, "ExecStart").split()
    assert start == [NABAT, "run", "--config", CONFIG]
    pre = one(service, "ExecStartPre").split()
    assert pre == ["-" + NABAT, "config", "check", "--config", CONFIG]
    for argv in (start[1:], pre[1:]):
        *path, _, _ = argv
        command = cli
        for name in path:
            command = command.commands[name]  # KeyError: no such nabat command
        assert "--config" in {o for p in command.params for o in p.opts}
    assert one(service, "Environment") == f"NABAT_CONFIG={CONFIG}"


def test_sysusers_makes_the_units_user():
    entries = [
        line.split()
        for line in SYSUSERS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [e[:3] for e in entries] == [["u", "nabat", "-"]]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        reason = "systemd-analyze not installed (the systemd package)"
        if os.environ.get("CI") == "true":
            reason += "; CI checks the unit only where the machine has it"
        pytest.skip(reason)
    # verify needs the commands to exist: a copy runs this environment's nabat instead.
    nabat = Path(sys.executable).parent / "nabat"
    if not nabat.exists():
        pytest.skip(f"no nabat executable next to {sys.executable}")
    copy = tmp_path / "nabat.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace(NABAT, str(nabat)), "utf-8")
    done = subprocess.run(
        [tool, "verify", str(copy)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    # verify exits 0 on unknown keys and unparsable values, printing them: both must be empty.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr
    )
