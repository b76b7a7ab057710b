"""The ``onvif`` plugin: the ``onvif.camera`` driver and its ``camera.clock.*`` events."""

from __future__ import annotations

from nabat.hookspecs import hookimpl

from .camera import ClockDrift, OnvifCamera


@hookimpl
def register_drivers() -> list[type]:
    return [OnvifCamera]


@hookimpl
def register_event_types() -> dict[str, type]:
    return {"camera.clock.*": ClockDrift}
