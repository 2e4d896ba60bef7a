"""The courier marketplace: regions of the city, vehicle classes, courier companies, and who may serve an order.

The default registry is package data (``default.toml`` beside this module: 36 couriers over five London
regions); scenarios may load another file with :func:`parse_marketplace`. Every error names the source and
the field (``default.toml: couriers.3.dialect: Input should be 'uber', 'doordash' or 'stuart'``).

A package rather than a module so that ``default.toml`` ships in the wheel (pyproject's package data
globs ``*.toml`` per package directory).

Example:
    >>> m = load_marketplace()
    >>> len(m.couriers) >= 30, sorted({r for c in m.couriers for r in c.regions})
    (True, ['central', 'east', 'north', 'south', 'west'])
    >>> m.courier("zoomly").dialect, m.courier("zoomly").priority_fleet
    ('uber', True)
    >>> m.region_of(LatLon(lat=51.5072, lon=-0.1276)), m.region_of(LatLon(lat=51.60, lon=-0.13))
    ('central', 'north')
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Annotated, Any, Final, Literal

from pydantic import Field, ValidationError, model_validator

from system.domain.common import (
    VEHICLES,
    Dialect,
    Frozen,
    LatLon,
    ParcelSize,
    Vehicle,
    bearing_deg,
    haversine_km,
    road_km,
    size_rank,
)
from system.domain.intake import DeliveryRequest

CourierId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{1,30}$")]
DEFAULT_FILE: Final = "default.toml"


class Region(Frozen):
    """A sector of a ring around the city centre: ``min_km ≤ d < max_km`` and bearing in
    ``[bearing_from, bearing_to)`` (degrees clockwise from north; wraps through 0 when from > to)."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    min_km: float = Field(ge=0)
    max_km: float = Field(gt=0)
    bearing_from: float = Field(ge=0, le=360)
    bearing_to: float = Field(ge=0, le=360)

    def contains(self, distance_km: float, bearing: float) -> bool:
        """Whether a point at ``distance_km`` and ``bearing`` from the centre lies in this region."""
        if not self.min_km <= distance_km < self.max_km:
            return False
        if self.bearing_from <= self.bearing_to:
            return self.bearing_from <= bearing < self.bearing_to or (
                self.bearing_to == 360.0 and bearing == 360.0
            )
        return bearing >= self.bearing_from or bearing < self.bearing_to

    @model_validator(mode="after")
    def _ring(self) -> Region:
        if self.min_km >= self.max_km:
            raise ValueError(f"min_km {self.min_km} must be below max_km {self.max_km}")
        return self


class VehicleClass(Frozen):
    """What a vehicle carries."""

    max_size: ParcelSize
    max_weight_g: int = Field(gt=0)

    def carries(self, size: ParcelSize, weight_g: int) -> bool:
        """Whether a parcel of ``size`` and ``weight_g`` fits."""
        return size_rank(size) <= size_rank(self.max_size) and weight_g <= self.max_weight_g


class City(Frozen):
    """The city the regions are drawn around."""

    name: str
    centre: LatLon


class Courier(Frozen):
    """A courier company: how it talks (``dialect``), where it works, what it drives.

    ``priority_fleet``: in the default priority fleet (used for a retailer whose rules name none);
    ``priority_rank``: 1 = most preferred, the tie-break between equal quotes.
    """

    id: CourierId
    name: str
    dialect: Dialect
    regions: Annotated[tuple[str, ...], Field(min_length=1)]
    vehicles: Annotated[tuple[Vehicle, ...], Field(min_length=1)]
    priority_fleet: bool = False
    priority_rank: int = Field(ge=1)
    max_distance_km: float = Field(gt=0)


class Marketplace(Frozen):
    """The whole registry (one TOML file)."""

    version: Literal[1]
    city: City
    regions: Annotated[tuple[Region, ...], Field(min_length=1)]
    vehicles: dict[Vehicle, VehicleClass]
    couriers: Annotated[tuple[Courier, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _references(self) -> Marketplace:
        problems: list[str] = []
        for what, values in (
            ("region id", [r.id for r in self.regions]),
            ("courier id", [c.id for c in self.couriers]),
        ):
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                problems.append(f"{what}s must be unique, repeated: {dup}")
        missing_v = [v for v in VEHICLES if v not in self.vehicles]
        if missing_v:
            problems.append(f"vehicles: no entry for {missing_v}")
        regions = {r.id for r in self.regions}
        for k, c in enumerate(self.couriers):
            unknown = [r for r in c.regions if r not in regions]
            if unknown:
                problems.append(f"couriers.{k}.regions: courier {c.id!r} names unknown region(s) {unknown}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def courier(self, courier_id: str) -> Courier:
        """The courier ``courier_id`` (KeyError naming it if unknown)."""
        for c in self.couriers:
            if c.id == courier_id:
                return c
        raise KeyError(f"unknown courier {courier_id!r}")

    def region_of(self, point: LatLon) -> str | None:
        """The region containing ``point`` (None: outside the served area)."""
        d = haversine_km(self.city.centre, point)
        b = 0.0 if d == 0 else bearing_deg(self.city.centre, point)
        return next((r.id for r in self.regions if r.contains(d, b)), None)

    def can_carry(self, courier: Courier, size: ParcelSize, weight_g: int) -> list[Vehicle]:
        """The courier's vehicles that carry the parcel, smallest first (the order of :data:`VEHICLES`)."""
        return [v for v in VEHICLES if v in courier.vehicles and self.vehicles[v].carries(size, weight_g)]


class MarketplaceError(ValueError):
    """The marketplace file cannot be used; the message names the source and each bad field."""


def parse_marketplace(raw: str | bytes | Mapping[str, Any], source: str = "marketplace.toml") -> Marketplace:
    """Validate a marketplace (TOML text or a loaded mapping)."""
    try:
        doc = (
            tomllib.loads(raw.decode() if isinstance(raw, bytes) else raw)
            if isinstance(raw, str | bytes)
            else raw
        )
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MarketplaceError(f"{source}: not TOML: {exc}") from None
    try:
        return Marketplace.model_validate(doc)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise MarketplaceError(f"{source}: " + "; ".join(lines)) from None


def load_marketplace() -> Marketplace:
    """The default marketplace (package data ``default.toml``): the only file this package reads."""
    text = resources.files(__name__).joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
    return parse_marketplace(text, DEFAULT_FILE)


def eligible(
    market: Marketplace,
    pickup: LatLon,
    dropoff: LatLon,
    size: ParcelSize,
    weight_g: int,
    allowed_vehicles: Iterable[Vehicle] | None = None,
) -> list[Courier]:
    """The couriers worth asking for a quote, in ``priority_rank`` order (then id).

    A courier is eligible when it covers the regions of both pickup and dropoff, one of its vehicles
    (within ``allowed_vehicles``, the retailer's rule, when given) carries the parcel, and the road
    distance is within its ``max_distance_km``. Asking only these keeps the scatter-gather small and its
    deadline short; the retailer's price and distance limits are applied to the quotes afterwards.

    Example:
        >>> m = load_marketplace()
        >>> [c.id for c in eligible(m, LatLon(lat=51.60, lon=-0.13), LatLon(lat=51.62, lon=-0.12), "XL", 9000)]
        ['vanguard', 'finchley-fleet', 'barnet-vans']
    """
    allowed = set(VEHICLES if allowed_vehicles is None else allowed_vehicles)
    regions = {market.region_of(pickup), market.region_of(dropoff)}
    if None in regions:
        return []
    km = road_km(pickup, dropoff)
    out = [
        c
        for c in market.couriers
        if regions <= set(c.regions)
        and km <= c.max_distance_km
        and any(v in allowed for v in market.can_carry(c, size, weight_g))
    ]
    return sorted(out, key=lambda c: (c.priority_rank, c.id))


def eligible_for(
    market: Marketplace, request: DeliveryRequest, allowed_vehicles: Iterable[Vehicle] | None = None
) -> list[Courier]:
    """:func:`eligible` for a normalised order (its pickup, dropoff and parcel)."""
    return eligible(
        market,
        request.pickup.position,
        request.dropoff.position,
        request.parcel.size,
        request.parcel.weight_g,
        allowed_vehicles,
    )
