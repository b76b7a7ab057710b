"""The ``mqtt`` plugin: the ``mqtt.siren`` driver."""

from __future__ import annotations

from nabat.hookspecs import hookimpl

from .siren import MqttSiren


@hookimpl
def register_drivers() -> list[type]:
    return [MqttSiren]
