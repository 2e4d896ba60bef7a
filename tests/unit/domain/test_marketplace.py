"""The default marketplace and eligibility."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

import pytest

from simulator.config import default_couriers
from system.domain.common import LatLon
from system.domain.marketplace import MarketplaceError, eligible, load_marketplace, parse_marketplace

CENTRE = LatLon(lat=51.5072, lon=-0.1276)


def raw() -> dict[str, Any]:
    text = resources.files("system.domain.marketplace").joinpath("default.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def test_default_marketplace_shape() -> None:
    m = load_marketplace()
    assert len(m.couriers) >= 30
    regions = {r for c in m.couriers for r in c.regions}
    assert len(regions) >= 3
    for region in regions:  # every region has several couriers of its own, not just the London-wide four
        assert sum(region in c.regions for c in m.couriers) >= 6, region
    assert {c.dialect for c in m.couriers} == {"uber", "doordash", "stuart"}
    assert len({c.priority_rank for c in m.couriers}) == len(m.couriers)  # ties broken by rank


def test_the_simulators_couriers_are_there_with_the_same_ids_dialects_and_vehicles() -> None:
    m = load_marketplace()
    for sim in default_couriers():
        c = m.courier(sim.name)
        assert c.dialect == sim.dialect and set(c.vehicles) == set(sim.vehicles)
        assert c.priority_fleet == sim.priority
        assert set(c.regions) == {r.id for r in m.regions}  # London-wide, as the simulator plays them
    assert [c.id for c in m.couriers if c.priority_fleet] == ["zoomly"]


def test_regions_partition_the_city() -> None:
    m = load_marketplace()
    assert m.region_of(CENTRE) == "central"
    assert m.region_of(LatLon(lat=51.62, lon=-0.13)) == "north"
    assert m.region_of(LatLon(lat=51.40, lon=-0.13)) == "south"
    assert m.region_of(LatLon(lat=51.51, lon=0.05)) == "east"
    assert m.region_of(LatLon(lat=51.51, lon=-0.32)) == "west"
    assert m.region_of(LatLon(lat=52.5, lon=-1.9)) is None  # Birmingham: out of area
    for lat in (51.30, 51.42, 51.50, 51.58, 51.66):
        for lon in (-0.40, -0.25, -0.13, 0.0, 0.12):
            assert m.region_of(LatLon(lat=lat, lon=lon)) is not None


def test_eligibility_by_size_weight_distance_region_and_vehicle_rule() -> None:
    m = load_marketplace()
    a, b = LatLon(lat=51.52, lon=-0.10), LatLon(lat=51.50, lon=-0.12)  # central, ~3.4 road km
    small = {c.id for c in eligible(m, a, b, "S", 900)}
    assert {"zoomly", "dashly", "pedalo", "vanguard", "bloomsbury-bikes"} <= small
    xl = {c.id for c in eligible(m, a, b, "XL", 9000)}
    assert "vanguard" in xl and "zoomly" not in xl and "pedalo" not in xl
    heavy = {c.id for c in eligible(m, a, b, "M", 18_000)}  # too heavy for a bike
    assert "bloomsbury-bikes" not in heavy and "zoomly" in heavy  # zoomly has a motorbike and a car
    only_vans = {c.id for c in eligible(m, a, b, "S", 900, allowed_vehicles=["van"])}
    assert "vanguard" in only_vans and "zoomly" not in only_vans
    north, south = LatLon(lat=51.62, lon=-0.13), LatLon(lat=51.40, lon=-0.13)
    far = {c.id for c in eligible(m, north, south, "S", 900)}  # ~32 road km across regions
    assert far == set() or all(m.courier(c).max_distance_km >= 30 for c in far)
    assert eligible(m, a, LatLon(lat=52.5, lon=-1.9), "S", 900) == []
    ranks = [c.priority_rank for c in eligible(m, a, b, "S", 900)]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["couriers"][3].update(dialect="fedex"), "couriers.3.dialect"),
        (lambda d: d["couriers"][0].update(regions=["mars"]), "couriers.0.regions: courier 'zoomly' names unknown region"),
        (lambda d: d["couriers"][0].update(vehicles=["rocket"]), "couriers.0.vehicles.0"),
        (lambda d: d["couriers"][1].update(id="zoomly"), "courier ids must be unique"),
        (lambda d: d["couriers"][2].update(colour="red"), "couriers.2.colour: Extra inputs"),
        (lambda d: d["couriers"][2].pop("priority_rank"), "couriers.2.priority_rank: Field required"),
        (lambda d: d["vehicles"].pop("van"), "no entry for ['van']"),
        (lambda d: d["regions"][0].update(min_km=9.0), "regions.0"),
        (lambda d: d["couriers"][0].update(id="Zoomly!"), "couriers.0.id"),
    ],
)  # fmt: skip
def test_loader_errors_name_the_field(change: Any, needle: str) -> None:
    doc = raw()
    change(doc)
    with pytest.raises(MarketplaceError) as err:
        parse_marketplace(doc, "test.toml")
    assert needle in str(err.value) and str(err.value).startswith("test.toml: ")


def test_loader_refuses_bad_toml() -> None:
    with pytest.raises(MarketplaceError, match="not TOML"):
        parse_marketplace("couriers = [", "x.toml")
