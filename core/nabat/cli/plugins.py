"""``nabat plugins``: what is installed, enabled, loadable; the configured instances."""

from __future__ import annotations

import asyncio

import click

from ..i18n import Messages
from ._common import (
    build_hub,
    config_option,
    config_path,
    load_or_exit,
    messages,
    print_json,
    quiet_logs,
    table,
)

__all__ = ["command"]


@click.command("plugins")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(config_file: str | None, as_json: bool) -> None:
    """List installed plugins: enabled or not, version, and whether they load and validate."""
    quiet_logs(False)
    path = config_path(config_file)
    loaded = load_or_exit(path)
    t = messages(loaded)
    hub = build_hub(loaded)
    asyncio.run(hub.prepare())
    rows = []
    for name, plugin in hub.plugins.items():
        status = hub.supervisor.status_of_plugin(name)
        rows.append(
            {
                "plugin": name,
                "enabled": plugin.enabled,
                "version": plugin.info.version,
                "distribution": plugin.info.distribution,
                "state": "ready" if plugin.prepared else (status.state.value if status else "-"),
                "reason": status.reason if status else "",
                "drivers": sorted(plugin.drivers),
            }
        )
    for name, entry in loaded.config.plugins.items():
        if name not in hub.plugins:
            status = hub.supervisor.status_of_plugin(name)
            rows.append(
                {
                    "plugin": name,
                    "enabled": entry.enabled,
                    "version": "-",
                    "distribution": "-",
                    "state": "failed",
                    "reason": status.reason if status else "",
                    "drivers": [],
                }
            )
    instances = [
        {
            "instance": unit.id,
            "kind": unit.entry.kind,
            "municipality": unit.entry.municipality or "",
            "state": "disabled" if unit.disabled else ("failed" if unit.problem else "ready"),
            "reason": "" if unit.disabled else (unit.problem or ""),
        }
        for unit in hub.units
    ]
    if as_json:
        print_json({"plugins": rows, "instances": instances})
        return
    if not rows:
        click.echo(t("cli.plugins_none"))
        return
    click.echo(t("cli.plugins_header"))
    table(
        [
            t("cli.col_plugin"),
            t("cli.col_enabled"),
            t("cli.col_version"),
            t("cli.col_distribution"),
            t("cli.col_state"),
            t("cli.col_reason"),
        ],
        [
            [
                r["plugin"],
                t("cli.yes") if r["enabled"] else t("cli.no"),
                r["version"],
                r["distribution"],
                _state_label(t, r["state"]),
                r["reason"],
            ]
            for r in rows
        ],
    )
    if instances:
        click.echo("")
        click.echo(t("cli.instances_header"))
        table(
            [
                t("cli.col_instance"),
                t("cli.col_kind"),
                t("cli.col_municipality"),
                t("cli.col_state"),
                t("cli.col_reason"),
            ],
            [
                [
                    i["instance"],
                    i["kind"],
                    i["municipality"],
                    _state_label(t, i["state"]),
                    i["reason"],
                ]
                for i in instances
            ],
        )


def _state_label(t: Messages, state: str) -> str:
    """``failed (отказ)``: the state, and its name in the catalog's language when that differs."""
    label = t(f"unit.state.{state}")
    return state if label in (f"unit.state.{state}", state) else f"{state} ({label})"
