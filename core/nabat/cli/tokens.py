"""``nabat tokens``: the HTTP API's bearer tokens (create, list, revoke)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
import msgspec

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


@click.group("tokens")
def command() -> None:
    """API bearer tokens: create (the secret is shown once), list, revoke."""


@command.command("create")
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

    from ..api.tokens import TokenError, TokenStore
    from ..regions import load_region

    loaded = load_or_exit(config_path(config_file))
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
        await audit(
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

    secret, info = with_journal(None, work, migrate=True, loaded=loaded)
    if as_json:
        out = msgspec.to_builtins(info)
        out["secret"] = secret
        print_json(out)
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


@command.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def tokens_list(config_file: str | None, as_json: bool) -> None:
    """Every token: id, name, scopes, municipalities, expiry (never secrets)."""
    from ..api.tokens import TokenStore

    async def work(journal: Any) -> Any:
        return await TokenStore(journal).list()

    infos = with_journal(config_file, work, migrate=True)
    if as_json:
        print_json(infos)
        return
    if not infos:
        click.echo("no tokens; create one with `nabat tokens create --name ... --scopes ...`")
        return
    table(
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


@command.command("revoke")
@click.argument("token")
@config_option
def tokens_revoke(token: str, config_file: str | None) -> None:
    """Revoke TOKEN (its id or name). Running hubs refuse it within 5 seconds."""
    from ..api.tokens import TokenStore

    async def work(journal: Any) -> Any:
        info = await TokenStore(journal).revoke(token)
        if info is not None:
            await audit(journal, "tokens.revoke", {"token": info.id, "name": info.name})
        return info

    info = with_journal(config_file, work, migrate=True)
    if info is None:
        click.echo(f"error: no token with id or name {token!r}", err=True)
        raise SystemExit(1)
    click.echo(f"token {info.id} ({info.name}) revoked; running hubs refuse it within 5 s")
