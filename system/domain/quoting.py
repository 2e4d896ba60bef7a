"""Quotes and courier selection: which answers are suitable, in which order to try them.

Quoting asks every eligible courier (scatter-gather with a deadline) and hands the answers to
:func:`rank_quotes`; dispatch books the first and, on a rejection or a timeout, asks :func:`next_option`.

Selection, per the retailer's :class:`~system.domain.retailers.RetailerRules` (docs/intake-api.md §1):

1. **Suitable only**: not expired at ``now``; in the order's currency; a vehicle the retailer allows
   and that carries the parcel size; the order's road distance within ``max_distance_km``; price within
   ``max_price_minor``; and, when the retailer sets ``high_value_basket_minor``, a basket above it needs a
   car or van (``high_value_vehicles``) or a priority-fleet courier.
2. **Priority fleet first**, ordered by ``selection``: ``cheapest`` (price) or ``priority`` (the order of
   ``priority_fleet``). A retailer whose rules name no fleet uses the marketplace's priority couriers.
3. **Then the backups, cheapest first** (whatever ``selection`` says: it orders the fleet only).
4. **Deterministic ties**: earlier dropoff ETA, then the marketplace's ``priority_rank``, then courier
   id, then quote id — two replicas ranking the same answers agree, so a redelivered message books the
   same courier.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
    >>> def q(courier, price, vehicle="bike"):
    ...     return Quote(courier=courier, quote_id=f"q-{courier}", price=Money(amount_minor=price, currency="GBP"),
    ...                  vehicle=vehicle, pickup_eta=t0, dropoff_eta=t0 + timedelta(minutes=30),
    ...                  expires_at=t0 + timedelta(minutes=15))
    >>> rules = RetailerRules(priority_fleet=("zoomly",), max_price_minor=2500)
    >>> facts = OrderFacts(distance_km=4.0, size="S", basket=Money(amount_minor=2247, currency="GBP"))
    >>> [x.courier for x in rank_quotes([q("dashly", 700), q("zoomly", 900), q("pedalo", 650)], rules, t0, facts)]
    ['zoomly', 'pedalo', 'dashly']
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from system.domain.common import Frozen, Money, ParcelSize, Vehicle, fits
from system.domain.dialects import CourierMessageInvalid
from system.domain.intake import DeliveryRequest
from system.domain.retailers import RetailerRules

__all__ = [
    "OrderFacts",
    "Quote",
    "QuoteDeclined",
    "RetailerRules",
    "Unsuitable",
    "assess",
    "next_option",
    "parse_quote_answer",
    "rank_quotes",
]


class Quote(Frozen):
    """A courier's offer: price, ETAs, vehicle, and until when it can be booked."""

    courier: str
    quote_id: str
    price: Money
    vehicle: Vehicle
    pickup_eta: AwareDatetime
    dropoff_eta: AwareDatetime
    expires_at: AwareDatetime
    delivery_id: str | None = None
    order_reference: str | None = None

    def expired(self, now: datetime) -> bool:
        """Whether it can no longer be booked at ``now`` (expiry instant itself counts as expired).

        ``now`` must be on the courier's clock: in a compressed drill ``expires_at`` is a *simulated*
        instant running ahead of the wall clock, so a wall-clock ``now`` never expires a quote early; the
        courier's own ``quote_expired`` rejection then sends dispatch to the next option.
        """
        return self.expires_at <= now


class QuoteDeclined(Frozen):
    """A courier's refusal to quote (``no_vehicle_for_size``, ``out_of_area``, …)."""

    courier: str
    reason: str
    delivery_id: str | None = None
    order_reference: str | None = None


class _QuoteMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["quote", "quote_declined"]
    courier: str
    delivery_id: str | None = None
    order_reference: str | None = None
    quote_id: str | None = None
    price: Money | None = None
    vehicle: Vehicle | None = None
    pickup_eta: AwareDatetime | None = None
    dropoff_eta: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    reason: str | None = None


def parse_quote_answer(doc: Mapping[str, Any] | bytes | str) -> Quote | QuoteDeclined:
    """A courier's ``quote`` / ``quote_declined`` message (docs/intake-api.md §3.2) as a domain object.

    Raises :class:`~system.domain.dialects.CourierMessageInvalid` naming the bad fields.

    Example:
        >>> parse_quote_answer({"type": "quote_declined", "courier": "pedalo", "reason": "out_of_area"}).reason
        'out_of_area'
    """
    try:
        m = (
            _QuoteMessage.model_validate_json(doc)
            if isinstance(doc, bytes | str)
            else _QuoteMessage.model_validate(doc)
        )
    except ValidationError as exc:
        raise CourierMessageInvalid(
            "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in exc.errors())
        ) from None
    if m.type == "quote_declined":
        return QuoteDeclined(
            courier=m.courier, reason=m.reason or "unspecified", delivery_id=m.delivery_id,
            order_reference=m.order_reference,
        )  # fmt: skip
    missing = [
        f
        for f in ("quote_id", "price", "vehicle", "pickup_eta", "dropoff_eta", "expires_at")
        if getattr(m, f) is None
    ]
    if missing:
        raise CourierMessageInvalid(f"quote from {m.courier!r} lacks {', '.join(missing)}")
    return Quote.model_validate(m.model_dump(exclude={"type", "reason"}))


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What the rules need to know about the order (built from a :class:`DeliveryRequest` by :meth:`of`)."""

    distance_km: float
    size: ParcelSize
    basket: Money

    @classmethod
    def of(cls, request: DeliveryRequest) -> OrderFacts:
        """The facts of a normalised order."""
        return cls(request.distance_km, request.parcel.size, request.basket)


class Unsuitable(StrEnum):
    """Why a quote is not a candidate (logged by quoting; the counts explain a ``no_courier_available``)."""

    EXPIRED = "expired"
    CURRENCY = "currency"
    VEHICLE_NOT_ALLOWED = "vehicle_not_allowed"
    VEHICLE_TOO_SMALL = "vehicle_too_small"
    TOO_FAR = "too_far"
    TOO_EXPENSIVE = "too_expensive"
    HIGH_VALUE = "high_value_needs_car_van_or_priority"


def fleet_of(rules: RetailerRules, default_fleet: Iterable[str] = ()) -> tuple[str, ...]:
    """The retailer's priority fleet, or the marketplace's when the retailer names none."""
    return rules.priority_fleet or tuple(default_fleet)


def assess(
    quote: Quote, rules: RetailerRules, now: datetime, order: OrderFacts, default_fleet: Iterable[str] = ()
) -> Unsuitable | None:
    """None when ``quote`` is a candidate, else the first rule it breaks (checked in a fixed order)."""
    if quote.expired(now):
        return Unsuitable.EXPIRED
    if quote.price.currency != order.basket.currency:
        return Unsuitable.CURRENCY
    if quote.vehicle not in rules.allowed_vehicles:
        return Unsuitable.VEHICLE_NOT_ALLOWED
    if not fits(quote.vehicle, order.size):
        return Unsuitable.VEHICLE_TOO_SMALL
    if order.distance_km > rules.max_distance_km:
        return Unsuitable.TOO_FAR
    if rules.max_price_minor is not None and quote.price.amount_minor > rules.max_price_minor:
        return Unsuitable.TOO_EXPENSIVE
    threshold = rules.high_value_basket_minor
    if (
        threshold is not None
        and order.basket.amount_minor > threshold
        and quote.vehicle not in rules.high_value_vehicles
        and quote.courier not in fleet_of(rules, default_fleet)
    ):
        return Unsuitable.HIGH_VALUE
    return None


def rank_quotes(
    quotes: Iterable[Quote],
    rules: RetailerRules,
    now: datetime,
    order: OrderFacts | DeliveryRequest,
    *,
    default_fleet: Iterable[str] = (),
    ranks: Mapping[str, int] | None = None,
) -> list[Quote]:
    """The suitable quotes in the order dispatch should try them (see the module docstring).

    ``ranks``: the marketplace's ``priority_rank`` per courier (tie-break; unknown couriers rank last).
    A quote id seen twice (a republished answer) is kept once. The result is a sub-list of ``quotes``
    with no expired quote; empty means ``no_courier_available``.
    """
    facts = OrderFacts.of(order) if isinstance(order, DeliveryRequest) else order
    fleet = fleet_of(rules, default_fleet)
    rank = ranks or {}
    seen: set[str] = set()
    suitable: list[Quote] = []
    for q in quotes:
        if q.quote_id in seen or assess(q, rules, now, facts, fleet) is not None:
            continue
        seen.add(q.quote_id)
        suitable.append(q)

    def key(q: Quote) -> tuple[int, int, int, datetime, int, str, str]:
        tie = (q.dropoff_eta, rank.get(q.courier, 1 << 30), q.courier, q.quote_id)
        if q.courier in fleet:
            position = fleet.index(q.courier) if rules.selection == "priority" else 0
            return (0, position, q.price.amount_minor, *tie)
        return (1, 0, q.price.amount_minor, *tie)

    return sorted(suitable, key=key)


def next_option(ranked: Sequence[Quote], tried: Collection[str]) -> Quote | None:
    """The first quote whose courier (or quote id) is not in ``tried``: a courier that refused or timed
    out is not asked again for the same order (a late "accepted" from it must be cancelled, not booked).

    Example:
        >>> next_option([], {"zoomly"}) is None
        True
    """
    return next((q for q in ranked if q.courier not in tried and q.quote_id not in tried), None)


def outcome(ranked: Sequence[Quote]) -> Literal["quoted", "no_courier_available"]:
    """What quoting emits for the ranked list."""
    return "quoted" if ranked else "no_courier_available"
