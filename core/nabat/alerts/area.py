"""Which warning devices an alert's area covers.

A CAP area names municipalities (geocode ``municipality`` = slug), polygons (closed rings of
``(lat, lon)``) and circles (centre and radius in km). A device is covered when its
municipality is named, or its location lies inside one of the polygons or circles. A device
without a location is reached only through its municipality.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ..interfaces.alerting import Area

__all__ = ["MUNICIPALITY_GEOCODE", "covers", "municipalities_of", "point_in_polygon"]

MUNICIPALITY_GEOCODE = "municipality"
_EARTH_RADIUS_KM = 6371.0088


def municipalities_of(areas: Iterable[Area]) -> set[str]:
    return {
        g.value
        for area in areas
        for g in area.geocode
        if g.value_name == MUNICIPALITY_GEOCODE and g.value
    }


def point_in_polygon(lat: float, lon: float, ring: Sequence[tuple[float, float]]) -> bool:
    """Ray casting in the (lon, lat) plane: right for the district-sized areas alerts use."""
    inside = False
    n = len(ring)
    for i in range(n):
        lat1, lon1 = ring[i]
        lat2, lon2 = ring[(i + 1) % n]
        if (lat1 > lat) != (lat2 > lat):
            crossing = lon1 + (lat - lat1) * (lon2 - lon1) / (lat2 - lat1)
            if lon < crossing:
                inside = not inside
    return inside


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(math.sqrt(a))


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
