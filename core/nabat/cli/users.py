"""``nabat users``: the console's accounts (create, list, passwd, disable, enable, unlock, delete).

Every change is written to the audit log. Passwords are asked twice at a terminal, or read
from standard input with ``--password-stdin`` (scripts); never from the command line, where
``ps`` and shell history would show them.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ._common import (
    audit,
    config_option,
    config_path,
    load_or_exit,
    print_json,
    table,
    with_journal,
)

__all__ = ["command"]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        # No terminal to ask at (a script, `docker exec` without -t): say what to do instead
        # of click's bare "Aborted!".
        click.echo(
            "error: no terminal to ask the password at; pipe it in with --password-stdin, "
            "e.g. `printf '%s\\n' \"$PW\" | nabat users create ... --password-stdin`",
            err=True,
        )
        raise SystemExit(1)
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


def _store(journal: Any, loaded: Any) -> Any:
    from ..api.users import UserStore

    console = loaded.config.api.console
    return UserStore(journal, max_failures=console.max_failures, lockout=console.lockout)


@click.group("users")
def command() -> None:
    """Console accounts: operators (their municipalities), supervisors, admins."""


@command.command("create")
@config_option
@click.option("--login", required=True, help="Latin letters, digits, '.', '_', '-'.")
@click.option("--name", help="Full name, as the console shows it.")
@click.option(
    "--role",
    type=click.Choice(["operator", "supervisor", "admin"]),
    required=True,
    help="operator: their municipalities; supervisor: the whole region; admin: also the hub.",
)
@click.option(
    "--municipality",
    "municipalities",
    multiple=True,
    help="An operator's municipality (repeat for several).",
)
@click.option("--language", type=click.Choice(["ru", "en"]), default="ru", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(
    config_file: str | None,
    login: str,
    name: str | None,
    role: str,
    municipalities: tuple[str, ...],
    language: str,
    password_stdin: bool,
) -> None:
    """Create an account."""
    from ..api.users import UserError
    from ..regions import load_region

    loaded = load_or_exit(config_path(config_file))
    region = load_region(loaded.config.hub.region)
    password = _password(password_stdin)

    async def work(journal: Any) -> Any:
        try:
            user = await _store(journal, loaded).create(
                login,
                password,
                role=role,
                name=name,
                municipalities=municipalities,
                known_municipalities=list(region.municipalities),
                language=language,
            )
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(1) from None
        await audit(journal, "users.create", user.public())
        return user

    user = with_journal(None, work, migrate=True, loaded=loaded)
    where = ", ".join(user.municipalities) or "the whole region"
    click.echo(f"user {user.login} ({user.name}) created: {user.role}, {where}")


@command.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def users_list(config_file: str | None, as_json: bool) -> None:
    """Every account (never a password hash)."""
    loaded = load_or_exit(config_path(config_file))

    async def work(journal: Any) -> Any:
        return await _store(journal, loaded).list()

    found = with_journal(None, work, migrate=True, loaded=loaded)
    rows = [
        {
            **u.public(),
            "disabled": u.disabled,
            "locked_until": u.locked_until.isoformat(timespec="seconds")
            if u.locked_until
            else None,
            "last_sign_in": u.last_sign_in.isoformat(timespec="seconds")
            if u.last_sign_in
            else None,
        }
        for u in found
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no users; create one with `nabat users create --login ... --role ...`")
        return
    table(
        ["LOGIN", "NAME", "ROLE", "MUNICIPALITIES", "STATE", "LAST SIGN-IN"],
        [
            [
                r["login"],
                r["name"],
                r["role"],
                ",".join(r["municipalities"]) or "(all)",
                "disabled"
                if r["disabled"]
                else (f"locked until {r['locked_until']}" if r["locked_until"] else "active"),
                r["last_sign_in"] or "never",
            ]
            for r in rows
        ],
    )


def _change(config_file: str | None, login: str, action: str, **changes: Any) -> None:
    from ..api.sessions import SessionStore
    from ..api.users import UserError

    loaded = load_or_exit(config_path(config_file))

    async def work(journal: Any) -> Any:
        try:
            user = await _store(journal, loaded).update(login, **changes)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(1) from None
        ended = 0
        if changes.get("password") is not None or changes.get("disabled"):
            console = loaded.config.api.console
            sessions = SessionStore(
                journal, idle=console.session_idle, absolute=console.session_max
            )
            ended = await sessions.end_all(user.login)
        await audit(journal, f"users.{action}", {"login": user.login, "sessions_ended": ended})
        return user, ended

    user, ended = with_journal(None, work, migrate=True, loaded=loaded)
    note = f"; {ended} session(s) ended" if ended else ""
    click.echo(f"user {user.login}: {action} done{note}")


@command.command("passwd")
@click.argument("login")
@config_option
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_passwd(login: str, config_file: str | None, password_stdin: bool) -> None:
    """Set LOGIN's password (ends their sessions, lifts a lock)."""
    _change(config_file, login, "passwd", password=_password(password_stdin))


@command.command("disable")
@click.argument("login")
@config_option
def users_disable(login: str, config_file: str | None) -> None:
    """Stop LOGIN from signing in (ends their sessions)."""
    _change(config_file, login, "disable", disabled=True)


@command.command("enable")
@click.argument("login")
@config_option
def users_enable(login: str, config_file: str | None) -> None:
    """Let a disabled LOGIN sign in again."""
    _change(config_file, login, "enable", disabled=False)


@command.command("unlock")
@click.argument("login")
@config_option
def users_unlock(login: str, config_file: str | None) -> None:
    """Lift the lock repeated failed sign-ins put on LOGIN."""
    _change(config_file, login, "unlock", unlock=True)


@command.command("delete")
@click.argument("login")
@config_option
def users_delete(login: str, config_file: str | None) -> None:
    """Delete LOGIN's account."""
    from ..api.sessions import SessionStore

    loaded = load_or_exit(config_path(config_file))

    async def work(journal: Any) -> Any:
        if not await _store(journal, loaded).delete(login):
            click.echo(f"error: no user {login!r}", err=True)
            raise SystemExit(1)
        console = loaded.config.api.console
        sessions = SessionStore(journal, idle=console.session_idle, absolute=console.session_max)
        await sessions.end_all(login.strip().lower())
        await audit(journal, "users.delete", {"login": login})

    with_journal(None, work, migrate=True, loaded=loaded)
    click.echo(f"user {login} deleted")
