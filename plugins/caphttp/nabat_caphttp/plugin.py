"""The ``caphttp`` plugin: the ``caphttp.siren`` driver."""

from __future__ import annotations

from nabat.hookspecs import hookimpl

from .siren import CapHttpSiren


@hookimpl
def register_drivers() -> list[type]:
    return [CapHttpSiren]
