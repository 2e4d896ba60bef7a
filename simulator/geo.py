"""A London-sized city: points, distances in km, postcodes and street addresses.

The city is a disc (default radius 20 km) centred on Charing Cross. Postcodes come from the nearest of a
table of real London postcode districts (approximate centroids), so that a platform which groups by
district sees a plausible spread; streets and house numbers are made up.

Example:
    >>> round(haversine_km(Point(51.5072, -0.1276), Point(51.5072, -0.1276)), 3)
    0.0
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088
#: Road distance over straight-line distance; London's street grid makes ~1.3 typical.
DETOUR_FACTOR = 1.3


@dataclass(frozen=True, slots=True)
class Point:
    """A WGS84 position in decimal degrees."""

    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Address:
    """A postal address with its position; ``lines`` are the street lines (1 or 2)."""

    lines: tuple[str, ...]
    city: str
    postcode: str
    point: Point


CENTRE = Point(51.5072, -0.1276)

# (district, lat, lon): approximate centroids, good enough for a plausible spread.
DISTRICTS: tuple[tuple[str, float, float], ...] = (
    ("EC1A", 51.5200, -0.0977), ("EC2A", 51.5240, -0.0810), ("WC1A", 51.5180, -0.1250),
    ("WC2N", 51.5080, -0.1250), ("W1D", 51.5130, -0.1330), ("SW1A", 51.5020, -0.1390),
    ("SE1", 51.4980, -0.0900), ("E1", 51.5170, -0.0600), ("E2", 51.5300, -0.0600),
    ("E3", 51.5280, -0.0250), ("E14", 51.5050, -0.0180), ("E15", 51.5400, 0.0000),
    ("E17", 51.5850, -0.0200), ("N1", 51.5380, -0.0980), ("N4", 51.5700, -0.1050),
    ("N7", 51.5530, -0.1170), ("N16", 51.5620, -0.0750), ("N22", 51.6000, -0.1100),
    ("NW1", 51.5350, -0.1430), ("NW3", 51.5530, -0.1750), ("NW6", 51.5430, -0.1980),
    ("NW10", 51.5400, -0.2450), ("W2", 51.5150, -0.1800), ("W6", 51.4930, -0.2280),
    ("W11", 51.5130, -0.2050), ("W12", 51.5080, -0.2350), ("W5", 51.5120, -0.3050),
    ("SW3", 51.4900, -0.1680), ("SW6", 51.4760, -0.2000), ("SW9", 51.4670, -0.1150),
    ("SW11", 51.4650, -0.1650), ("SW18", 51.4520, -0.1950), ("SW19", 51.4210, -0.2070),
    ("SE5", 51.4740, -0.0900), ("SE10", 51.4780, -0.0050), ("SE15", 51.4700, -0.0650),
    ("SE22", 51.4530, -0.0710), ("SE18", 51.4880, 0.0700), ("E6", 51.5300, 0.0550),
    ("N17", 51.5970, -0.0700), ("HA0", 51.5520, -0.2970), ("CR0", 51.3750, -0.0980),
    ("BR1", 51.4080, 0.0180), ("IG1", 51.5590, 0.0750), ("TW9", 51.4650, -0.3000),
    ("KT1", 51.4100, -0.3000), ("UB1", 51.5100, -0.3750), ("EN1", 51.6520, -0.0800),
)  # fmt: skip

STREETS = (
    "High Street", "Station Road", "Church Street", "Park Road", "Victoria Road", "Green Lane",
    "Manor Road", "Church Road", "Park Avenue", "Queens Road", "The Avenue", "Kings Road",
    "Grove Road", "Albert Road", "Mill Lane", "Richmond Road", "York Road", "Springfield Road",
    "Windsor Road", "Highfield Road", "Cedar Road", "Elm Grove", "Market Street", "Canal Walk",
)  # fmt: skip
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward code of UK postcodes

# One degree of latitude in km, and of longitude at London's latitude: a flat projection is accurate to
# well under 1% over a 40 km city, and much cheaper than spherical trigonometry per order.
_KM_PER_DEG_LAT = math.pi * EARTH_RADIUS_KM / 180.0
_KM_PER_DEG_LON = _KM_PER_DEG_LAT * math.cos(math.radians(CENTRE.lat))


def haversine_km(a: Point, b: Point) -> float:
    """Great-circle distance between two points, in km."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def road_km(a: Point, b: Point) -> float:
    """Road distance estimate (straight line × :data:`DETOUR_FACTOR`), rounded to metres."""
    return round(haversine_km(a, b) * DETOUR_FACTOR, 3)


def offset(p: Point, east_km: float, north_km: float) -> Point:
    """The point ``east_km`` east and ``north_km`` north of ``p`` (flat approximation)."""
    return Point(round(p.lat + north_km / _KM_PER_DEG_LAT, 6), round(p.lon + east_km / _KM_PER_DEG_LON, 6))


def interpolate(a: Point, b: Point, f: float) -> Point:
    """The point a fraction ``f`` (0..1) of the way from ``a`` to ``b``."""
    return Point(round(a.lat + (b.lat - a.lat) * f, 6), round(a.lon + (b.lon - a.lon) * f, 6))


class City:
    """The simulated city: draws positions and addresses.

    Example:
        >>> city = City(radius_km=20.0)
        >>> addr = city.address(random.Random(1), city.random_point(random.Random(1)))
        >>> addr.city
        'London'
    """

    def __init__(self, radius_km: float = 20.0, centre: Point = CENTRE) -> None:
        self.radius_km = radius_km
        self.centre = centre

    def random_point(self, rng: random.Random) -> Point:
        """A point uniformly distributed over the city's disc."""
        r = self.radius_km * math.sqrt(rng.random())
        theta = rng.random() * 2 * math.pi
        return offset(self.centre, r * math.cos(theta), r * math.sin(theta))

    def point_near(self, rng: random.Random, origin: Point, median_km: float, max_km: float) -> Point:
        """A point around ``origin`` at a log-normal distance (median ``median_km``, capped), kept in town."""
        d = min(max_km, rng.lognormvariate(math.log(median_km), 0.6))
        theta = rng.random() * 2 * math.pi
        p = offset(origin, d * math.cos(theta), d * math.sin(theta))
        if haversine_km(p, self.centre) > self.radius_km:
            # Reflect towards the centre rather than redraw: keeps one draw per order (determinism, speed).
            p = offset(origin, -d * math.cos(theta), -d * math.sin(theta))
        return p

    @staticmethod
    def district(p: Point) -> str:
        """The postcode district whose centroid is nearest to ``p``."""
        best, best_d = DISTRICTS[0][0], math.inf
        for name, lat, lon in DISTRICTS:
            d = ((lat - p.lat) * _KM_PER_DEG_LAT) ** 2 + ((lon - p.lon) * _KM_PER_DEG_LON) ** 2
            if d < best_d:
                best, best_d = name, d
        return best

    def address(self, rng: random.Random, p: Point, flat: bool = False) -> Address:
        """A made-up street address at ``p`` with a plausible postcode for its district."""
        number = rng.randint(1, 240)
        street = STREETS[rng.randrange(len(STREETS))]
        inward = f"{rng.randint(1, 9)}{rng.choice(_INWARD_LETTERS)}{rng.choice(_INWARD_LETTERS)}"
        lines: tuple[str, ...] = (f"{number} {street}",)
        if flat:
            lines = (f"Flat {rng.randint(1, 40)}", lines[0])
        return Address(lines=lines, city="London", postcode=f"{self.district(p)} {inward}", point=p)
