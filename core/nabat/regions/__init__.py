"""Regions: the municipalities a hub serves, for validating slugs and naming districts.

The default region is Krasnodar Krai (44 municipalities). Other regions ship a CSV of the same
shape (``id,name_ru,name_en,kind,admin_center_ru,lat,lon,...``) next to this module, and may ship
the municipalities' outlines as ``<region>.geojson`` (features with property ``id``): then
:meth:`Region.municipality_at` tells which municipality a point lies in (an incident reported by
coordinates only), and the console's offline map draws them.
"""

from __future__ import annotations

import csv
import json
from functools import cache, cached_property
from importlib import resources

import msgspec

from ..geo import point_in_polygon

__all__ = [
    "Municipality",
    "Outline",
    "Region",
    "available_regions",
    "load_region",
    "outlines_geojson",
]


class Municipality(msgspec.Struct, frozen=True):
    id: str
    name_ru: str
    name_en: str
    kind: str
    lat: float
    lon: float

    def name(self, language: str) -> str:
        return self.name_ru if language == "ru" else self.name_en


Ring = list[tuple[float, float]]
"""A closed ring of (lat, lon) points."""


class Outline(msgspec.Struct, frozen=True):
    """A municipality's territory: polygons as (outer ring, holes), and their bounding box."""

    municipality: str
    polygons: list[tuple[Ring, list[Ring]]]
    bbox: tuple[float, float, float, float]
    """(min lat, min lon, max lat, max lon)."""

    def contains(self, lat: float, lon: float) -> bool:
        s, w, n, e = self.bbox
        if not (s <= lat <= n and w <= lon <= e):
            return False
        return any(
            point_in_polygon(lat, lon, outer)
            and not any(point_in_polygon(lat, lon, hole) for hole in holes)
            for outer, holes in self.polygons
        )


class Region(msgspec.Struct, frozen=True, dict=True):
    id: str
    municipalities: dict[str, Municipality]

    def __contains__(self, slug: object) -> bool:
        return slug in self.municipalities

    @cached_property
    def outlines(self) -> list[Outline]:
        """The municipalities' outlines; empty when the region ships none."""
        return _outlines(self.id)

    def municipality_at(self, lat: float, lon: float) -> str | None:
        """The municipality whose outline holds the point; None outside all of them (at sea,
        beyond the region) or when the region ships no outlines. Where neighbours' simplified
        borders overlap by a few metres the first match wins."""
        for outline in self.outlines:
            if outline.contains(lat, lon):
                return outline.municipality
        return None


def available_regions() -> list[str]:
    return sorted(
        p.name.removesuffix(".csv")
        for p in resources.files(__package__).iterdir()
        if p.name.endswith(".csv")
    )


@cache
def load_region(region_id: str) -> Region:
    """Load a shipped region; KeyError names the regions that exist."""
    path = resources.files(__package__) / f"{region_id}.csv"
    if not path.is_file():
        raise KeyError(f"unknown region {region_id!r}; shipped: {', '.join(available_regions())}")
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    munis = {
        r["id"]: Municipality(
            id=r["id"],
            name_ru=r["name_ru"],
            name_en=r["name_en"],
            kind=r["kind"],
            lat=float(r["lat"]),
            lon=float(r["lon"]),
        )
        for r in rows
    }
    return Region(id=region_id, municipalities=munis)


def outlines_geojson(region_id: str) -> bytes | None:
    """The shipped GeoJSON of the region's outlines (for maps), or None."""
    path = resources.files(__package__) / f"{region_id}.geojson"
    return path.read_bytes() if path.is_file() else None


def _ring(coordinates: list[list[float]]) -> Ring:
    return [(float(lat), float(lon)) for lon, lat, *_ in coordinates]  # GeoJSON is lon, lat


def _outlines(region_id: str) -> list[Outline]:
    raw = outlines_geojson(region_id)
    if raw is None:
        return []
    result: list[Outline] = []
    for feature in json.loads(raw)["features"]:
        geometry = feature["geometry"]
        parts = (
            [geometry["coordinates"]]
            if geometry["type"] == "Polygon"
            else geometry["coordinates"]  # MultiPolygon
        )
        polygons = [(_ring(rings[0]), [_ring(h) for h in rings[1:]]) for rings in parts]
        points = [p for outer, _ in polygons for p in outer]
        bbox = (
            min(p[0] for p in points),
            min(p[1] for p in points),
            max(p[0] for p in points),
            max(p[1] for p in points),
        )
        result.append(Outline(feature["properties"]["id"], polygons, bbox))
    return result
