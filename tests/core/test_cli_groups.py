"""The ``nabat`` command is assembled from its command-group modules; plugins' commands come
through the group, and only when a command is not the core's."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nabat.cli
import pytest
from nabat.cli import COMMAND_MODULES, cli
from nabat.testing import run_cli

EVENT = {
    "specversion": "1.0",
    "id": "0190a3c4-0000-7000-8000-000000000001",
    "source": "/test",
    "type": "ru.nabat.incident.fire",
    "time": "2026-01-01T00:00:00Z",
    "datacontenttype": "application/json",
    "data": {},
}

# Runs ``nabat ARGS`` in this process, then names the installed (not built-in) plugins whose
# modules it imported.
IMPORTED_PLUGINS = """
import json, sys
from nabat.cli import main
from nabat.plugins import discover
try:
    main(sys.argv[1:])
except SystemExit:
    pass
found, _ = discover()
modules = {i.target.partition(":")[0].strip() for i in found.values() if not i.builtin}
print(json.dumps(sorted(m for m in modules if m in sys.modules)), file=sys.stderr)
"""


def test_every_command_group_module_is_a_command_of_nabat():
    modules = {
        m.name for m in pkgutil.iter_modules(nabat.cli.__path__) if not m.name.startswith("_")
    }
    registered = {m.__name__.rpartition(".")[2]: m for m in COMMAND_MODULES}
    assert set(registered) == modules
    for name, module in registered.items():
        assert cli.commands[name] is module.command, name


def _imported_plugins(cwd: Path, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", IMPORTED_PLUGINS, *args],
        cwd=cwd,
        env={**os.environ, "NABAT_LANG": "en"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stderr.strip().splitlines()[-1])


def test_report_and_rules_import_no_plugin(tmp_path):
    (tmp_path / "plugins.toml").write_text("[plugins.simulator]\n")
    (tmp_path / "event.json").write_text(json.dumps(EVENT))
    assert _imported_plugins(tmp_path, "report", "--help") == []
    assert _imported_plugins(tmp_path, "rules", "test", "event.json") == []
    assert _imported_plugins(tmp_path, "rules", "list") == []
    # The whole list of commands does ask the enabled plugins for theirs.
    [simulator] = _imported_plugins(tmp_path, "--help")
    assert simulator.startswith("nabat_simulator")


PLUGINS = {
    "tp_cli_hello": """
        import click
        from nabat.hookspecs import hookimpl

        @hookimpl
        def register_cli(cli):
            @cli.command("tp-hello")
            @click.option("--config", "-c", "config_file")
            @click.option("--loud", is_flag=True)
            def hello(config_file, loud):
                \"\"\"Greet from a plugin.\"\"\"
                click.echo(("HELLO" if loud else "hello") + f" from a plugin ({config_file})")
    """,
    "tp_cli_broken": """
        from nabat.hookspecs import hookimpl

        @hookimpl
        def register_cli(cli):
            raise RuntimeError("no commands today")
    """,
}


@pytest.fixture
def cli_plugins(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    for module, source in PLUGINS.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    dist = site / "nabat_cli_test_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nabat-cli-test-plugins\n")
    (dist / "entry_points.txt").write_text("[nabat]\n" + "".join(f"{m} = {m}\n" for m in PLUGINS))
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "hub.toml").write_text("[plugins.tp_cli_hello]\n[plugins.tp_cli_broken]\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def test_a_plugins_commands_come_from_the_configuration_the_command_names(tmp_path, cli_plugins):
    out = run_cli("tp-hello", "--loud", "-c", "conf/hub.toml", cwd=tmp_path, env=cli_plugins)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "HELLO from a plugin (conf/hub.toml)\n"
    # A plugin whose hook fails is named, and the others' commands still work.
    assert (
        "warning: plugin 'tp_cli_broken' could not add its commands: "
        "RuntimeError: no commands today" in out.stderr
    )
    listed = run_cli("--help", cwd=tmp_path, env={**cli_plugins, "NABAT_CONFIG": "conf/hub.toml"})
    assert "tp-hello" in listed.stdout and "Greet from a plugin." in listed.stdout
    # Not enabled in ./plugins.toml (there is none): no such command.
    missing = run_cli("tp-hello", cwd=tmp_path, env=cli_plugins)
    assert missing.returncode == 2 and "No such command 'tp-hello'" in missing.stderr
    # The core's commands never import plugins, broken ones included.
    core = run_cli("rules", "list", "-c", "conf/hub.toml", cwd=tmp_path, env=cli_plugins)
    assert core.returncode == 0 and "warning" not in core.stderr
