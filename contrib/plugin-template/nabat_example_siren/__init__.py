"""nabat-example-siren: a complete example of a third-party Nabat plugin.

It provides one :class:`~nabat.interfaces.AlertDevice` driver, ``example_siren.controller``,
for a (fictional) siren controller speaking a line protocol over TCP. See ``README.md``.
"""

from .driver import ControllerSettings, ExampleSirenController, parse_status

__all__ = ["ControllerSettings", "ExampleSirenController", "parse_status"]
__version__ = "0.1.0"
