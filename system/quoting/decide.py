"""The pure part of quoting: whom to ask, what to send them, when a round is due and what it decides.

A *round* is one order's scatter-gather: a quote request to every eligible courier, then the answers
until every asked courier answered or the deadline passed (a courier in an outage answers nothing at
all, so only the deadline ends that wait). The decision ranks the quotes received in time with the
retailer's rules (:func:`system.domain.quoting.rank_quotes`): any suitable one → ``quoted`` (a
``DeliveryQuoted`` for dispatch and, for the first round, a ``quoted`` lifecycle event), none →
``no_courier``.

An order may have several rounds: when dispatch runs out of options for transient reasons (quotes that
expired while the brokers were down, couriers that never answered) before the order's deadline
(``book_by``), it asks for round ``n + 1`` (``RequoteRequested``); the couriers are asked again with new
request ids (``qr-<delivery>-<courier>-r<n>``), so a courier whose quote expired quotes afresh.

Example:
    >>> r = Round("dlv_1", "s42-0000001", "r01", _EXAMPLE, RetailerRules(), ("zoomly", "dashly"), 10.0)
    >>> is_due(r, {"zoomly"}, now=9.0), is_due(r, {"zoomly", "dashly"}, now=9.0), is_due(r, set(), now=10.0)
    (False, True, True)
    >>> quote_request_id("dlv_1", "zoomly")
    'qr-dlv_1-zoomly'
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from system.domain.intake import DeliveryRequest
from system.domain.lifecycle import Event
from system.domain.marketplace import Marketplace, eligible_for
from system.domain.quoting import OrderFacts, Quote, QuoteDeclined, assess, fleet_of, rank_quotes
from system.domain.retailers import RetailerRules
from system.messaging.envelope import OutgoingMessage
from system.platform.contracts import (
    DeliveryQuoted,
    lifecycle_message,
    platform_event,
    quoted_message,
    quoted_message_id,
)
from system.platform.topology import COURIER_REQUESTS, DELIVERY_HEADER

Answer = Quote | QuoteDeclined


class RoundStatus(StrEnum):
    """Where a round is: collecting answers, or decided one way, or cancelled before a decision."""

    COLLECTING = "collecting"
    QUOTED = "quoted"
    NO_COURIER = "no_courier"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Round:
    """One order's quote round as stored (``deadline_at``: unix time)."""

    delivery_id: str
    order_reference: str
    retailer_id: str
    request: DeliveryRequest
    rules: RetailerRules
    asked: tuple[str, ...]
    deadline_at: float
    status: RoundStatus = RoundStatus.COLLECTING
    #: 1 for the first ask; couriers still silent at the deadline are asked again (ask 2, 3, ...)
    attempt: int = 1
    #: 1 for the order's first round; dispatch's requote after round n starts round n + 1
    round_no: int = 1
    #: the order's deadline (unix time): silence and requotes are retried until then, never after
    book_by: float = math.inf


@dataclass(frozen=True)
class Quoted:
    """At least one suitable quote: ``options`` best first, the order dispatch tries them in; ``pending``:
    asked couriers not heard from yet that answer other orders (they may still quote)."""

    options: tuple[Quote, ...]
    pending: tuple[str, ...] = ()


@dataclass(frozen=True)
class NoCourier:
    """No suitable quote; ``reason`` says why in words (counts of what each asked courier did)."""

    reason: str


Decision = Quoted | NoCourier


def couriers_to_ask(
    market: Marketplace, request: DeliveryRequest, rules: RetailerRules, limit: int | None = None
) -> tuple[str, ...]:
    """The couriers worth asking: serve both ends, carry the parcel in a vehicle the retailer allows.

    At most ``limit`` of them (None: all): the retailer's priority fleet first, then the marketplace's
    ``priority_rank`` order. Asking all 30+ couriers of a busy region for every order multiplies the
    platform's messages for quotes that would rank below the first few anyway.
    """
    eligible = [c.id for c in eligible_for(market, request, rules.allowed_vehicles)]
    fleet = [c for c in eligible if c in rules.priority_fleet]
    ordered = fleet + [c for c in eligible if c not in fleet]
    return tuple(ordered if limit is None else ordered[: max(limit, len(fleet))])


def quote_request_id(delivery_id: str, courier: str, attempt: int = 1, round_no: int = 1) -> str:
    """The deterministic message id of a quote request to ``courier`` (answers echo it as in_reply_to).

    Round 1 keeps the ids it had before rounds existed: ``qr-<delivery>-<courier>``, ask ``k`` ≥ 2
    ``qr-<delivery>-<courier>-<k>``; round ``n`` ≥ 2 inserts ``-r<n>`` after the courier.

    >>> quote_request_id("dlv_1", "zoomly"), quote_request_id("dlv_1", "zoomly", 2, 3)
    ('qr-dlv_1-zoomly', 'qr-dlv_1-zoomly-r3-2')
    """
    base = f"qr-{delivery_id}-{courier}" + (f"-r{round_no}" if round_no > 1 else "")
    return base if attempt == 1 else f"{base}-{attempt}"


def request_round(delivery_id: str, courier: str, request_id: str) -> tuple[int, int] | None:
    """(round, ask) of a quote request id of ``delivery_id`` to ``courier`` (None: not one of ours).

    >>> request_round("dlv_1", "zoomly", "qr-dlv_1-zoomly-r3-2"), request_round("dlv_1", "zoomly", "x")
    ((3, 2), None)
    """
    n = r"[2-9]|[1-9]\d+"
    m = re.fullmatch(
        rf"qr-{re.escape(delivery_id)}-{re.escape(courier)}(?:-r(?P<round>{n}))?(?:-(?P<ask>{n}))?",
        request_id,
    )
    if m is None:
        return None
    return (int(m["round"] or 1), int(m["ask"] or 1))


def iso(at: datetime) -> str:
    """An instant as ISO-8601 UTC with a ``Z`` (the courier contract's format)."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def quote_request_body(
    delivery_id: str, request: DeliveryRequest, courier: str, attempt: int = 1, round_no: int = 1
) -> dict[str, Any]:
    """The body of docs/intake-api.md §3.2 (exactly those fields)."""
    return {
        "type": "quote_request",
        "message_id": quote_request_id(delivery_id, courier, attempt, round_no),
        "courier": courier,
        "delivery_id": delivery_id,
        "order_reference": request.reference,
        "pickup": {"lat": request.pickup.lat, "lon": request.pickup.lon, "postcode": request.pickup.postcode},
        "dropoff": {
            "lat": request.dropoff.lat,
            "lon": request.dropoff.lon,
            "postcode": request.dropoff.postcode,
        },
        "parcel": {"weight_g": request.parcel.weight_g, "size": request.parcel.size},
        "pickup_window": {"start": iso(request.pickup_window.start), "end": iso(request.pickup_window.end)},
        "dropoff_window": {
            "start": iso(request.dropoff_window.start),
            "end": iso(request.dropoff_window.end),
        },
    }


def quote_request(
    delivery_id: str,
    request: DeliveryRequest,
    courier: str,
    *,
    ttl_ms: int | None = None,
    attempt: int = 1,
    round_no: int = 1,
) -> OutgoingMessage:
    """``courier.requests`` → ``<courier>.quote_request`` (``ttl_ms``: dropped if still queued after it)."""
    body = quote_request_body(delivery_id, request, courier, attempt, round_no)
    return OutgoingMessage.json(
        COURIER_REQUESTS,
        f"{courier}.quote_request",
        body,
        message_id=body["message_id"],
        headers={"x-courier": courier, DELIVERY_HEADER: delivery_id},
        message_type="quote_request",
        expiration_ms=ttl_ms,
    )


def is_due(round_: Round, answered: Collection[str], now: float) -> bool:
    """Whether a collecting round should be decided: every asked courier answered, or the deadline passed."""
    if round_.status is not RoundStatus.COLLECTING:
        return False
    return now >= round_.deadline_at or set(round_.asked) <= set(answered)


def _fleet_and_ranks(market: Marketplace) -> tuple[tuple[str, ...], dict[str, int]]:
    fleet = tuple(c.id for c in market.couriers if c.priority_fleet)
    return fleet, {c.id: c.priority_rank for c in market.couriers}


def decide(round_: Round, answers: Sequence[Answer], now: datetime, market: Marketplace) -> Decision:
    """Rank the answers received in time; ``now`` is the decision instant (quotes expired then are out)."""
    fleet, ranks = _fleet_and_ranks(market)
    facts = OrderFacts.of(round_.request)
    quotes = [a for a in answers if isinstance(a, Quote)]
    ranked = rank_quotes(quotes, round_.rules, now, facts, default_fleet=fleet, ranks=ranks)
    if ranked:
        return Quoted(tuple(ranked))
    return NoCourier(explain(round_, answers, now, fleet))


def explain(round_: Round, answers: Iterable[Answer], now: datetime, fleet: Iterable[str] = ()) -> str:
    """Why no quote is suitable, in words (the counts explain a ``no_courier`` to a human).

    Example:
        >>> r = Round("dlv_1", "s1", "r01", _EXAMPLE, RetailerRules(), (), 0.0)
        >>> explain(r, [], datetime(2026, 1, 1, tzinfo=UTC))
        'no eligible courier for this order'
    """
    if not round_.asked:
        if round_.round_no > 1:
            return "every courier asked in earlier rounds refused the order"
        return "no eligible courier for this order"
    answers = list(answers)
    facts = OrderFacts.of(round_.request)
    unsuitable = Counter(
        str(assess(a, round_.rules, now, facts, fleet_of(round_.rules, fleet)))
        for a in answers
        if isinstance(a, Quote)
    )
    declined = Counter(a.reason for a in answers if isinstance(a, QuoteDeclined))
    silent = len(set(round_.asked) - {a.courier for a in answers})
    parts = [f"asked {len(round_.asked)}"]
    if unsuitable:
        parts.append(f"{sum(unsuitable.values())} unsuitable ({_counts(unsuitable)})")
    if declined:
        parts.append(f"{sum(declined.values())} declined ({_counts(declined)})")
    if silent:
        parts.append(f"{silent} silent")
    return "no suitable quote: " + ", ".join(parts)


def _counts(c: Counter[str]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(c.items()))


def decision_messages(round_: Round, decision: Decision, now: datetime) -> list[OutgoingMessage]:
    """What a decision publishes (deterministic ids: a re-run writes the same outbox rows).

    Only the first round's ``quoted`` is a lifecycle event: a later round keeps the delivery quoted."""
    d, ref = round_.delivery_id, round_.order_reference
    if isinstance(decision, Quoted):
        quoted = DeliveryQuoted(
            message_id=quoted_message_id(d, round_.round_no),
            delivery_id=d,
            order_reference=ref,
            retailer_id=round_.retailer_id,
            options=decision.options,
            decided_at=now,
            round=round_.round_no,
            book_by=None if math.isinf(round_.book_by) else datetime.fromtimestamp(round_.book_by, UTC),
            pending=decision.pending,
        )
        if round_.round_no > 1:
            return [quoted_message(quoted)]
        return [
            quoted_message(quoted),
            lifecycle_message(platform_event(d, ref, Event.QUOTED, "quoting", now)),
        ]
    return [
        lifecycle_message(platform_event(d, ref, Event.NO_COURIER, "quoting", now, reason=decision.reason))
    ]


# A valid request for the doctests above (central London, a small parcel).
_EXAMPLE = DeliveryRequest.model_validate(
    {
        "retailer_id": "r01",
        "channel": "rest",
        "reference": "s42-0000001",
        "pickup": {"lines": ["1 A St"], "city": "London", "postcode": "N1 4AB", "lat": 51.51, "lon": -0.12},
        "dropoff": {"lines": ["2 B St"], "city": "London", "postcode": "N1 4AC", "lat": 51.52, "lon": -0.11},
        "pickup_window": {"start": "2026-11-18T11:00:00Z", "end": "2026-11-18T11:30:00Z"},
        "dropoff_window": {"start": "2026-11-18T11:10:00Z", "end": "2026-11-18T12:00:00Z"},
        "recipient": {"name": "Ben", "phone": "+447700900786"},
        "parcel": {"weight_g": 900, "size": "S"},
        "basket": {"amount_minor": 2247, "currency": "GBP"},
    }
)
