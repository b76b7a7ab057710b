"""``nabat rules``: the configuration's ``[[rules]]`` (list them, try one event on them)."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec

from ._common import config_option, config_path, load_or_exit, table, yes

__all__ = ["command"]


@click.group("rules")
def command() -> None:
    """The [[rules]] of the configuration: list them, try them on an event."""


@command.command("test")
@click.argument("event_file", type=click.Path(exists=True, dir_okay=False))
@config_option
@click.option("--json", "as_json", is_flag=True)
def rules_test(event_file: str, config_file: str | None, as_json: bool) -> None:
    """Which rules EVENT_FILE (a CloudEvent, JSON) would fire and what they would do — without
    doing it (cooldowns are not applied)."""
    from ..events import EventError, decode_event
    from ..rules.engine import RuleEngine

    loaded = load_or_exit(config_path(config_file))
    try:
        event = decode_event(Path(event_file).read_bytes())
    except EventError as exc:
        click.echo(f"{event_file}: not a valid event: {exc}", err=True)
        raise SystemExit(1) from None
    plan = RuleEngine(loaded.config.rules).plan(event)
    if as_json:
        click.echo(msgspec.json.encode([p.__dict__ for p in plan]).decode())
        return
    if not plan:
        click.echo(f"no rule matches {event.type} ({len(loaded.config.rules)} rules)")
        return
    table(
        ["RULE", "ACTION", "TARGET", "WHAT"],
        [[p.rule, p.action, p.target, p.detail] for p in plan],
    )


@command.command("list")
@config_option
def rules_list(config_file: str | None) -> None:
    """The rules, in order, with what they match and do."""
    loaded = load_or_exit(config_path(config_file))
    if not loaded.config.rules:
        click.echo("no rules; add [[rules]] to the configuration (docs/rules.md)")
        return
    table(
        ["RULE", "ENABLED", "TYPES", "MUNICIPALITIES", "ACTIONS", "COOLDOWN"],
        [
            [
                r.name,
                yes(r.enabled),
                ",".join(r.when.type),
                ",".join(r.when.municipality) or "*",
                ",".join(a.kind for a in r.then),
                f"{r.cooldown:g} s",
            ]
            for r in loaded.config.rules
        ],
    )
