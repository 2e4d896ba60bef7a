"""Orders: what a retailer asks the platform to deliver, generated from the seed.

:class:`OrderGenerator` yields :class:`OrderSpec` in arrival order. Arrival times and order contents come
from separate seeded streams, so order *n* has the same content whatever the rate (``--rate``) is.
The order reference ``s<seed>-<n>`` is the simulator's own id, sent to the platform as the retailer's
reference on every channel, and the key of everything in the ledger.

Example:
    >>> from simulator.config import Scenario
    >>> s = Scenario.model_validate({"arrivals": {"rate": 10.0}})
    >>> gen = OrderGenerator(s, seed=7)
    >>> first = next(iter(gen))
    >>> first.ref
    's7-0000001'
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from simulator.arrivals import ArrivalProcess
from simulator.config import Channel, ParcelSize, Scenario
from simulator.geo import Address, City, road_km
from simulator.rng import rng_for
from simulator.world import Retailer, Store, build_retailers

_FIRST = (
    "Amara",
    "Ben",
    "Chloe",
    "Dev",
    "Ella",
    "Femi",
    "Grace",
    "Hassan",
    "Isla",
    "Jack",
    "Kofi",
    "Leah",
    "Mo",
    "Nadia",
    "Oscar",
    "Priya",
    "Rory",
    "Sofia",
    "Tom",
    "Yusuf",
    "Zara",
    "Wei",
    "Lucas",
    "Maya",
)
_LAST = ("Smith", "Jones", "Patel", "Williams", "Brown", "Khan", "Taylor", "Davies", "Okafor", "Evans",
         "Nguyen", "Wilson", "Ali", "Murphy", "Green", "Hughes", "Clarke", "Begum", "Walker", "Lewis")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Recipient:
    """The customer who receives the parcel (phone numbers are in Ofcom's drama range 07700 900xxx)."""

    name: str
    phone: str
    email: str


@dataclass(frozen=True, slots=True)
class LineItem:
    """One line of the basket."""

    sku: str
    title: str
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """One order as the outside world sees it. Times: ``at`` in run seconds, ``*_window`` in simulated
    seconds since the start of the run (the channel encoders turn them into ISO-8601 instants)."""

    ref: str
    seq: int
    at: float
    sim_at: float
    retailer_id: str
    channel: Channel
    store_id: str
    pickup: Address
    dropoff: Address
    recipient: Recipient
    weight_g: int
    size: ParcelSize
    items: tuple[LineItem, ...]
    basket_minor: int
    currency: str
    pickup_window: tuple[float, float]
    dropoff_window: tuple[float, float]
    distance_km: float
    cancel_after_s: float | None  # simulated seconds after the order, None: the customer keeps it
    duplicate: bool  # the webhook provider will deliver it twice
    update: bool  # an order.updated follows (ePOS)
    out_of_order: bool  # ... and arrives before the order.created

    def canonical(self) -> tuple[object, ...]:
        """A stable tuple of everything in the order, for the determinism digest."""
        return (
            self.ref, round(self.at, 6), self.retailer_id, self.channel, self.store_id, self.dropoff.lines,
            self.dropoff.postcode, self.dropoff.point.lat, self.dropoff.point.lon, self.recipient.name,
            self.recipient.phone, self.weight_g, self.size, tuple((i.sku, i.quantity) for i in self.items),
            self.basket_minor, self.pickup_window, self.dropoff_window, self.cancel_after_s, self.duplicate,
            self.update, self.out_of_order,
        )  # fmt: skip


class OrderGenerator:
    """Generates the orders of a scenario under a seed (an endless, deterministic stream)."""

    def __init__(self, scenario: Scenario, seed: int, retailers: list[Retailer] | None = None) -> None:
        self.scenario = scenario
        self.seed = seed
        self.retailers = retailers if retailers is not None else build_retailers(seed, scenario)
        self.city = City(scenario.world.city_radius_km)
        self.arrivals = ArrivalProcess(scenario, seed)
        self._regular = [r for r in self.retailers if not r.id.startswith("n")]
        self._cum = list(accumulate(r.weight for r in self._regular))
        self._new_clients = {
            s.new_client: r for s, r in zip(
                [s for s in scenario.arrivals.steps if s.new_client],
                [r for r in self.retailers if r.id.startswith("n")], strict=True,
            )
        }  # fmt: skip

    def _pick_retailer(self, u: float, t: float) -> Retailer:
        step = self.arrivals.step_at(t)
        if step is not None and step.new_client and step.factor > 1.0:
            extra = 1.0 - 1.0 / step.factor
            if u < extra:
                return self._new_clients[step.new_client]
            u = (u - extra) / (1.0 - extra)  # reuse the draw: one random number per choice
        # Bisect over cumulative weights (no random.choices: it allocates a list per call).
        x, lo, hi = u * self._cum[-1], 0, len(self._cum) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self._cum[mid] <= x:
                lo = mid + 1
            else:
                hi = mid
        return self._regular[lo]

    def __iter__(self) -> Iterator[OrderSpec]:
        rng = rng_for(self.seed, "orders")
        rand, randint = rng.random, rng.randint
        sc, city, seed = self.scenario, self.city, self.seed
        compression = sc.clock.compression
        wh, cu = sc.webhooks, sc.customers
        for n, t in enumerate(self.arrivals.times(), start=1):
            r = self._pick_retailer(rand(), t)
            store: Store = r.stores[int(rand() * len(r.stores))]
            p = r.profile
            # Within the retailer's delivery radius (road km ≈ 1.3 × straight line), so that unbookable
            # orders come from courier answers and prices, not from the generator.
            drop_pt = city.point_near(rng, store.address.point, 3.0, r.rules.max_distance_km / 1.3 * 0.98)
            dropoff = city.address(rng, drop_pt, flat=rand() < 0.4)
            first, last = _FIRST[int(rand() * len(_FIRST))], _LAST[int(rand() * len(_LAST))]
            recipient = Recipient(
                f"{first} {last}",
                f"+447700900{randint(0, 999):03d}",
                f"{first}.{last}.{n}@example.com".lower(),
            )
            items = []
            for _ in range(randint(1, 4)):
                k = int(rand() * len(p.items))
                items.append(LineItem(f"{r.id}-{k:03d}", p.items[k][0], randint(1, 3), p.items[k][1]))
            basket = sum(i.quantity * i.unit_price_minor for i in items)
            u, size = rand(), p.sizes[-1][0]
            for s, share in p.sizes:
                if u < share:
                    size = s
                    break
                u -= share
            sim_at = t * compression
            ready = sim_at + 60.0 * randint(*p.prep_min)
            pickup_window = (ready, ready + 1800.0)
            drop_start = ready + 600.0
            dropoff_window = (drop_start, drop_start + 60.0 * p.dropoff_window_min)
            cancel = None
            if rand() < cu.cancel_share:
                cancel = round(
                    cu.cancel_after_min_s + rand() * (cu.cancel_after_max_s - cu.cancel_after_min_s), 3
                )
            webhook = r.channel != "rest"
            duplicate = webhook and rand() < wh.duplicate_share
            update = r.channel == "epos" and rand() < wh.update_share
            out_of_order = update and rand() < wh.out_of_order_share
            yield OrderSpec(
                ref=f"s{seed}-{n:07d}", seq=n, at=t, sim_at=sim_at, retailer_id=r.id, channel=r.channel,
                store_id=store.id, pickup=store.address, dropoff=dropoff, recipient=recipient,
                weight_g=randint(*p.weight_g), size=size, items=tuple(items), basket_minor=basket,
                currency=r.currency, pickup_window=pickup_window, dropoff_window=dropoff_window,
                distance_km=road_km(store.address.point, drop_pt), cancel_after_s=cancel,
                duplicate=duplicate, update=update, out_of_order=out_of_order,
            )  # fmt: skip

    def until(self, duration_s: float) -> Iterator[OrderSpec]:
        """The orders arriving before run time ``duration_s``."""
        for o in self:
            if o.at >= duration_s:
                return
            yield o


def expected_orders(scenario: Scenario, duration_s: float, seed: int = 0) -> float:
    """The expected number of orders in ``[0, duration_s)`` (numerical integral of the rate)."""
    proc = ArrivalProcess(scenario, seed)
    n = max(1, math.ceil(duration_s * 10))
    dt = duration_s / n
    return sum(proc.rate((i + 0.5) * dt) for i in range(n)) * dt
