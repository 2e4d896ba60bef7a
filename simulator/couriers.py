"""Courier companies and their drivers: a pure model, (seed, request) → answer / timeline.

Nothing here keeps state or reads a clock: every answer is a function of the seed, the courier's
configuration, the request and the run time it is asked at (for outages and surge). That is what makes
the courier side replayable (same seed → same quotes, same bookings, same driver routes) and lets a
transport adapter (AMQP, :mod:`simulator.courier_desk`) plug it onto the platform's queues later.

* Quote: price = (base + per-km[vehicle] × road km) × surge (lunch/dinner peaks of simulated time),
  rounded to 5 minor units; vehicle = the smallest of the courier's vehicles that fits the parcel; pickup
  ETA = driver approach; dropoff ETA = pickup + distance at vehicle speed; expiry 15 min; the answer comes
  after a log-normal latency. During an outage the courier does not answer at all. Quotes of one
  order are numbered (``serial``): a fresh quote after an earlier one expired gets its own id.
* Booking: accepted with probability ``acceptance`` if the courier is under ``capacity`` (the caller
  passes its active job count), else rejected with a reason.
* Timeline: the driver's journey in simulated seconds after the booking: assigned, location pings every
  ``ping_every_s`` along a straight-line route at vehicle speed, picked up, in transit, then delivered —
  or failed (customer absent), then maybe returned to the store. Each status is also given in the
  courier's dialect (Uber-, DoorDash- or Stuart-style).

Example:
    >>> from simulator.config import default_couriers
    >>> from simulator.geo import Point
    >>> c = CourierModel(seed=1, courier=default_couriers()[0])
    >>> req = QuoteRequest("s1-0000001", Point(51.52, -0.10), Point(51.50, -0.12), "S", 800, 0.0)
    >>> c.quote(req, run_s=0.0, hour=10.0) == c.quote(req, run_s=0.0, hour=10.0)
    True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from simulator.config import CourierConfig, OutageConfig, ParcelSize, Vehicle
from simulator.geo import Point, haversine_km, interpolate, offset
from simulator.rng import derive_seed, rng_for

Canonical = Literal[
    "courier_assigned", "picked_up", "in_transit", "delivered", "failed", "returned", "cancelled"
]  # fmt: skip

#: Canonical lifecycle state → each dialect's status name. The platform maps the other way.
DIALECTS: dict[str, dict[Canonical, str]] = {
    "uber": {"courier_assigned": "pickup", "picked_up": "pickup_complete", "in_transit": "dropoff",
             "delivered": "delivered", "failed": "dropoff_failed", "returned": "returned",
             "cancelled": "canceled"},
    "doordash": {"courier_assigned": "DASHER_CONFIRMED", "picked_up": "DASHER_PICKED_UP",
                 "in_transit": "DASHER_CONFIRMED_DROPOFF_ARRIVAL", "delivered": "DASHER_DROPPED_OFF",
                 "failed": "DELIVERY_ATTEMPT_FAILED", "returned": "DELIVERY_RETURNED",
                 "cancelled": "DELIVERY_CANCELLED"},
    "stuart": {"courier_assigned": "picking", "picked_up": "delivering", "in_transit": "almost_delivering",
               "delivered": "delivered", "failed": "failed", "returned": "returned",
               "cancelled": "cancelled"},
}  # fmt: skip
#: The status a dialect reports right after booking, before a driver is assigned.
DIALECT_BOOKED = {"uber": "pending", "doordash": "DELIVERY_CREATED", "stuart": "pending"}

#: Average speed in London traffic, km/h.
VEHICLE_SPEED_KMH: dict[Vehicle, float] = {"bike": 15.0, "cargobike": 13.0, "motorbike": 28.0, "car": 20.0,
                                           "van": 18.0}  # fmt: skip
#: The parcel sizes each vehicle carries.
VEHICLE_FITS: dict[Vehicle, frozenset[ParcelSize]] = {
    "bike": frozenset({"S", "M"}), "cargobike": frozenset({"S", "M", "L"}), "motorbike": frozenset({"S", "M"}),
    "car": frozenset({"S", "M", "L"}), "van": frozenset({"S", "M", "L", "XL"}),
}  # fmt: skip
VEHICLE_ORDER: tuple[Vehicle, ...] = ("bike", "cargobike", "motorbike", "car", "van")
QUOTE_TTL_S = 900.0
DETOUR = 1.3


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """What the platform asks a courier to price. ``sim_at``: simulated seconds of the request."""

    order_ref: str
    pickup: Point
    dropoff: Point
    size: ParcelSize
    weight_g: int
    sim_at: float


@dataclass(frozen=True, slots=True)
class Quote:
    """A courier's price offer. ETAs and expiry are simulated seconds after the request."""

    courier: str
    order_ref: str
    quote_id: str
    price_minor: int
    currency: str
    vehicle: Vehicle
    pickup_eta_s: float
    dropoff_eta_s: float
    expires_in_s: float
    latency_ms: float
    surge: float


@dataclass(frozen=True, slots=True)
class QuoteDeclined:
    """A courier's refusal to quote (no vehicle fits, too far)."""

    courier: str
    order_ref: str
    reason: str
    latency_ms: float


@dataclass(frozen=True, slots=True)
class BookingAnswer:
    """A courier's answer to a booking request."""

    courier: str
    order_ref: str
    accepted: bool
    reason: str | None
    job_id: str | None
    driver_id: str | None
    latency_ms: float


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One thing the driver does, ``sim_after_s`` simulated seconds after the booking.

    ``kind`` is ``status`` (with ``canonical`` and the dialect's ``status``) or ``ping`` (a location).
    """

    sim_after_s: float
    kind: Literal["status", "ping"]
    canonical: Canonical | None
    status: str | None
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Timeline:
    """A driver's whole journey for one booking, and how it ends."""

    driver_id: str
    vehicle: Vehicle
    outcome: Literal["delivered", "failed", "returned"]
    route_km: float
    events: tuple[TimelineEvent, ...]


class CourierModel:
    """One courier company under one seed: pure answers to quote and booking requests."""

    def __init__(self, seed: int, courier: CourierConfig, outages: list[OutageConfig] | None = None) -> None:
        self.seed = seed
        self.cfg = courier
        self.outages = [(o.at, o.at + o.duration) for o in outages or [] if o.courier == courier.name]

    def in_outage(self, run_s: float) -> bool:
        """True while the courier is down (it answers nothing)."""
        return any(a <= run_s < b for a, b in self.outages)

    def vehicle_for(self, size: ParcelSize) -> Vehicle | None:
        """The smallest of the courier's vehicles that carries ``size``."""
        for v in VEHICLE_ORDER:
            if v in self.cfg.vehicles and size in VEHICLE_FITS[v]:
                return v
        return None

    def _latency(self, rng: random.Random) -> float:
        # Log-normal around the configured median (sigma 0.5): a long tail like real partner APIs.
        return round(self.cfg.quote_latency_ms * rng.lognormvariate(0.0, 0.5), 1)

    def surge(self, hour: float) -> float:
        """Surge multiplier at simulated ``hour``: lunch 11:30-14:00 and dinner 18:00-21:00."""
        if 11.5 <= hour < 14.0 or 18.0 <= hour < 21.0:
            return self.cfg.surge_factor
        return 1.0

    def quote_id(self, order_ref: str, serial: int = 1) -> str:
        """The id of the ``serial``-th quote this courier issues for ``order_ref``.

        The first keeps the historical format (replays and digests of earlier runs stay comparable);
        a fresh quote issued after an earlier one expired is suffixed ``-2``, ``-3``, …
        """
        base = f"q-{self.cfg.name}-{derive_seed(self.seed, self.cfg.name, order_ref) % 10**12:012d}"
        return base if serial == 1 else f"{base}-{serial}"

    def job_id(self, order_ref: str, serial: int = 1) -> str:
        """The id of the ``serial``-th job this courier accepts for ``order_ref`` (first: historical format;
        a later booking of the same order, e.g. after the first job was released, is suffixed ``-2``, …),
        so a cancel naming an old job can never reach a newer one."""
        base = f"{self.cfg.name}-job-{derive_seed(self.seed, self.cfg.name, 'job', order_ref) % 10**10:010d}"
        return base if serial == 1 else f"{base}-{serial}"

    def quote(
        self, req: QuoteRequest, run_s: float, hour: float, serial: int = 1
    ) -> Quote | QuoteDeclined | None:
        """The courier's answer to ``req`` asked at run time ``run_s`` (None: no answer, an outage).

        ``serial`` numbers the quotes issued for this order (:meth:`quote_id`): a fresh quote is priced
        by the same rule at ``hour``, with its own latency and pickup ETA drawn from its own stream.
        """
        if self.in_outage(run_s):
            return None
        # The first quote keeps its historical stream (same answers as before fresh quotes existed).
        labels: tuple[str | int, ...] = (req.order_ref,) if serial == 1 else (req.order_ref, serial)
        rng = rng_for(self.seed, "courier", self.cfg.name, "quote", *labels)
        latency = self._latency(rng)
        vehicle = self.vehicle_for(req.size)
        if vehicle is None:
            return QuoteDeclined(self.cfg.name, req.order_ref, "no_vehicle_for_size", latency)
        km = haversine_km(req.pickup, req.dropoff) * DETOUR
        if km > 25.0:
            return QuoteDeclined(self.cfg.name, req.order_ref, "out_of_area", latency)
        surge = self.surge(hour)
        raw = (self.cfg.base_minor + self.cfg.per_km_minor[vehicle] * km) * surge
        price = int(5 * round(raw / 5))
        approach = 60.0 * rng.lognormvariate(math.log(7.0), 0.4)
        ride = 3600.0 * km / (VEHICLE_SPEED_KMH[vehicle] * self.cfg.speed_factor)
        return Quote(
            courier=self.cfg.name, order_ref=req.order_ref, quote_id=self.quote_id(req.order_ref, serial),
            price_minor=price, currency="GBP", vehicle=vehicle, pickup_eta_s=round(approach, 1),
            dropoff_eta_s=round(approach + 180.0 + ride, 1), expires_in_s=QUOTE_TTL_S, latency_ms=latency,
            surge=surge,
        )  # fmt: skip

    def book(self, order_ref: str, run_s: float, active_jobs: int, attempt: int = 1,
             job_serial: int = 1) -> BookingAnswer | None:  # fmt: skip
        """The answer to booking ``order_ref`` (None during an outage). ``active_jobs``: the courier's load;
        ``attempt``: the how-many-th booking request of this order this is (each draws its own answer);
        ``job_serial``: the how-many-th job an acceptance would start (its :meth:`job_id`)."""
        if self.in_outage(run_s):
            return None
        rng = rng_for(self.seed, "courier", self.cfg.name, "book", order_ref, attempt)
        latency = self._latency(rng)
        name = self.cfg.name
        if active_jobs >= self.cfg.capacity:
            return BookingAnswer(name, order_ref, False, "no_capacity", None, None, latency)
        if rng.random() >= self.cfg.acceptance:
            return BookingAnswer(name, order_ref, False, "no_driver_available", None, None, latency)
        job_id = self.job_id(order_ref, job_serial)
        driver = f"{name}-drv-{rng.randrange(1, max(2, self.cfg.capacity * 2)):05d}"
        return BookingAnswer(name, order_ref, True, None, job_id, driver, latency)

    def timeline(self, order_ref: str, pickup: Point, dropoff: Point, vehicle: Vehicle, driver_id: str,
                 ping_every_s: float = 20.0) -> Timeline:  # fmt: skip
        """The driver's journey, in simulated seconds after the booking (a pure function of its inputs)."""
        rng = rng_for(self.seed, "courier", self.cfg.name, "route", order_ref)
        names = DIALECTS[self.cfg.dialect]
        speed = VEHICLE_SPEED_KMH[vehicle] * self.cfg.speed_factor * rng.uniform(0.8, 1.2)  # km/h
        d0, th = rng.uniform(0.3, 3.0), rng.random() * 2 * math.pi
        start = offset(pickup, d0 * math.cos(th), d0 * math.sin(th))
        events: list[TimelineEvent] = []

        def status(t: float, c: Canonical, p: Point) -> None:
            events.append(TimelineEvent(round(t, 3), "status", c, names[c], p.lat, p.lon))

        def leg(t: float, a: Point, b: Point) -> tuple[float, float]:
            """Drive a → b from time t with pings; returns (arrival time, km)."""
            km = haversine_km(a, b) * DETOUR
            dur = 3600.0 * km / speed
            k = 1
            while k * ping_every_s < dur:
                p = interpolate(a, b, k * ping_every_s / dur)
                events.append(TimelineEvent(round(t + k * ping_every_s, 3), "ping", None, None, p.lat, p.lon))
                k += 1
            return t + dur, km

        t = rng.uniform(20.0, 120.0)  # dispatch delay until a driver accepts the job
        status(t, "courier_assigned", start)
        t, km1 = leg(t, start, pickup)
        t += rng.uniform(60.0, 420.0)  # waiting at the store
        status(t, "picked_up", pickup)
        t += 30.0
        status(t, "in_transit", pickup)
        t, km2 = leg(t, pickup, dropoff)
        route = km1 + km2
        if rng.random() >= self.cfg.fail_share:
            status(t + rng.uniform(30.0, 180.0), "delivered", dropoff)
            return Timeline(driver_id, vehicle, "delivered", round(route, 3), tuple(events))
        t += rng.uniform(120.0, 600.0)  # knocking, calling, waiting: customer absent
        status(t, "failed", dropoff)
        if rng.random() >= self.cfg.return_share:
            return Timeline(driver_id, vehicle, "failed", round(route, 3), tuple(events))
        t, km3 = leg(t, dropoff, pickup)
        status(t + 60.0, "returned", pickup)
        return Timeline(driver_id, vehicle, "returned", round(route + km3, 3), tuple(events))
