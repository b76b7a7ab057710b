"""What every command group shares: the ``--config`` option, loading the configuration,
opening the journal or a prepared hub, the audit log, tables and JSON output.

The configuration file is ``--config FILE``, else ``$NABAT_CONFIG``, else ``./plugins.toml``.
A command that cannot go on prints why and exits 1 (``SystemExit``).

The hub and the journal are imported where they are used: every ``nabat`` process imports
this module, most commands never build a hub, and ``--help`` or ``version`` need neither.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import msgspec

from ..config import ConfigInvalid, LoadedConfig, load_config
from ..i18n import Messages
from ..logs import configure_logging

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = [
    "DEFAULT_CONFIG",
    "audit",
    "build_hub",
    "config_option",
    "config_path",
    "core_version",
    "exit_with_error",
    "load_or_exit",
    "messages",
    "print_issues",
    "print_json",
    "quiet_logs",
    "table",
    "with_journal",
    "with_prepared_hub",
    "yes",
]

DEFAULT_CONFIG = "plugins.toml"

config_option = click.option(
    "--config",
    "-c",
    "config_file",
    metavar="FILE",
    help="Configuration file (default: $NABAT_CONFIG or ./plugins.toml).",
)


def core_version() -> str:
    try:
        return version("nabat")
    except PackageNotFoundError:
        return "0+unknown"


def config_path(value: str | None) -> Path:
    return Path(value or os.environ.get("NABAT_CONFIG") or DEFAULT_CONFIG)


def messages(loaded: LoadedConfig | None = None) -> Messages:
    lang = os.environ.get("NABAT_LANG") or (loaded.config.hub.language if loaded else "ru")
    return Messages(lang)


_headings: Messages | None = None
"""The catalog tables' headings come from: the language of the configuration the command
loaded (``[hub] language``, or ``NABAT_LANG``), so a table is in one language with the text in
its rows."""


def load_or_exit(path: Path, *, strict: bool = True) -> LoadedConfig:
    from ..store.factory import journal_from_config

    global _headings
    try:
        loaded = load_config(path, strict=strict)
        journal_from_config(loaded)  # the storage URL names a journal we can open
        _headings = messages(loaded)
        return loaded
    except ConfigInvalid as exc:
        print_issues(path, exc.issues, messages())
        raise SystemExit(1) from None


def print_issues(path: Path, issues: list[Any], t: Messages) -> None:
    click.echo(t("cli.config_invalid", path=path, count=len(issues)), err=True)
    for issue in issues:
        click.echo(f"  {issue}", err=True)


def quiet_logs(verbose: bool) -> None:
    configure_logging(level="debug" if verbose else "critical", fmt="logfmt")


def exit_with_error(error: object) -> NoReturn:
    """``error: …`` on standard error, exit 1 (a journal or a port that is not there)."""
    click.echo(f"error: {error}", err=True)
    raise SystemExit(1) from None


# -- the journal and the hub -----------------------------------------------------------------
def build_hub(loaded: LoadedConfig) -> Hub:
    """A hub for ``loaded``, not started, speaking the command's language."""
    from ..hub import Hub

    return Hub(loaded, language=messages(loaded).language)


def with_journal(
    config_file: str | None, work: Any, *, migrate: bool = False, loaded: LoadedConfig | None = None
) -> Any:
    """Open the configured journal, run ``await work(journal)``, close it; errors exit 1."""
    from ..store import JournalError
    from ..store.factory import journal_from_config

    quiet_logs(False)
    loaded = loaded or load_or_exit(config_path(config_file))

    async def run() -> Any:
        journal = journal_from_config(loaded)
        await journal.open(migrate=migrate)
        try:
            return await work(journal)
        finally:
            await journal.close()

    try:
        return asyncio.run(run())
    except JournalError as exc:
        exit_with_error(exc)


def with_prepared_hub(loaded: LoadedConfig, work: Any, *, migrate: bool = False) -> Any:
    """``await work(hub)`` with a hub that is not started: its journal open as it is and its
    plugins prepared (which instances are cameras or sirens; the payload types that read the
    journal's events). Journal errors exit 1."""
    from ..store import JournalError

    async def run() -> Any:
        hub = build_hub(loaded)
        await hub.journal.open(migrate=migrate)
        try:
            await hub.prepare()
            return await work(hub)
        finally:
            await hub.journal.close()

    try:
        return asyncio.run(run())
    except JournalError as exc:
        exit_with_error(exc)


def audit(journal: Any, action: str, detail: dict[str, Any]) -> Any:
    """Record a change made from the command line, by the login that ran it (awaitable)."""
    from ..api.audit import AuditLog

    log = AuditLog(journal)
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        user = f"uid{os.getuid()}"
    log.record(f"cli:{user}", action, detail=detail)
    return log.flush()


# -- output ----------------------------------------------------------------------------------
def print_json(value: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def _heading(text: str) -> str:
    """A table's column heading (``LAST SIGN-IN``) in the configuration's language
    (catalog key ``cli.head.last_sign_in``); as given when the catalog has none."""
    t = _headings or messages()
    key = "cli.head." + "".join(c if c.isalnum() else "_" for c in text.lower())
    found = t(key)
    return text if found == key else found


def yes(value: bool) -> str:
    t = _headings or messages()
    return t("cli.yes") if value else t("cli.no")


def table(header: list[str], rows: list[list[str]]) -> None:
    header = [_heading(h) for h in header]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
