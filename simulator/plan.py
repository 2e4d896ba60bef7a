"""The plan of a run, computed offline: the orders and the courier answers a seed produces, and its digest.

The digest proves determinism: the same (scenario, seed, duration) gives the same orders (content and
arrival times) and the same courier answers (every courier's quote, the bookings tried in the reference
selection order, the driver's timeline), hence the same SHA-256. Nothing here touches the network.

The reference selection (suitable quotes within the retailer's rules; the priority fleet first, then the
backups cheapest first; on a rejected booking the next one) is what the platform is expected to do; the
audit may compare against it.

The plan plays one quote round per order and one booking attempt per courier, so its quote ids and job
ids are the first ones (serial 1) a live run issues too. Fresh quotes after an expired one (``…-2``) and
second jobs for one order depend on when the platform asks again, which no offline plan can know: they
are deterministic in a run given the platform's requests, and absent here.

Example:
    >>> from simulator.config import Scenario
    >>> s = Scenario.model_validate({"arrivals": {"rate": 5.0}})
    >>> plan_digest(s, seed=3, duration_s=2.0).digest == plan_digest(s, seed=3, duration_s=2.0).digest
    True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.couriers import BookingAnswer, CourierModel, Quote, QuoteDeclined, QuoteRequest, Timeline
from simulator.orders import OrderGenerator, OrderSpec
from simulator.world import Retailer

#: Driver pings are every ~20 s of real time; in simulated seconds that is 20 × compression.
PING_EVERY_WALL_S = 20.0


@dataclass(frozen=True, slots=True)
class CourierPlay:
    """The courier side of one order: every answer, the booking attempts and the timeline."""

    quotes: tuple[Quote | QuoteDeclined | None, ...]
    bookings: tuple[BookingAnswer | None, ...]
    timeline: Timeline | None


def suitable(q: Quote, retailer: Retailer, order: OrderSpec) -> bool:
    """Does ``q`` satisfy the retailer's marketplace rules for ``order``?"""
    rules = retailer.rules
    return (
        q.vehicle in rules.allowed_vehicles
        and q.price_minor <= rules.max_price_minor
        and order.distance_km <= rules.max_distance_km
    )


def reference_selection(quotes: list[Quote], retailer: Retailer, order: OrderSpec) -> list[Quote]:
    """The booking order the platform should try: suitable quotes of the priority fleet first (in fleet
    order for ``priority`` retailers, cheapest first for ``cheapest`` ones), then the backups, cheapest first."""
    prio = retailer.rules.priority_fleet
    by_fleet_order = retailer.rules.selection == "priority"

    def key(q: Quote) -> tuple[int, int, int, str]:
        in_fleet = q.courier in prio
        rank = prio.index(q.courier) if in_fleet and by_fleet_order else 0
        return (0 if in_fleet else 1, rank, q.price_minor, q.courier)

    return sorted((q for q in quotes if suitable(q, retailer, order)), key=key)


def play_couriers(
    models: list[CourierModel], clock: SimClock, retailer: Retailer, o: OrderSpec
) -> CourierPlay:
    """Ask every courier model about order ``o`` as the platform would (pure)."""
    req = QuoteRequest(o.ref, o.pickup.point, o.dropoff.point, o.size, o.weight_g, o.sim_at)
    hour = clock.hour_of_day(o.at)
    answers = tuple(m.quote(req, o.at, hour) for m in models)
    by_name = {m.cfg.name: m for m in models}
    bookings: list[BookingAnswer | None] = []
    timeline = None
    for q in reference_selection([a for a in answers if isinstance(a, Quote)], retailer, o):
        b = by_name[q.courier].book(o.ref, o.at, active_jobs=0)
        bookings.append(b)
        if b is not None and b.accepted and b.driver_id is not None:
            ping = PING_EVERY_WALL_S * clock.compression
            timeline = by_name[q.courier].timeline(
                o.ref, o.pickup.point, o.dropoff.point, q.vehicle, b.driver_id, ping
            )
            break
    return CourierPlay(answers, tuple(bookings), timeline)


@dataclass(frozen=True, slots=True)
class PlanDigest:
    """Digests of a plan: the orders alone, the courier answers alone, and both."""

    orders: int
    orders_digest: str
    couriers_digest: str
    digest: str
    delivered: int
    failed: int
    returned: int
    unbooked: int


def plan_digest(scenario: Scenario, seed: int, duration_s: float, couriers: bool = True) -> PlanDigest:
    """Generate the plan of ``duration_s`` seconds and hash it (``orders_digest`` matches a run's)."""
    gen = OrderGenerator(scenario, seed)
    retailers = {r.id: r for r in gen.retailers}
    models = [CourierModel(seed, c, scenario.outages) for c in scenario.couriers]
    clock = SimClock.from_config(scenario.clock, epoch=0.0)
    h_orders, h_couriers = hashlib.sha256(), hashlib.sha256()
    n = delivered = failed = returned = unbooked = 0
    for o in gen.until(duration_s):
        n += 1
        h_orders.update(repr(o.canonical()).encode())
        if not couriers:
            continue
        play = play_couriers(models, clock, retailers[o.retailer_id], o)
        h_couriers.update(repr(play).encode())
        if play.timeline is None:
            unbooked += 1
        elif play.timeline.outcome == "delivered":
            delivered += 1
        elif play.timeline.outcome == "failed":
            failed += 1
        else:
            returned += 1
    od, cd = h_orders.hexdigest(), h_couriers.hexdigest()
    both = hashlib.sha256(f"{od}:{cd}".encode()).hexdigest()
    return PlanDigest(n, od, cd, both, delivered, failed, returned, unbooked)
