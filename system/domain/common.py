"""Value types shared by the domain modules: money, positions, vehicles, parcel sizes, distances.

Example:
    >>> round(road_km(LatLon(lat=51.5072, lon=-0.1276), LatLon(lat=51.5172, lon=-0.1276)), 2)
    1.45
    >>> fits("van", "XL"), fits("bike", "L")
    (True, False)
"""

from __future__ import annotations

import math
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

Vehicle = Literal["bike", "cargobike", "motorbike", "car", "van"]
ParcelSize = Literal["S", "M", "L", "XL"]
Dialect = Literal["uber", "doordash", "stuart"]
Channel = Literal["rest", "shopify", "epos"]

VEHICLES: Final[tuple[Vehicle, ...]] = ("bike", "cargobike", "motorbike", "car", "van")
SIZES: Final[tuple[ParcelSize, ...]] = ("S", "M", "L", "XL")

#: The largest parcel size each vehicle carries (docs/intake-api.md §2.2: S, M fit a bike; L needs a
#: cargobike or car; XL a van). The marketplace file may restate it; this is the contract's default.
VEHICLE_MAX_SIZE: Final[dict[Vehicle, ParcelSize]] = {
    "bike": "M",
    "cargobike": "L",
    "motorbike": "M",
    "car": "L",
    "van": "XL",
}

#: Road distance over straight-line distance. London's street grid makes ~1.3 typical; the couriers
#: price on the same estimate, so using it keeps our distance rule consistent with their quotes.
DETOUR_FACTOR: Final = 1.3
EARTH_RADIUS_KM: Final = 6371.0088

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
MinorUnits = Annotated[int, Field(ge=0)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0)]


class Frozen(BaseModel):
    """Base of the domain's value objects: immutable, unknown keys are errors (a typo is not a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Money(Frozen):
    """An amount in integer minor units with its ISO-4217 currency (never floats for money).

    Example:
        >>> Money(amount_minor=2247, currency="GBP").amount_minor
        2247
    """

    amount_minor: MinorUnits
    currency: Currency


class LatLon(Frozen):
    """A WGS84 position in decimal degrees."""

    lat: Latitude
    lon: Longitude


def size_rank(size: ParcelSize) -> int:
    """0 for S … 3 for XL, so sizes compare.

    Example:
        >>> size_rank("S") < size_rank("XL")
        True
    """
    return SIZES.index(size)


def fits(vehicle: Vehicle, size: ParcelSize, max_size: dict[Vehicle, ParcelSize] | None = None) -> bool:
    """Whether ``vehicle`` carries a parcel of ``size`` (by ``max_size``, default the contract's table)."""
    table = VEHICLE_MAX_SIZE if max_size is None else max_size
    return size_rank(size) <= size_rank(table[vehicle])


def haversine_km(a: LatLon, b: LatLon) -> float:
    """Great-circle distance between two points, in km."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def road_km(a: LatLon, b: LatLon) -> float:
    """Estimated road distance in km (straight line × :data:`DETOUR_FACTOR`)."""
    return haversine_km(a, b) * DETOUR_FACTOR


def bearing_deg(a: LatLon, b: LatLon) -> float:
    """Initial compass bearing from ``a`` to ``b`` in degrees, 0 = north, 90 = east, in [0, 360).

    Example:
        >>> round(bearing_deg(LatLon(lat=51.5, lon=-0.1), LatLon(lat=51.6, lon=-0.1)))
        0
    """
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dl = math.radians(b.lon - a.lon)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0
