"""``nabat config check`` / ``config show``: validate the configuration, print it resolved."""

from __future__ import annotations

import asyncio

import click

from ..config import masked
from ._common import (
    build_hub,
    config_option,
    config_path,
    load_or_exit,
    messages,
    print_issues,
    print_json,
    quiet_logs,
)

__all__ = ["command"]


@click.group("config")
def command() -> None:
    """Validate or print the configuration."""


@command.command("check")
@click.argument("file", required=False)
@config_option
@click.option("--verbose", "-v", is_flag=True, help="Show log lines while loading plugins.")
def config_check(file: str | None, config_file: str | None, verbose: bool) -> None:
    """Validate FILE (plugins.toml): keys, types, secrets, plugins and driver settings."""
    quiet_logs(verbose)
    path = config_path(file or config_file)
    loaded = load_or_exit(path)
    t = messages(loaded)
    hub = build_hub(loaded)
    issues = asyncio.run(hub.prepare())
    if issues:
        print_issues(path, issues, t)
        raise SystemExit(1)
    enabled = sum(1 for p in hub.plugins.values() if p.enabled)
    click.echo(t("cli.config_ok", path=path, plugins=enabled, instances=len(hub.units)))


@command.command("show")
@click.argument("file", required=False)
@config_option
def config_show(file: str | None, config_file: str | None) -> None:
    """Print FILE resolved with defaults, plugin and driver settings included, secrets masked."""
    quiet_logs(False)
    path = config_path(file or config_file)
    loaded = load_or_exit(path)
    hub = build_hub(loaded)
    issues = asyncio.run(hub.prepare())
    out = masked(loaded.config)
    for name, plugin in hub.plugins.items():
        if plugin.settings is not None:
            out["plugins"].setdefault(name, {"enabled": plugin.enabled})["settings"] = masked(
                plugin.settings
            )
    for unit in hub.units:
        if unit.settings is not None:
            out["instances"][unit.id]["settings"] = masked(unit.settings)
    print_json(out)
    if issues:
        print_issues(path, issues, messages(loaded))
        raise SystemExit(1)
