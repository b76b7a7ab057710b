"""The ``police`` plugin: the ``police.connector`` driver and ``police.hotlist.hit`` events."""

from __future__ import annotations

from nabat.hookspecs import hookimpl

from .connector import HotlistHit, PoliceConnector


@hookimpl
def register_drivers() -> list[type]:
    return [PoliceConnector]


@hookimpl
def register_event_types() -> dict[str, type]:
    return {"police.hotlist.hit": HotlistHit}
