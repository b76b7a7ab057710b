"""The plugin module the ``nabat`` entry point names (``example_siren``).

The hub imports this module only when ``plugins.toml`` enables ``[plugins.example_siren]``,
then calls the hooks below. Registration hooks are called once and must not do I/O. This
plugin has no plugin-wide settings (so it does not implement ``plugin_settings``, and giving
``[plugins.example_siren.settings]`` is an error); every controller is configured on its own
``[instances.<id>]`` table.
"""

from __future__ import annotations

from nabat.hookspecs import hookimpl
from nabat.interfaces import Driver

from .driver import ExampleSirenController


@hookimpl
def register_drivers() -> list[type[Driver]]:
    """Instances with ``kind = "example_siren.controller"`` become ExampleSirenController."""
    return [ExampleSirenController]
