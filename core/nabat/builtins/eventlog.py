"""Built-in plugin ``eventlog``: writes every matching event to the log, one line each.

Operators tailing the hub (or a log shipper) see what happens as it happens. The listener
drops its oldest lines rather than slow the bus when logging cannot keep up (counted).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..events import Event
from ..hookspecs import hookimpl
from ..interfaces import HubAPI, Listener
from ..logs import get_logger

log = get_logger("nabat.events")


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    patterns: list[str] = msgspec.field(default_factory=lambda: [">"])
    """Subject patterns of the events to log."""
    data: bool = True
    """Include the event's data in the line."""
    queue_size: int = 10_000


@hookimpl
def plugin_settings() -> type[Settings]:
    return Settings


@hookimpl
def register_listeners(hub: HubAPI, settings: Settings) -> list[Listener]:
    def write(event: Event) -> None:
        fields: dict[str, Any] = {
            "type": event.type,
            "id": event.id,
            "source": event.source,
        }
        for attr in ("subject", "municipality", "severity", "correlationid"):
            value = getattr(event, attr)
            if value is not None:
                fields[attr] = value
        if settings.data and event.data is not None and not isinstance(event.data, bytes):
            fields["data"] = msgspec.to_builtins(event.data, enc_hook=str)
        log.info("event", **fields)

    return [
        Listener(
            patterns=settings.patterns,
            handler=write,
            name="log",
            queue_size=settings.queue_size,
            overflow="drop_oldest",
        )
    ]
