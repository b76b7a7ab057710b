"""``nabat db status`` / ``db upgrade``: the journal's schema version and its migration."""

from __future__ import annotations

import asyncio

import click

from ..config import LoadedConfig
from ._common import config_option, config_path, exit_with_error, load_or_exit, quiet_logs

__all__ = ["command"]


@click.group("db")
def command() -> None:
    """The journal's database: schema status and upgrades."""


async def _upgrade(loaded: LoadedConfig) -> tuple[int, int]:
    """Migrate the journal; the schema versions before and after."""
    from ..store.factory import journal_from_config

    journal = journal_from_config(loaded)
    before = await journal.peek_schema_version()
    await journal.open(migrate=True)
    try:
        return before, await journal.schema_version()
    finally:
        await journal.close()


@command.command("status")
@config_option
def db_status(config_file: str | None) -> None:
    """Show the journal's schema version and whether it needs `nabat db upgrade`."""
    from ..store import JournalError
    from ..store.factory import journal_from_config

    quiet_logs(False)
    loaded = load_or_exit(config_path(config_file))
    journal = journal_from_config(loaded)
    supported = journal.SCHEMA_VERSION
    try:
        found = asyncio.run(journal.peek_schema_version())
    except JournalError as exc:
        exit_with_error(exc)
    state = (
        "up to date"
        if found == supported
        else (
            "needs `nabat db upgrade`"
            if found < supported
            else "NEWER than this Nabat: upgrade Nabat"
        )
    )
    click.echo(
        f"journal: {journal.kind}, schema version {found}, this Nabat: {supported} ({state})"
    )
    if found > supported:
        raise SystemExit(1)


@command.command("upgrade")
@config_option
def db_upgrade(config_file: str | None) -> None:
    """Create or migrate the journal's schema to this Nabat's version."""
    from ..store import JournalError

    quiet_logs(False)
    loaded = load_or_exit(config_path(config_file))
    try:
        before, after = asyncio.run(_upgrade(loaded))
    except JournalError as exc:
        exit_with_error(exc)
    if before == after:
        click.echo(f"journal schema is at version {after}; nothing to do")
    else:
        click.echo(f"journal schema upgraded from version {before} to {after}")
