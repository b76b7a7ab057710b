"""``nabat deliveries``: durable subscriptions' progress, retries and dead letters."""

from __future__ import annotations

from typing import Any

import click

from ._common import config_option, print_json, table, with_journal

__all__ = ["command"]


@click.group("deliveries")
def command() -> None:
    """Durable subscriptions: progress, retries and dead letters."""


@command.command("status")
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

    rows = with_journal(config_file, work)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no durable subscriptions")
        return
    table(
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


@command.command("list")
@click.argument("subscription", required=False)
@config_option
@click.option("--state", type=click.Choice(["retry", "dead"]), help="Only this state.")
@click.option("--json", "as_json", is_flag=True)
def deliveries_list(
    subscription: str | None, config_file: str | None, state: str | None, as_json: bool
) -> None:
    """Events that could not be delivered (yet), per subscription."""
    from ..store.delivery import IssueState

    async def work(journal: Any) -> list[Any]:
        return await journal.issues(
            subscription, IssueState(state) if state else None, limit=100_000
        )

    issues = with_journal(config_file, work)
    if as_json:
        print_json(issues)
        return
    if not issues:
        click.echo("nothing is waiting or dead")
        return
    table(
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


def _dead_letter_command(action: str) -> None:
    """``retry`` and ``discard`` differ only in what the journal does with the dead letters."""
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
    def dead_letters(
        subscription: str, seqs: tuple[int, ...], config_file: str | None, everything: bool
    ) -> None:
        if not seqs and not everything:
            raise click.UsageError("name the SEQ numbers, or pass --all")

        async def work(journal: Any) -> int:
            if await journal.subscription(subscription) is None:
                click.echo(f"error: no subscription {subscription!r}", err=True)
                raise SystemExit(1)
            return await getattr(journal, verb)(subscription, None if everything else list(seqs))

        count = with_journal(config_file, work)
        done = "queued for delivery" if action == "retry" else "discarded"
        click.echo(f"{count} dead letter(s) of {subscription} {done}")

    dead_letters.__doc__ = help_text
    command.command(action)(dead_letters)


_dead_letter_command("retry")
_dead_letter_command("discard")
