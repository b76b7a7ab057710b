"""The shipped region: 44 municipalities, and outlines that place a point in the right one."""

from __future__ import annotations

from nabat.regions import load_region, outlines_geojson


def test_every_municipality_centre_lies_in_its_own_outline():
    region = load_region("krasnodar-krai")
    assert len(region.municipalities) == 44
    assert {o.municipality for o in region.outlines} == set(region.municipalities)
    for municipality in region.municipalities.values():
        assert region.municipality_at(municipality.lat, municipality.lon) == municipality.id


def test_points_outside_the_region_belong_to_no_municipality():
    region = load_region("krasnodar-krai")
    assert region.municipality_at(44.0, 36.0) is None  # the Black Sea
    assert region.municipality_at(55.75, 37.62) is None  # Moscow
    # Sochi's Adler district, far from its centre, is still Sochi.
    assert region.municipality_at(43.43, 39.92) == "sochi"


def test_the_outlines_are_there_for_maps():
    raw = outlines_geojson("krasnodar-krai")
    assert raw is not None and b'"FeatureCollection"' in raw
    assert outlines_geojson("atlantis") is None
