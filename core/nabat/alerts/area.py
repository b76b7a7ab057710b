"""Which warning devices an alert's area covers.

A CAP area names municipalities (geocode ``municipality`` = slug), polygons (closed rings of
``(lat, lon)``) and circles (centre and radius in km). A device is covered when its
municipality is named, or its location lies inside one of the polygons or circles. A device
without a location is reached only through its municipality.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..geo import distance_km, point_in_polygon
from ..interfaces.alerting import MUNICIPALITY_GEOCODE, Area

__all__ = ["MUNICIPALITY_GEOCODE", "covers", "municipalities_of", "point_in_polygon"]


def municipalities_of(areas: Iterable[Area]) -> set[str]:
    return {
        g.value
        for area in areas
        for g in area.geocode
        if g.value_name == MUNICIPALITY_GEOCODE and g.value
    }


def covers(
    areas: Sequence[Area], municipality: str | None, location: tuple[float, float] | None
) -> bool:
    if municipality is not None and municipality in municipalities_of(areas):
        return True
    if location is None:
        return False
    lat, lon = location
    for area in areas:
        if any(point_in_polygon(lat, lon, ring) for ring in area.polygon):
            return True
        if any(distance_km(lat, lon, c.lat, c.lon) <= c.radius_km for c in area.circle):
            return True
    return False
