"""``nabat cameras``: the camera inventory (import a CSV file, list, delete)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import msgspec

from ._common import (
    audit,
    build_hub,
    config_option,
    config_path,
    load_or_exit,
    messages,
    print_json,
    quiet_logs,
    table,
    with_journal,
    with_prepared_hub,
)

if TYPE_CHECKING:
    from ..hub import Hub  # annotations only: importing the hub slows every `nabat` process

__all__ = ["command"]


@click.group("cameras")
def command() -> None:
    """The camera inventory: import it from a CSV file, list it."""


@command.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@config_option
@click.option("--dry-run", is_flag=True, help="Check and count, store nothing.")
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows even if others are bad.")
def cameras_import(file: str, config_file: str | None, dry_run: bool, skip_invalid: bool) -> None:
    """Create or update cameras from FILE (CSV: id, name, municipality, address, lat, lon,
    driver, url, credentials, tags). Re-importing a file changes nothing; cameras not in
    FILE are kept. A file with a bad row imports nothing unless --skip-invalid. Every row's
    address must pass [cameras] destinations (no loopback, link-local, ...)."""
    from ..cameras.destinations import check_rows, destination_policy
    from ..cameras.inventory import Inventory, read_csv
    from ..regions import load_region

    loaded = load_or_exit(config_path(config_file))
    region = load_region(loaded.config.hub.region)
    # The enabled plugins say which driver kinds exist and which addresses each can use.
    quiet_logs(False)
    hub = build_hub(loaded)
    asyncio.run(hub.prepare())
    parsed, errors = read_csv(Path(file), region.municipalities, hub.check_inventory_row)
    # A district's file must not point the hub at its own host or metadata: names looked up.
    policy = destination_policy(loaded.config.cameras, disclose=True)
    parsed, refused = asyncio.run(check_rows(parsed, policy))
    errors = sorted([*errors, *refused], key=lambda e: e.line)
    rows = [row.record for row in parsed]
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
            await audit(
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

    report = with_journal(None, work, migrate=True, loaded=loaded)
    summary = report.summary()
    if errors:
        summary += f"; {len({e.line for e in errors})} invalid row(s) skipped"
    click.echo(summary)


@command.command("list")
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
    from ..cameras.inventory import Inventory
    from ..masking import mask_url

    quiet_logs(False)
    loaded = load_or_exit(config_path(config_file))
    t = messages(loaded)

    async def work(hub: Hub) -> Any:
        inventory = Inventory(hub.journal)
        imported = await inventory.list(
            municipality=municipality, driver=driver, tag=tag, search=search
        )
        known = {c.id for c in await inventory.list()}
        needle = (search or "").lower()
        configured = []
        for rt in hub.units.cameras():
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

    configured, imported = with_prepared_hub(loaded, work, migrate=True)
    rows = [
        *configured,
        *(
            {**msgspec.to_builtins(c), "url": mask_url(c.url), "source": "inventory"}
            for c in imported
        ),
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(t("cli.cameras_none"))
        return
    table(
        ["ID", "NAME", "MUNICIPALITY", "DRIVER", "URL", "TAGS"],
        [
            [r["id"], r["name"], r["municipality"], r["driver"], r["url"], ",".join(r["tags"])]
            for r in rows
        ],
    )
    if configured:
        click.echo(t("cli.cameras_sources", config=len(configured), inventory=len(imported)))


@command.command("delete")
@click.argument("camera_ids", nargs=-1, required=True)
@config_option
def cameras_delete(camera_ids: tuple[str, ...], config_file: str | None) -> None:
    """Remove cameras from the inventory (a running hub stops them within
    [cameras] inventory_refresh seconds)."""
    from ..cameras.inventory import Inventory

    async def work(journal: Any) -> list[str]:
        inventory = Inventory(journal)
        missing = [i for i in camera_ids if not await inventory.delete(i)]
        removed = [i for i in camera_ids if i not in missing]
        if removed:
            await audit(journal, "cameras.delete", {"cameras": removed})
        return missing

    missing = with_journal(config_file, work, migrate=True)
    for camera_id in missing:
        click.echo(f"no camera {camera_id!r} in the inventory", err=True)
    click.echo(f"{len(camera_ids) - len(missing)} deleted")
    if missing:
        raise SystemExit(1)
