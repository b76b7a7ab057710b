"""The simple incident card: what a 112 platform without EIDO sends (documented in the README).

One JSON object per card; the same ``id`` on every version of it (the card number, КИО):

.. code-block:: json

    {"id": "КИО-2026-000123", "time": "2026-11-25T10:15:00+03:00",
     "caller": "+7 918 123-45-67", "address": "г. Краснодар, ул. Красная, 1",
     "lat": 45.0355, "lon": 38.9753, "type": "traffic_accident",
     "description": "Столкновение двух автомобилей", "victims": 2,
     "services": ["02", "03"], "status": "open"}

Unknown fields are refused (a misspelt ``servises`` must not silently drop the services), and
every problem is named by its JSON path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from nabat.interfaces import GeoPoint, Incident, IncidentStatus
from nabat.interfaces.incident import MAX_VICTIMS

__all__ = ["MAX_CARD_BYTES", "Card", "CardError", "parse_card"]

MAX_CARD_BYTES = 256 * 1024

Service = Literal["01", "02", "03", "04"]


class CardError(ValueError):
    """A card was refused: ``path`` (``$.victims``) and ``reason``."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"card rejected: {path}: {reason}")


class Card(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    """The card's number in the 112 system; the same on every update."""
    time: datetime
    """When the call came in (with a UTC offset)."""
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    caller: Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[0-9+()\- ]*$")] | None = None
    address: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
    description: Annotated[str, msgspec.Meta(max_length=8000)] | None = None
    victims: Annotated[int, msgspec.Meta(ge=0, le=MAX_VICTIMS)] | None = None
    services: Annotated[list[Service], msgspec.Meta(max_length=4)] = []
    status: Literal["open", "closed"] = "open"
    updated: datetime | None = None
    """When this version of the card was made (default: ``time``); an older version arriving
    after a newer one is ignored."""
    municipality: (
        Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)] | None
    ) = None
    """A municipality slug of the region (``krasnodar``); default: the one the coordinates lie
    in."""

    def __post_init__(self) -> None:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        for name in ("time", "updated"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a UTC offset (2026-11-25T10:15:00+03:00)")

    def incident(self, origin: str) -> Incident:
        return Incident(
            status=IncidentStatus(self.status),
            title=self.type,
            type=self.type,
            description=self.description,
            reported_at=self.time,
            updated_at=self.updated or self.time,
            caller=self.caller,
            address=self.address,
            location=GeoPoint(self.lat, self.lon) if self.lat is not None else None,  # type: ignore[arg-type]
            victims=self.victims,
            services=sorted(set(self.services)),
            origin=origin,
            external_id=self.id,
        )


_decoder = msgspec.json.Decoder(Card)


def parse_card(body: bytes) -> Card:
    """Decode and check a card; :class:`CardError` names the first problem."""
    if len(body) > MAX_CARD_BYTES:
        raise CardError("$", f"larger than {MAX_CARD_BYTES} bytes")
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        reason, _, path = text.rpartition(" - at `")
        if not reason:
            return _raise("$", text)
        return _raise(path.rstrip("`"), reason)
    except msgspec.DecodeError as exc:
        return _raise("$", f"not JSON: {exc}")


def _raise(path: str, reason: str) -> Card:
    raise CardError(path, reason)
