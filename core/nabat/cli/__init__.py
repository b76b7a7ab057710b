"""The ``nabat`` command line: one module per command group, sharing :mod:`._common`.

``nabat run`` runs the hub until Ctrl-C or SIGTERM; ``config check`` / ``config show`` validate
and print the configuration (secrets masked); ``db`` upgrades the journal's schema;
``deliveries``, ``tokens``, ``users`` and ``cameras`` manage what the journal holds; ``report``
and ``rules`` read it and the rules; ``plugins`` lists what is installed and whether it loads;
``version`` prints versions. Plugins add sub-commands through ``register_cli``
(:mod:`._group`).

The configuration file is ``--config FILE``, else ``$NABAT_CONFIG``, else ``./plugins.toml``.
Exit codes: 0 success, 1 invalid configuration or a failed check, 2 usage error.
"""

from __future__ import annotations

import logging
import sys

import click

from . import (
    cameras,
    config,
    db,
    deliveries,
    evidence,
    plugins,
    report,
    rules,
    run,
    tokens,
    users,
    version,
)
from ._common import core_version
from ._group import NabatGroup

__all__ = ["COMMAND_MODULES", "cli", "main"]

COMMAND_MODULES = (
    run,
    config,
    db,
    deliveries,
    tokens,
    users,
    cameras,
    report,
    rules,
    evidence,
    plugins,
    version,
)
"""The core's command groups: each module's ``command``, named as the module."""


@click.group(cls=NabatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(core_version(), "-V", "--version", prog_name="nabat")
def cli() -> None:
    """Nabat — the public-safety integration hub."""


for _module in COMMAND_MODULES:
    cli.add_command(_module.command)


def main(argv: list[str] | None = None) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="nabat")


if __name__ == "__main__":
    main()
