"""Regions: the municipalities a hub serves, for validating slugs and naming districts.

The default region is Krasnodar Krai (44 municipalities). Other regions ship a CSV of the same
shape (``id,name_ru,name_en,kind,admin_center_ru,lat,lon,...``) next to this module.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

import msgspec

__all__ = ["Municipality", "Region", "available_regions", "load_region"]


class Municipality(msgspec.Struct, frozen=True):
    id: str
    name_ru: str
    name_en: str
    kind: str
    lat: float
    lon: float

    def name(self, language: str) -> str:
        return self.name_ru if language == "ru" else self.name_en


class Region(msgspec.Struct, frozen=True):
    id: str
    municipalities: dict[str, Municipality]

    def __contains__(self, slug: object) -> bool:
        return slug in self.municipalities


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
