"""``nabat version``: the versions of Nabat, Python and the installed plugins."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

import click

from ._common import core_version

__all__ = ["command"]


@click.command("version")
def command() -> None:
    """Print the versions of Nabat, Python and the installed plugins."""
    from ..plugins import discover

    click.echo(f"nabat {core_version()} (Python {platform.python_version()})")
    found, _ = discover()
    dists = {(info.distribution, info.version) for info in found.values()}
    try:
        dists.add(("nabat-hub", version("nabat-hub")))
    except PackageNotFoundError:
        pass
    for dist, ver in sorted(d for d in dists if d[0] != "nabat"):
        click.echo(f"  {dist} {ver}")
