"""The ``modbus`` plugin: the ``modbus.siren`` driver."""

from __future__ import annotations

from nabat.hookspecs import hookimpl

from .siren import ModbusSiren


@hookimpl
def register_drivers() -> list[type]:
    return [ModbusSiren]
