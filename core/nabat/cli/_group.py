"""The ``nabat`` click group: the core's commands, and the enabled plugins' added on demand.

A plugin adds commands through its ``register_cli`` hook, which means importing it — slow, and
a broken plugin can fail or hang there. The core's commands never need that: the group imports
plugins only when asked for a name that is not the core's (``nabat <plugin command> …``) or for
the whole list (``nabat --help``), as Litestar's ``LitestarExtensionGroup`` adds its plugins'
commands. Which plugins are enabled is read from the configuration the sub-command names with
its own ``--config``, parsed by click with the option the commands declare.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import ConfigInvalid, load_config
from ._common import config_option, config_path

if TYPE_CHECKING:
    from ..plugins import PluginInfo

__all__ = ["PLUGIN_IMPORT_TIMEOUT", "NabatGroup"]

PLUGIN_IMPORT_TIMEOUT = 10.0
"""Seconds a plugin's import may take before its commands are given up (and the import
abandoned in its daemon thread): a plugin that hangs must not hang the command line."""

# Reads only --config/-c from a sub-command's arguments; everything else is left alone.
_config_reader = config_option(
    click.Command(
        "nabat",
        context_settings={
            "ignore_unknown_options": True,
            "allow_extra_args": True,
            "help_option_names": [],
        },
    )
)


def config_named_in(args: list[str]) -> str | None:
    """The ``--config`` among a sub-command's arguments, before click knows the command."""
    try:
        ctx = _config_reader.make_context("nabat", list(args), resilient_parsing=True)
    except click.ClickException:
        return None  # the command itself will report it
    return ctx.params.get("config_file")


class NabatGroup(click.Group):
    """A group whose plugins' commands are added the first time a command is not the core's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins_asked = False

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            self.add_plugin_commands(config_path(config_named_in(args[1:])))
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands(config_path(None))
        return super().list_commands(ctx)

    def add_plugin_commands(self, path: Path) -> None:
        """Let the plugins enabled in ``path`` add their commands (once). Problems are reported
        and skipped: a broken plugin must not take the core's commands down with it."""
        if self._plugins_asked:
            return
        self._plugins_asked = True
        if not path.exists():
            return
        try:
            loaded = load_config(path)
        except ConfigInvalid:
            return  # the command itself will report it
        from ..plugins import discover  # pluggy and the hookspecs: not for the core's commands

        found, _ = discover()
        enabled = []
        for name, info in found.items():
            entry = loaded.config.plugins.get(name)
            if entry.enabled if entry is not None else info.builtin:
                enabled.append(info)
        asyncio.run(self._register(enabled))

    async def _register(self, plugins: list[PluginInfo]) -> None:
        from ..plugins import PluginHost

        host = PluginHost()  # imports each in a daemon thread, within the timeout
        for info in plugins:
            try:
                await host.load(info, PLUGIN_IMPORT_TIMEOUT)
                host.call_sync(info.name, "register_cli", cli=self)
            except Exception as exc:
                click.echo(
                    f"warning: plugin {info.name!r} could not add its commands: "
                    f"{type(exc).__name__}: {exc}",
                    err=True,
                )
