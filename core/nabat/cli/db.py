"""``nabat db status`` / ``upgrade`` / ``backup`` / ``restore``: the journal's schema version,
its migration, and copies of it (``nabat.store.backup``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ..config import LoadedConfig
from ._common import (
    config_option,
    config_path,
    exit_with_error,
    load_or_exit,
    print_json,
    quiet_logs,
)

__all__ = ["command"]


@click.group("db")
def command() -> None:
    """The journal's database: schema status, upgrades, backup and restore."""


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


def _report(report: object, as_json: bool, lines: list[str]) -> None:
    if as_json:
        import msgspec

        print_json(msgspec.to_builtins(report))
    else:
        click.echo("\n".join(lines))


def _cursors(cursors: dict[str, int]) -> str:
    return ", ".join(f"{k} at {v}" for k, v in cursors.items()) or "none"


@command.command("backup")
@config_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def db_backup(config_file: str | None, file: Path, as_json: bool) -> None:
    """Copy the journal to FILE, also while the hub runs (SQLite: its online backup;
    PostgreSQL: pg_dump --format=custom of the hub's schema)."""
    from ..store import SqliteJournal
    from ..store.backup import BackupError, backup_postgres, backup_sqlite
    from ..store.factory import journal_from_config

    quiet_logs(False)
    loaded = load_or_exit(config_path(config_file))
    journal = journal_from_config(loaded)
    try:
        if isinstance(journal, SqliteJournal):
            report = backup_sqlite(journal.path, file)
        else:
            report = backup_postgres(journal.dsn(), journal.schema, file)  # type: ignore[attr-defined]
    except BackupError as exc:
        exit_with_error(exc)
    lines = [
        f"backup written: {report.path} ({report.bytes:,} bytes, {report.seconds:.1f} s)",
        f"schema version {report.schema_version}",
    ]
    if report.events is not None:
        lines.append(f"events: {report.events:,} (last seq {report.last_seq})")
        lines.append(f"subscriptions: {_cursors(report.subscriptions)}")
    _report(report, as_json, lines)


@command.command("restore")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def db_restore(config_file: str | None, file: Path, yes: bool, as_json: bool) -> None:
    """Replace the journal with the backup FILE. Every hub on the journal must be stopped;
    a SQLite journal replaced is kept beside it. Subscriptions resume from the backup's
    cursors when the hub starts again."""
    from ..store import JournalError, SqliteJournal
    from ..store.backup import BackupError, restore_postgres, restore_sqlite
    from ..store.factory import journal_from_config

    quiet_logs(False)
    loaded = load_or_exit(config_path(config_file))
    journal = journal_from_config(loaded)
    where = (
        str(journal.path) if isinstance(journal, SqliteJournal) else f"schema {journal.schema!r}"  # type: ignore[attr-defined]
    )
    if not yes:
        click.confirm(f"Replace the journal ({where}) with {file}?", abort=True)
    try:
        if isinstance(journal, SqliteJournal):
            report = restore_sqlite(file, journal.path, supported=journal.SCHEMA_VERSION)
        else:
            holders = asyncio.run(journal.peek_lease_holders())
            report = restore_postgres(
                journal.dsn(),  # type: ignore[attr-defined]
                journal.schema,  # type: ignore[attr-defined]
                file,
                supported=journal.SCHEMA_VERSION,
                holders=holders,
            )
    except (BackupError, JournalError) as exc:
        exit_with_error(exc)
    lines = [f"journal restored from {file}: {report.path} ({report.seconds:.1f} s)"]
    if report.kept:
        lines.append(f"the journal it replaced is kept as {report.kept}")
    if report.events is not None:
        lines.append(f"events: {report.events:,} (last seq {report.last_seq})")
        lines.append(f"subscriptions resume from: {_cursors(report.subscriptions)}")
    if report.schema_version < journal.SCHEMA_VERSION:
        lines.append(
            f"schema version {report.schema_version} (this Nabat: {journal.SCHEMA_VERSION}): "
            "the hub migrates it when it starts, or run `nabat db upgrade`"
        )
    _report(report, as_json, lines)
