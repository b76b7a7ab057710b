"""The ``nabat`` command line.

``nabat run`` runs the hub until Ctrl-C or SIGTERM; ``config check`` / ``config show`` validate
and print the configuration (secrets masked); ``plugins`` lists what is installed and whether
it loads; ``cameras import`` / ``cameras list`` manage the camera inventory (a CSV file,
stored in the journal's database); ``version`` prints versions. Plugins add sub-commands
through ``register_cli``.

The configuration file is ``--config FILE``, else ``$NABAT_CONFIG``, else ``./plugins.toml``.
Exit codes: 0 success, 1 invalid configuration or a failed check, 2 usage error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click
import msgspec

from .config import ConfigInvalid, LoadedConfig, load_config, masked
from .hub import Hub
from .i18n import Messages
from .logs import configure_logging, get_logger
from .runtime import apply_runtime_settings
from .store import JournalError
from .store.factory import journal_from_config

__all__ = ["cli", "main"]

DEFAULT_CONFIG = "plugins.toml"
log = get_logger("nabat.cli")


def _core_version() -> str:
    try:
        return version("nabat")
    except PackageNotFoundError:
        return "0+unknown"


def _config_path(value: str | None) -> Path:
    return Path(value or os.environ.get("NABAT_CONFIG") or DEFAULT_CONFIG)


def _messages(loaded: LoadedConfig | None = None) -> Messages:
    lang = os.environ.get("NABAT_LANG") or (loaded.config.hub.language if loaded else "ru")
    return Messages(lang)


_headings: Messages | None = None
"""The catalog tables' headings come from: the language of the configuration the command
loaded (``[hub] language``, or ``NABAT_LANG``), so a table is in one language with the text in
its rows."""


def _load_or_exit(path: Path, *, strict: bool = True) -> LoadedConfig:
    global _headings
    try:
        loaded = load_config(path, strict=strict)
        journal_from_config(loaded)  # the storage URL names a journal we can open
        _headings = _messages(loaded)
        return loaded
    except ConfigInvalid as exc:
        _print_issues(path, exc.issues, _messages())
        raise SystemExit(1) from None


def _print_issues(path: Path, issues: list[Any], t: Messages) -> None:
    click.echo(t("cli.config_invalid", path=path, count=len(issues)), err=True)
    for issue in issues:
        click.echo(f"  {issue}", err=True)


def _quiet_logs(verbose: bool) -> None:
    configure_logging(level="debug" if verbose else "critical", fmt="logfmt")


config_option = click.option(
    "--config",
    "-c",
    "config_file",
    metavar="FILE",
    help="Configuration file (default: $NABAT_CONFIG or ./plugins.toml).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_core_version(), "-V", "--version", prog_name="nabat")
def cli() -> None:
    """Nabat — the public-safety integration hub."""


@cli.command("version")
def show_version() -> None:
    """Print the versions of Nabat, Python and the installed plugins."""
    from .plugins import discover

    click.echo(f"nabat {_core_version()} (Python {platform.python_version()})")
    found, _ = discover()
    dists = {(info.distribution, info.version) for info in found.values()}
    try:
        dists.add(("nabat-hub", version("nabat-hub")))
    except PackageNotFoundError:
        pass
    for dist, ver in sorted(d for d in dists if d[0] != "nabat"):
        click.echo(f"  {dist} {ver}")


# -- run -------------------------------------------------------------------------------------
@cli.command()
@config_option
def run(config_file: str | None) -> None:
    """Run the hub until Ctrl-C or SIGTERM."""
    path = _config_path(config_file)
    loaded = _load_or_exit(path, strict=False)  # a broken instance table fails only itself
    hub_cfg = loaded.config.hub
    configure_logging(hub_cfg.log_level, hub_cfg.log_format)
    apply_runtime_settings(hub_cfg)
    click.echo(_messages(loaded)("cli.hub_starting", name=hub_cfg.name, path=path), err=True)
    try:
        asyncio.run(_serve(loaded))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        raise SystemExit(130) from None
    click.echo(_messages(loaded)("cli.hub_stopped"), err=True)


async def _serve(loaded: LoadedConfig) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        # A second Ctrl-C forces the exit. A repeated SIGTERM does not: supervisors and
        # `uv run` may deliver it twice (to the process group and forwarded).
        nonlocal signals
        name = signal.Signals(signum).name
        if not stop.is_set():
            log.info("hub.stopping", signal=name)
            stop.set()
        elif signum == signal.SIGINT:
            signals += 1
            log.warning("hub.forced_exit", signal=name)
            os._exit(130)
        else:
            log.info("hub.already_stopping", signal=name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    hub = Hub(loaded, language=_messages(loaded).language)
    api: Any = None
    try:
        try:
            await hub.start(wait=True)
        except JournalError as exc:
            log.error("journal.unavailable", error=str(exc))
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(1) from None
        for issue in hub.issues:
            log.error(
                "config.problem",
                file=issue.file,
                line=issue.line,
                key=issue.path,
                reason=issue.reason,
            )
        if loaded.config.api.listen is not None:
            from .api.server import ApiServer

            api = ApiServer(hub)
            try:
                await api.start()
            except OSError as exc:
                log.error("api.unavailable", error=str(exc))
                click.echo(f"error: {exc}", err=True)
                raise SystemExit(1) from None
        await stop.wait()
    finally:
        if api is not None:
            await api.stop()
        await hub.stop()


# -- config ----------------------------------------------------------------------------------
@cli.group()
def config() -> None:
    """Validate or print the configuration."""


@config.command("check")
@click.argument("file", required=False)
@config_option
@click.option("--verbose", "-v", is_flag=True, help="Show log lines while loading plugins.")
def config_check(file: str | None, config_file: str | None, verbose: bool) -> None:
    """Validate FILE (plugins.toml): keys, types, secrets, plugins and driver settings."""
    _quiet_logs(verbose)
    path = _config_path(file or config_file)
    loaded = _load_or_exit(path)
    t = _messages(loaded)
    hub = Hub(loaded, language=_messages(loaded).language)
    issues = asyncio.run(hub.prepare())
    if issues:
        _print_issues(path, issues, t)
        raise SystemExit(1)
    enabled = sum(1 for p in hub.plugins.values() if p.enabled)
    click.echo(t("cli.config_ok", path=path, plugins=enabled, instances=len(hub.units)))


@config.command("show")
@click.argument("file", required=False)
@config_option
def config_show(file: str | None, config_file: str | None) -> None:
    """Print FILE resolved with defaults, plugin and driver settings included, secrets masked."""
    _quiet_logs(False)
    path = _config_path(file or config_file)
    loaded = _load_or_exit(path)
    hub = Hub(loaded, language=_messages(loaded).language)
    issues = asyncio.run(hub.prepare())
    out = masked(loaded.config)
    for name, plugin in hub.plugins.items():
        if plugin.settings is not None:
            out["plugins"].setdefault(name, {"enabled": plugin.enabled})["settings"] = masked(
                plugin.settings
            )
    for iid, rt in ((rt.id, rt) for rt in hub.units):
        if rt.settings is not None:
            out["instances"][iid]["settings"] = masked(rt.settings)
    click.echo(msgspec.json.format(msgspec.json.encode(out), indent=2).decode())
    if issues:
        _print_issues(path, issues, _messages(loaded))
        raise SystemExit(1)


# -- db --------------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """The journal's database: schema status and upgrades."""


async def _upgrade(loaded: LoadedConfig) -> tuple[int, int]:
    journal = journal_from_config(loaded)
    before = await journal.peek_schema_version()
    await journal.open(migrate=True)
    try:
        return before, await journal.schema_version()
    finally:
        await journal.close()


@db.command("status")
@config_option
def db_status(config_file: str | None) -> None:
    """Show the journal's schema version and whether it needs `nabat db upgrade`."""
    _quiet_logs(False)
    loaded = _load_or_exit(_config_path(config_file))
    journal = journal_from_config(loaded)
    supported = journal.SCHEMA_VERSION
    try:
        found = asyncio.run(journal.peek_schema_version())
    except JournalError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
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


@db.command("upgrade")
@config_option
def db_upgrade(config_file: str | None) -> None:
    """Create or migrate the journal's schema to this Nabat's version."""
    _quiet_logs(False)
    loaded = _load_or_exit(_config_path(config_file))
    try:
        before, after = asyncio.run(_upgrade(loaded))
    except JournalError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    if before == after:
        click.echo(f"journal schema is at version {after}; nothing to do")
    else:
        click.echo(f"journal schema upgraded from version {before} to {after}")


# -- deliveries ------------------------------------------------------------------------------
@cli.group()
def deliveries() -> None:
    """Durable subscriptions: progress, retries and dead letters."""


def _with_journal(
    config_file: str | None, work: Any, *, migrate: bool = False, loaded: LoadedConfig | None = None
) -> Any:
    """Open the configured journal, run ``await work(journal)``, close it; errors exit 1."""
    _quiet_logs(False)
    loaded = loaded or _load_or_exit(_config_path(config_file))

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
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


def _with_prepared_hub(loaded: LoadedConfig, work: Any, *, migrate: bool = False) -> Any:
    """``await work(hub)`` with a hub that is not started: its journal open as it is and its
    plugins prepared (which instances are cameras or sirens; the payload types that read the
    journal's events). Journal errors exit 1."""

    async def run() -> Any:
        hub = Hub(loaded, language=_messages(loaded).language)
        await hub.journal.open(migrate=migrate)
        try:
            await hub.prepare()
            return await work(hub)
        finally:
            await hub.journal.close()

    try:
        return asyncio.run(run())
    except JournalError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


@deliveries.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True)
def deliveries_status(config_file: str | None, as_json: bool) -> None:
    """Every durable subscription: cursor, lag, lease holder, retries and dead letters."""

    async def work(journal: Any) -> list[dict[str, Any]]:
        last = await journal.last_seq()
        rows = []
        for state in await journal.subscriptions():
            issues = await journal.issues(state.spec.id, limit=100_000)
            rows.append(
                {
                    "subscription": state.spec.id,
                    "patterns": list(state.spec.patterns),
                    "order": state.spec.order.value,
                    "cursor": state.cursor,
                    "lag": max(0, last - state.cursor),
                    "retrying": sum(i.state == "retry" for i in issues),
                    "dead": sum(i.state == "dead" for i in issues),
                    "lease_owner": state.lease_owner or "",
                    "lease_until": state.lease_until.isoformat() if state.lease_until else "",
                }
            )
        return rows

    rows = _with_journal(config_file, work)
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(rows), indent=2).decode())
        return
    if not rows:
        click.echo("no durable subscriptions")
        return
    _table(
        ["SUBSCRIPTION", "ORDER", "CURSOR", "LAG", "RETRYING", "DEAD", "LEASE"],
        [
            [
                r["subscription"],
                r["order"],
                str(r["cursor"]),
                str(r["lag"]),
                str(r["retrying"]),
                str(r["dead"]),
                r["lease_owner"],
            ]
            for r in rows
        ],
    )


@deliveries.command("list")
@click.argument("subscription", required=False)
@config_option
@click.option("--state", type=click.Choice(["retry", "dead"]), help="Only this state.")
@click.option("--json", "as_json", is_flag=True)
def deliveries_list(
    subscription: str | None, config_file: str | None, state: str | None, as_json: bool
) -> None:
    """Events that could not be delivered (yet), per subscription."""
    from .store.delivery import IssueState

    async def work(journal: Any) -> list[Any]:
        return await journal.issues(
            subscription, IssueState(state) if state else None, limit=100_000
        )

    issues = _with_journal(config_file, work)
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(issues), indent=2).decode())
        return
    if not issues:
        click.echo("nothing is waiting or dead")
        return
    _table(
        ["SUBSCRIPTION", "SEQ", "EVENT", "STATE", "ATTEMPTS", "FIRST FAILED", "LAST ERROR"],
        [
            [
                i.subscription,
                str(i.seq),
                i.event_id,
                i.state.value,
                str(i.attempts),
                i.first_failed_at.isoformat(timespec="seconds"),
                i.last_error[:80],
            ]
            for i in issues
        ],
    )


def _dead_letter_command(action: str) -> Any:
    verb = {"retry": "revive_dead", "discard": "discard_dead"}[action]
    help_text = {
        "retry": "Deliver dead letters of SUBSCRIPTION again (all, or the given SEQ numbers).",
        "discard": "Forget dead letters of SUBSCRIPTION (all, or the given SEQ numbers).",
    }[action]

    @click.argument("subscription")
    @click.argument("seqs", nargs=-1, type=int)
    @config_option
    @click.option(
        "--all", "everything", is_flag=True, help="Every dead letter of the subscription."
    )
    def command(
        subscription: str, seqs: tuple[int, ...], config_file: str | None, everything: bool
    ) -> None:
        if not seqs and not everything:
            raise click.UsageError("name the SEQ numbers, or pass --all")

        async def work(journal: Any) -> int:
            if await journal.subscription(subscription) is None:
                click.echo(f"error: no subscription {subscription!r}", err=True)
                raise SystemExit(1)
            return await getattr(journal, verb)(subscription, None if everything else list(seqs))

        count = _with_journal(config_file, work)
        done = "queued for delivery" if action == "retry" else "discarded"
        click.echo(f"{count} dead letter(s) of {subscription} {done}")

    command.__doc__ = help_text
    return deliveries.command(action)(command)


_dead_letter_command("retry")
_dead_letter_command("discard")


# -- plugins ---------------------------------------------------------------------------------
@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(config_file: str | None, as_json: bool) -> None:
    """List installed plugins: enabled or not, version, and whether they load and validate."""
    _quiet_logs(False)
    path = _config_path(config_file)
    loaded = _load_or_exit(path)
    t = _messages(loaded)
    hub = Hub(loaded, language=_messages(loaded).language)
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
            "instance": iid,
            "kind": rt.entry.kind,
            "municipality": rt.entry.municipality or "",
            "state": "disabled"
            if rt.problem == "disabled"
            else ("failed" if rt.problem else "ready"),
            "reason": "" if rt.problem == "disabled" else (rt.problem or ""),
        }
        for iid, rt in ((rt.id, rt) for rt in hub.units)
    ]
    if as_json:
        click.echo(
            msgspec.json.format(
                msgspec.json.encode({"plugins": rows, "instances": instances}), indent=2
            ).decode()
        )
        return
    if not rows:
        click.echo(t("cli.plugins_none"))
        return
    click.echo(t("cli.plugins_header"))
    _table(
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
        _table(
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
    label = t(f"unit.state.{state}")
    return (
        state
        if label == f"unit.state.{state}"
        else f"{state} ({label})"
        if label != state
        else state
    )


# -- tokens ----------------------------------------------------------------------------------
@cli.group()
def tokens() -> None:
    """API bearer tokens: create (the secret is shown once), list, revoke."""


def _audit_cli(journal: Any, action: str, detail: dict[str, Any]) -> Any:
    from .api.audit import AuditLog

    audit = AuditLog(journal)
    import getpass

    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        user = f"uid{os.getuid()}"
    audit.record(f"cli:{user}", action, detail=detail)
    return audit.flush()


@tokens.command("create")
@config_option
@click.option("--name", required=True, help="Who or what uses it (unique).")
@click.option(
    "--scopes",
    required=True,
    help="Comma-separated: events:read, events:write, alerts:activate, cameras:read, "
    "cameras:control, ops:read, admin.",
)
@click.option(
    "--municipality",
    "municipalities",
    multiple=True,
    help="Limit to this municipality (repeat for several); default: the whole region.",
)
@click.option("--expires-days", type=click.FloatRange(min=0, min_open=True), help="Lifetime.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Requests/s allowed.")
@click.option("--burst", type=click.IntRange(min=1), help="Requests allowed at once.")
@click.option("--json", "as_json", is_flag=True)
def tokens_create(
    config_file: str | None,
    name: str,
    scopes: str,
    municipalities: tuple[str, ...],
    expires_days: float | None,
    rate: float | None,
    burst: int | None,
    as_json: bool,
) -> None:
    """Create a token. Its secret is printed once; only its hash is stored."""

    from .api.tokens import TokenError, TokenStore
    from .regions import load_region

    loaded = _load_or_exit(_config_path(config_file))
    region = load_region(loaded.config.hub.region)
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None

    async def work(journal: Any) -> Any:
        store = TokenStore(journal)
        try:
            secret, info = await store.create(
                name,
                wanted,
                municipalities=municipalities,
                known_municipalities=list(region.municipalities),
                expires=expires,
                rate=rate,
                burst=burst,
            )
        except TokenError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(1) from None
        await _audit_cli(
            journal,
            "tokens.create",
            {
                "token": info.id,
                "name": info.name,
                "scopes": list(info.scopes),
                "municipalities": list(info.municipalities) or ["(all)"],
                "expires": info.expires.isoformat() if info.expires else "never",
                "rate": f"{info.rate}/s burst {info.burst}" if info.rate else "default",
            },
        )
        return secret, info

    secret, info = _with_journal(None, work, migrate=True, loaded=loaded)
    if as_json:
        out = msgspec.to_builtins(info)
        out["secret"] = secret
        click.echo(msgspec.json.format(msgspec.json.encode(out), indent=2).decode())
        return
    click.echo(f"token {info.id} ({info.name}) created: scopes {', '.join(info.scopes)}", err=True)
    if info.municipalities:
        click.echo(f"limited to: {', '.join(info.municipalities)}", err=True)
    if info.expires:
        click.echo(f"expires: {info.expires.isoformat(timespec='seconds')}", err=True)
    if info.rate:
        click.echo(f"rate limit: {info.rate:g}/s, burst {info.burst or 'default'}", err=True)
    click.echo("the secret is shown only now; store it safely:", err=True)
    click.echo(secret)


@tokens.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def tokens_list(config_file: str | None, as_json: bool) -> None:
    """Every token: id, name, scopes, municipalities, expiry (never secrets)."""
    from .api.tokens import TokenStore

    async def work(journal: Any) -> Any:
        return await TokenStore(journal).list()

    infos = _with_journal(config_file, work, migrate=True)
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(infos), indent=2).decode())
        return
    if not infos:
        click.echo("no tokens; create one with `nabat tokens create --name ... --scopes ...`")
        return
    _table(
        ["ID", "NAME", "SCOPES", "MUNICIPALITIES", "CREATED", "EXPIRES"],
        [
            [
                t.id,
                t.name,
                ",".join(t.scopes),
                ",".join(t.municipalities) or "(all)",
                t.created.isoformat(timespec="seconds"),
                (
                    t.expires.isoformat(timespec="seconds") + (" (expired)" if t.expired() else "")
                    if t.expires
                    else "never"
                ),
            ]
            for t in infos
        ],
    )


@tokens.command("revoke")
@click.argument("token")
@config_option
def tokens_revoke(token: str, config_file: str | None) -> None:
    """Revoke TOKEN (its id or name). Running hubs refuse it within 5 seconds."""
    from .api.tokens import TokenStore

    async def work(journal: Any) -> Any:
        info = await TokenStore(journal).revoke(token)
        if info is not None:
            await _audit_cli(journal, "tokens.revoke", {"token": info.id, "name": info.name})
        return info

    info = _with_journal(config_file, work, migrate=True)
    if info is None:
        click.echo(f"error: no token with id or name {token!r}", err=True)
        raise SystemExit(1)
    click.echo(f"token {info.id} ({info.name}) revoked; running hubs refuse it within 5 s")


# -- cameras ---------------------------------------------------------------------------------
@cli.group()
def cameras() -> None:
    """The camera inventory: import it from a CSV file, list it."""


@cameras.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@config_option
@click.option("--dry-run", is_flag=True, help="Check and count, store nothing.")
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows even if others are bad.")
def cameras_import(file: str, config_file: str | None, dry_run: bool, skip_invalid: bool) -> None:
    """Create or update cameras from FILE (CSV: id, name, municipality, address, lat, lon,
    driver, url, credentials, tags). Re-importing a file changes nothing; cameras not in
    FILE are kept. A file with a bad row imports nothing unless --skip-invalid."""
    from .cameras.inventory import Inventory, parse_csv
    from .regions import load_region

    loaded = _load_or_exit(_config_path(config_file))
    region = load_region(loaded.config.hub.region)
    # The enabled plugins say which driver kinds exist and which addresses each can use.
    _quiet_logs(False)
    hub = Hub(loaded, language=_messages(loaded).language)
    asyncio.run(hub.prepare())
    rows, errors = parse_csv(Path(file), region.municipalities, hub.check_inventory_row)
    for error in errors:
        click.echo(error.format(file), err=True)
    if errors and (not skip_invalid or not rows):
        bad_lines = len({e.line for e in errors})
        click.echo(
            f"nothing imported: {len(errors)} error(s) on {bad_lines} line(s)"
            + ("" if skip_invalid or not rows else "; fix them or pass --skip-invalid"),
            err=True,
        )
        raise SystemExit(1)

    async def work(journal: Any) -> Any:
        report = await Inventory(journal).import_rows(rows, dry_run=dry_run)
        if not dry_run and (report.created or report.updated):
            await _audit_cli(
                journal,
                "cameras.import",
                {
                    "file": Path(file).name,
                    "created": report.created,
                    "updated": report.updated,
                    "unchanged": report.unchanged,
                    "invalid": len({e.line for e in errors}),
                },
            )
        return report

    report = _with_journal(None, work, migrate=True, loaded=loaded)
    summary = report.summary()
    if errors:
        summary += f"; {len({e.line for e in errors})} invalid row(s) skipped"
    click.echo(summary)


@cameras.command("list")
@config_option
@click.option("--municipality", help="Only this municipality (slug).")
@click.option("--driver", help="Only this driver kind (rtsp.camera, onvif.camera, ...).")
@click.option("--tag", help="Only cameras with this tag.")
@click.option("--search", help="Part of the id, name, address or URL.")
@click.option("--json", "as_json", is_flag=True)
def cameras_list(
    config_file: str | None,
    municipality: str | None,
    driver: str | None,
    tag: str | None,
    search: str | None,
    as_json: bool,
) -> None:
    """Every camera: those configured in plugins.toml and those of the inventory (credential
    references only, never secrets)."""
    from .cameras.inventory import Inventory
    from .masking import mask_url

    _quiet_logs(False)
    loaded = _load_or_exit(_config_path(config_file))
    t = _messages(loaded)

    async def work(hub: Hub) -> Any:
        inventory = Inventory(hub.journal)
        imported = await inventory.list(
            municipality=municipality, driver=driver, tag=tag, search=search
        )
        known = {c.id for c in await inventory.list()}
        needle = (search or "").lower()
        configured = []
        for rt in hub.camera_units():
            entry = rt.entry
            url = str(entry.settings.get("url") or entry.settings.get("snapshot_url") or "")
            if (
                rt.id in known
                or (municipality and entry.municipality != municipality)
                or (driver and entry.kind != driver)
                or tag
                or (needle and not any(needle in v.lower() for v in (rt.id, entry.name or "", url)))
            ):
                continue
            configured.append(
                {
                    "id": rt.id,
                    "name": entry.name or rt.id,
                    "municipality": entry.municipality or "",
                    "driver": entry.kind,
                    "url": mask_url(url),
                    "tags": [],
                    "source": "config",
                }
            )
        return configured, imported

    configured, imported = _with_prepared_hub(loaded, work, migrate=True)
    rows = [
        *configured,
        *(
            {**msgspec.to_builtins(c), "url": mask_url(c.url), "source": "inventory"}
            for c in imported
        ),
    ]
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(rows), indent=2).decode())
        return
    if not rows:
        click.echo(t("cli.cameras_none"))
        return
    _table(
        ["ID", "NAME", "MUNICIPALITY", "DRIVER", "URL", "TAGS"],
        [
            [r["id"], r["name"], r["municipality"], r["driver"], r["url"], ",".join(r["tags"])]
            for r in rows
        ],
    )
    if configured:
        click.echo(t("cli.cameras_sources", config=len(configured), inventory=len(imported)))


@cameras.command("delete")
@click.argument("camera_ids", nargs=-1, required=True)
@config_option
def cameras_delete(camera_ids: tuple[str, ...], config_file: str | None) -> None:
    """Remove cameras from the inventory (a running hub stops them within
    [cameras] inventory_refresh seconds)."""
    from .cameras.inventory import Inventory

    async def work(journal: Any) -> list[str]:
        inventory = Inventory(journal)
        missing = [i for i in camera_ids if not await inventory.delete(i)]
        removed = [i for i in camera_ids if i not in missing]
        if removed:
            await _audit_cli(journal, "cameras.delete", {"cameras": removed})
        return missing

    missing = _with_journal(config_file, work, migrate=True)
    for camera_id in missing:
        click.echo(f"no camera {camera_id!r} in the inventory", err=True)
    click.echo(f"{len(camera_ids) - len(missing)} deleted")
    if missing:
        raise SystemExit(1)


_RELATIVE = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _moment(text: str, now: datetime) -> datetime:
    """``2026-11-01``, ``2026-11-01T06:00:00+03:00`` (no offset: UTC) or ``7d``/``24h``/``30m``
    ago."""
    value = text.strip()
    if value[:-1].isdigit() and value[-1:] in _RELATIVE:
        return now - timedelta(seconds=int(value[:-1]) * _RELATIVE[value[-1]])
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give a date (2026-11-01), a time with offset or 7d / 24h / 30m"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@cli.group()
def report() -> None:
    """Reports for the region's ЕДДС."""


@report.command("cameras")
@config_option
@click.option("--since", default="7d", show_default=True, help="Start: a date, a time or 7d/24h.")
@click.option("--until", default=None, help="End (default: now).")
@click.option("--municipality", "municipalities", multiple=True, help="Only these (repeat).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
def report_cameras(
    config_file: str | None,
    since: str,
    until: str | None,
    municipalities: tuple[str, ...],
    fmt: str,
) -> None:
    """Per municipality: cameras total, ok, degraded (black/frozen), offline, unknown, their
    availability over the period from the journal of health changes, the target
    ([cameras] targets) and whether the district is lagging."""
    from .cameras.report import build_report, to_csv
    from .cameras.states import CameraStates
    from .regions import load_region

    _quiet_logs(False)
    loaded = _load_or_exit(_config_path(config_file), strict=False)
    now = datetime.now(UTC)
    start, end = _moment(since, now), _moment(until, now) if until else now
    if start >= end:
        raise click.BadParameter("--since must be before --until")
    if start >= now:
        raise click.BadParameter("--since is in the future: the period has not begun")
    region = load_region(loaded.config.hub.region)
    unknown = [m for m in municipalities if m not in region]
    if unknown:
        raise click.BadParameter(f"not municipalities of {region.id}: {', '.join(unknown)}")

    async def work(hub: Hub) -> Any:
        cameras = {rt.id: rt.entry.municipality or "" for rt in hub.camera_units()}
        for record in await hub.inventory.list():
            cameras.setdefault(record.id, record.municipality)
        states = CameraStates(hub.journal)
        await states.load()
        cfg = loaded.config.cameras
        return await build_report(
            hub.journal,
            cameras,
            states.all(),
            region,
            since=start,
            until=end,
            generated_at=now,
            targets=cfg.targets,
            availability_target=cfg.availability_target,
            language=loaded.config.hub.language,
            municipalities=municipalities or None,
        )

    result = _with_prepared_hub(loaded, work)
    if fmt == "json":
        click.echo(msgspec.json.format(msgspec.json.encode(result), indent=2).decode())
        return
    if fmt == "csv":
        click.echo(to_csv(result), nl=False)
        return
    click.echo(
        f"{result.region}: {result.since:%Y-%m-%d %H:%M} … {result.until:%Y-%m-%d %H:%M} UTC, "
        f"availability target {result.availability_target:g}%"
    )

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}%"

    _table(
        [
            "MUNICIPALITY",
            "TOTAL",
            "OK",
            "DEGRADED",
            "OFFLINE",
            "UNKNOWN",
            "AVAIL",
            "TARGET",
            "LAGGING",
        ],
        [
            [
                r.name,
                str(r.total),
                str(r.ok),
                str(r.degraded),
                str(r.offline),
                str(r.unknown),
                pct(r.availability_pct),
                "-" if r.target is None else str(r.target),
                "; ".join(r.why) if r.why else (_yes(True) if r.lagging else ""),
            ]
            for r in [*result.districts, result.total]
        ],
    )


@report.command("sirens")
@config_option
@click.option("--municipality", "municipalities", multiple=True, help="Only these (repeat).")
@click.option("--json", "as_json", is_flag=True)
def report_sirens(config_file: str | None, municipalities: tuple[str, ...], as_json: bool) -> None:
    """Readiness of warning devices per municipality: devices, ready (latest technical check
    passed), readiness %, when the checks ran, and why the others are not ready."""
    from .alerts.readiness import latest_results, sirens_report
    from .regions import load_region

    _quiet_logs(False)
    loaded = _load_or_exit(_config_path(config_file), strict=False)
    region = load_region(loaded.config.hub.region)

    async def work(hub: Hub) -> Any:
        devices = {rt.id: rt.entry.municipality or "" for rt in hub.device_units()}
        results = await latest_results(hub.journal)
        for device, latest in results.items():  # checked, though its plugin is not here
            if device in hub.units and device not in devices:
                devices[device] = next(iter(latest.values())).municipality or ""
        return sirens_report(
            devices,
            results,
            region,
            language=_messages(loaded).language,
            municipalities=list(municipalities) or None,
        )

    rows = _with_prepared_hub(loaded, work)
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(rows), indent=2).decode())
        return
    if not rows:
        click.echo("no warning devices configured")
        return

    def when(value: Any) -> str:
        return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")

    _table(
        [
            "MUNICIPALITY",
            "DEVICES",
            "READY",
            "READINESS",
            "TECHNICAL",
            "COMPREHENSIVE",
            "NOT READY",
        ],
        [
            [
                r.name,
                str(r.devices),
                str(r.ready),
                "-" if r.readiness_pct is None else f"{r.readiness_pct:.0f}%",
                when(r.technical_at),
                when(r.comprehensive_at),
                "; ".join(r.failing),
            ]
            for r in rows
        ],
    )


@cli.group()
def rules() -> None:
    """The [[rules]] of the configuration: list them, try them on an event."""


@rules.command("test")
@click.argument("event_file", type=click.Path(exists=True, dir_okay=False))
@config_option
@click.option("--json", "as_json", is_flag=True)
def rules_test(event_file: str, config_file: str | None, as_json: bool) -> None:
    """Which rules EVENT_FILE (a CloudEvent, JSON) would fire and what they would do — without
    doing it (cooldowns are not applied)."""
    from .events import EventError, decode_event
    from .rules.engine import RuleEngine

    loaded = _load_or_exit(_config_path(config_file))
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
    _table(
        ["RULE", "ACTION", "TARGET", "WHAT"],
        [[p.rule, p.action, p.target, p.detail] for p in plan],
    )


@rules.command("list")
@config_option
def rules_list(config_file: str | None) -> None:
    """The rules, in order, with what they match and do."""
    loaded = _load_or_exit(_config_path(config_file))
    if not loaded.config.rules:
        click.echo("no rules; add [[rules]] to the configuration (docs/rules.md)")
        return
    _table(
        ["RULE", "ENABLED", "TYPES", "MUNICIPALITIES", "ACTIONS", "COOLDOWN"],
        [
            [
                r.name,
                _yes(r.enabled),
                ",".join(r.when.type),
                ",".join(r.when.municipality) or "*",
                ",".join(a.kind for a in r.then),
                f"{r.cooldown:g} s",
            ]
            for r in loaded.config.rules
        ],
    )


def _heading(text: str) -> str:
    """A table's column heading (``LAST SIGN-IN``) in the configuration's language
    (catalog key ``cli.head.last_sign_in``); as given when the catalog has none."""
    t = _headings or _messages()
    key = "cli.head." + "".join(c if c.isalnum() else "_" for c in text.lower())
    found = t(key)
    return text if found == key else found


def _yes(value: bool) -> str:
    t = _headings or _messages()
    return t("cli.yes") if value else t("cli.no")


def _table(header: list[str], rows: list[list[str]]) -> None:
    header = [_heading(h) for h in header]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


# -- plugin commands -------------------------------------------------------------------------
_CLI_IMPORT_TIMEOUT = 10.0


def _import_with_timeout(target: str, timeout: float) -> object:
    """Import a plugin for its commands in a daemon thread, so a hanging import cannot hang
    the command line (the thread is abandoned, not waited for)."""
    from .plugins.host import _import_target

    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = _import_target(target)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="nabat-cli-import")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"import did not finish within {timeout:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def _add_plugin_commands(argv: list[str]) -> None:
    """Let enabled plugins add sub-commands (``register_cli``). Problems are reported and
    skipped: a broken plugin must not take the core's commands down with it."""
    config_file = None
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            config_file = argv[i + 1]
        elif arg.startswith("--config="):
            config_file = arg.split("=", 1)[1]
    path = _config_path(config_file)
    if not path.exists():
        return
    try:
        loaded = load_config(path)
    except ConfigInvalid:
        return  # the command itself will report it
    from .plugins import PluginHost, discover

    found, _ = discover()
    host = PluginHost()
    for name, info in found.items():
        entry = loaded.config.plugins.get(name)
        if not (entry.enabled if entry is not None else info.builtin):
            continue
        try:
            host.add(info, _import_with_timeout(info.target, _CLI_IMPORT_TIMEOUT))
            host.call_sync(name, "register_cli", cli=cli)
        except Exception as exc:
            click.echo(
                f"warning: plugin {name!r} could not add its commands: {type(exc).__name__}: {exc}",
                err=True,
            )


def _add_console_commands() -> None:
    from .console.cli import users  # imports this module: added once it is complete

    cli.add_command(users)


_add_console_commands()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger().setLevel(logging.WARNING)
    if not argv or argv[0] not in {
        "run",
        "config",
        "db",
        "deliveries",
        "tokens",
        "users",
        "cameras",
        "plugins",
        "version",
        "-V",
        "--version",
    }:
        _add_plugin_commands(argv)
    cli.main(args=argv, prog_name="nabat")


if __name__ == "__main__":
    main()
