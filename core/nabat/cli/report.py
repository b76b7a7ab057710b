"""``nabat report``: the region's ЕДДС reports (cameras, sirens, recording, staffing) from the
journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from ._common import (
    config_option,
    config_path,
    load_or_exit,
    messages,
    print_json,
    quiet_logs,
    table,
    with_prepared_hub,
    yes,
)

if TYPE_CHECKING:
    from ..hub import Hub  # annotations only: importing the hub slows every `nabat` process

__all__ = ["command"]


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


@click.group("report")
def command() -> None:
    """Reports for the region's ЕДДС."""


@command.command("cameras")
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
    from ..cameras.report import build_report, to_csv
    from ..cameras.states import CameraStates
    from ..regions import load_region

    quiet_logs(False)
    loaded = load_or_exit(config_path(config_file), strict=False)
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
        cameras = {rt.id: rt.entry.municipality or "" for rt in hub.units.cameras()}
        for record in await hub.inventory.list():
            cameras.setdefault(record.id, record.municipality)
        states = CameraStates(hub.journal)
        await states.load()
        cfg = loaded.config.cameras
        report = await build_report(
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
        if loaded.config.federation.follow:  # the region: the sites' districts as they said
            from ..federation.reports import merge_camera_rows, site_reports

            report = merge_camera_rows(
                report,
                await site_reports(hub.journal),
                reachable={},
                language=loaded.config.hub.language,
                municipalities=list(municipalities) or None,
                now=now,
            )
        return report

    result = with_prepared_hub(loaded, work)
    if fmt == "json":
        print_json(result)
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

    table(
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
                f"{r.name} [{r.site}]" if r.site else r.name,
                str(r.total),
                str(r.ok),
                str(r.degraded),
                str(r.offline),
                str(r.unknown),
                pct(r.availability_pct),
                "-" if r.target is None else str(r.target),
                "; ".join(r.why) if r.why else (yes(True) if r.lagging else ""),
            ]
            for r in [*result.districts, result.total]
        ],
    )


@command.command("recording")
@config_option
@click.option("--municipality", "municipalities", multiple=True, help="Only these (repeat).")
@click.option("--cameras", "per_camera", is_flag=True, help="A row per camera too.")
@click.option("--json", "as_json", is_flag=True)
def report_recording(
    config_file: str | None, municipalities: tuple[str, ...], per_camera: bool, as_json: bool
) -> None:
    """Archive depth per municipality: cameras a continuous policy records, how many meet
    [recording] depth_days (deep enough, no day without footage, hash chain intact), the
    shallowest archive, bytes kept, and why a district lags."""
    from ..recording.depth import depth_report
    from ..regions import load_region

    quiet_logs(False)
    loaded = load_or_exit(config_path(config_file), strict=False)
    region = load_region(loaded.config.hub.region)
    unknown = [m for m in municipalities if m not in region]
    if unknown:
        raise click.BadParameter(f"not municipalities of {region.id}: {', '.join(unknown)}")

    async def work(hub: Hub) -> Any:
        await hub.fleet.load()
        return await depth_report(
            hub.footage,
            hub.recorder.recorded(),
            region,
            target_days=loaded.config.recording.depth_days,
            language=loaded.config.hub.language,
            municipalities=municipalities or None,
            slack=2 * loaded.config.recording.segment_seconds,
        )

    result = with_prepared_hub(loaded, work)
    if as_json:
        print_json(result)
        return
    click.echo(f"{result.region}: archive depth target {result.target_days:g} days")
    table(
        ["MUNICIPALITY", "CAMERAS", "MEETING", "MIN DEPTH", "GB", "LAGGING"],
        [
            [
                d.name,
                str(d.cameras),
                str(d.meeting),
                "-" if d.min_depth_days is None else f"{d.min_depth_days:.1f}",
                f"{d.bytes / 1024**3:.2f}",
                "; ".join(d.why) if d.why else "",
            ]
            for d in result.districts
        ],
    )
    if per_camera:
        table(
            ["CAMERA", "MUNICIPALITY", "DEPTH", "COVERED", "MISSING DAYS", "CHAIN"],
            [
                [
                    c.camera,
                    c.municipality,
                    f"{c.depth_days:.1f}",
                    f"{c.recorded_pct:.1f}%",
                    ", ".join(f"{d:%m-%d}" for d in c.missing_days[:10])
                    + (" …" if len(c.missing_days) > 10 else ""),
                    yes(c.chain_ok) if c.chain_ok else "; ".join(c.problems[:3]),
                ]
                for c in result.cameras
            ],
        )


@command.command("sirens")
@config_option
@click.option("--municipality", "municipalities", multiple=True, help="Only these (repeat).")
@click.option("--json", "as_json", is_flag=True)
def report_sirens(config_file: str | None, municipalities: tuple[str, ...], as_json: bool) -> None:
    """Readiness of warning devices per municipality: devices, ready (latest technical check
    passed), readiness %, when the checks ran, and why the others are not ready."""
    from ..alerts.readiness import latest_results, sirens_report
    from ..regions import load_region

    quiet_logs(False)
    loaded = load_or_exit(config_path(config_file), strict=False)
    region = load_region(loaded.config.hub.region)

    async def work(hub: Hub) -> Any:
        devices = {rt.id: rt.entry.municipality or "" for rt in hub.units.devices()}
        results = await latest_results(hub.journal)
        for device, latest in results.items():  # checked, though its plugin is not here
            if device in hub.units and device not in devices:
                devices[device] = next(iter(latest.values())).municipality or ""
        rows = sirens_report(
            devices,
            results,
            region,
            language=messages(loaded).language,
            municipalities=list(municipalities) or None,
        )
        if loaded.config.federation.follow:  # the region: the sites' districts too
            from ..federation.reports import merge_siren_rows, site_reports

            rows = merge_siren_rows(
                rows, await site_reports(hub.journal), municipalities=list(municipalities) or None
            )
        return rows

    rows = with_prepared_hub(loaded, work)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no warning devices configured")
        return

    def when(value: Any) -> str:
        return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")

    table(
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
                f"{r.name} [{r.site}]" if r.site else r.name,
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


@command.command("staffing")
@config_option
@click.option("--since", default="7d", show_default=True, help="Start: a date, a time or 7d/24h.")
@click.option("--until", default=None, help="End (default: now).")
@click.option("--municipality", "municipalities", multiple=True, help="Only these (repeat).")
@click.option("--json", "as_json", is_flag=True)
def report_staffing(
    config_file: str | None,
    since: str,
    until: str | None,
    municipalities: tuple[str, ...],
    as_json: bool,
) -> None:
    """Per municipality: each duty post ([[duty.posts]]), who is on it now from the roster,
    the hours it went uncovered over the period, and why a district lags."""
    from ..duty.staffing import staffing_report
    from ..regions import load_region

    quiet_logs(False)
    loaded = load_or_exit(config_path(config_file), strict=False)
    now = datetime.now(UTC)
    start, end = _moment(since, now), _moment(until, now) if until else now
    if start >= end:
        raise click.BadParameter("--since must be before --until")
    region = load_region(loaded.config.hub.region)
    unknown = [m for m in municipalities if m not in region]
    if unknown:
        raise click.BadParameter(f"not municipalities of {region.id}: {', '.join(unknown)}")
    wanted = list(municipalities) or None

    async def work(hub: Hub) -> Any:
        shifts = await hub.roster.shifts(municipalities=wanted, since=start, until=end)
        report = staffing_report(
            hub.roster.posts(wanted),
            shifts,
            region,
            since=start,
            until=end,
            now=now,
            language=loaded.config.hub.language,
        )
        if loaded.config.federation.follow:  # the region: the sites' districts as they said
            from ..federation.reports import merge_staffing_rows, site_reports

            report = merge_staffing_rows(
                report,
                await site_reports(hub.journal),
                held=loaded.config.federation.municipalities,
                kept_here={s.municipality for s in shifts},
                reachable={},
                language=loaded.config.hub.language,
                municipalities=wanted,
                now=now,
            )
        return report

    result = with_prepared_hub(loaded, work)
    if as_json:
        print_json(result)
        return
    t = messages(loaded)
    click.echo(
        f"{result.region}: {result.since.astimezone(UTC):%Y-%m-%d %H:%M} … "
        f"{result.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{t('cli.staffing_lagging', count=result.lagging, total=len(result.districts))}"
    )
    table(
        ["MUNICIPALITY", "POST", "ON DUTY NOW", "UNCOVERED H", "LAGGING"],
        [
            [
                (f"{row.name} [{row.site}]" if row.site else row.name) if i == 0 else "",
                post.name,
                ", ".join(post.on_duty) or "—",
                f"{post.uncovered_hours:g}",
                ("; ".join(row.why) if row.lagging else "") if i == 0 else "",
            ]
            for row in result.districts
            for i, post in enumerate(row.posts)
        ],
    )
