"""The pure part of quoting: whom to ask, the request body, when a round is due, what it decides."""

from __future__ import annotations

import doctest
import importlib
import json
from datetime import timedelta

import pytest

from system.domain.lifecycle import Event
from system.domain.marketplace import load_marketplace
from system.domain.quoting import parse_quote_answer
from system.domain.retailers import RetailerRules
from system.platform.contracts import DeliveryQuoted, LifecycleEvent
from system.quoting.decide import (
    NoCourier,
    Quoted,
    Round,
    RoundStatus,
    couriers_to_ask,
    decide,
    decision_messages,
    is_due,
    quote_request,
)

from .conftest import ASKED, BIKES, T0, declined_doc, quote_doc, request

MARKET = load_marketplace()


def _round(asked: tuple[str, ...] = ASKED, rules: RetailerRules = BIKES, **kw: object) -> Round:
    return Round("dlv_1", "s42-0000001", "r01", request(), rules, asked, 100.0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "system.quoting.decide",
        "system.platform.contracts.orders",
        "system.quoting.settings",
        "system.quoting.store",
    ],
)
def test_docstring_examples(name: str) -> None:
    assert doctest.testmod(importlib.import_module(name)).failed == 0


def test_the_couriers_asked_are_the_eligible_ones_within_the_retailers_vehicles() -> None:
    assert couriers_to_ask(MARKET, request(), BIKES) == ASKED
    # The default rules allow every vehicle: the van and car couriers of the north join.
    wider = couriers_to_ask(MARKET, request(), RetailerRules())
    assert set(ASKED) < set(wider) and "barnet-vans" in wider
    assert couriers_to_ask(MARKET, request(parcel={"weight_g": 9000, "size": "XL"}), BIKES) == ()


def test_at_most_limit_couriers_are_asked_the_priority_fleet_always() -> None:
    everyone = couriers_to_ask(MARKET, request(), RetailerRules())
    assert couriers_to_ask(MARKET, request(), RetailerRules(), limit=2) == everyone[:2]
    last = everyone[-1]
    fleet_rules = RetailerRules(priority_fleet=(last,))
    assert couriers_to_ask(MARKET, request(), fleet_rules, limit=2) == (last, *everyone[:1])
    # a fleet larger than the limit is still asked in full
    big = RetailerRules(priority_fleet=everyone[:4])
    assert couriers_to_ask(MARKET, request(), big, limit=2) == everyone[:4]


def test_the_quote_request_is_exactly_the_contracts_body() -> None:
    m = quote_request("dlv_1", request(), "dashly")
    assert (m.exchange, m.routing_key, m.message_id) == (
        "courier.requests",
        "dashly.quote_request",
        "qr-dlv_1-dashly",
    )
    assert m.headers["x-courier"] == "dashly"
    assert json.loads(m.body) == {
        "type": "quote_request", "message_id": "qr-dlv_1-dashly", "courier": "dashly", "delivery_id": "dlv_1",
        "order_reference": "s42-0000001",
        "pickup": {"lat": 51.57, "lon": -0.13, "postcode": "N1 4AB"},
        "dropoff": {"lat": 51.70, "lon": -0.10, "postcode": "EN5 1AA"},
        "parcel": {"weight_g": 900, "size": "S"},
        "pickup_window": {"start": "2026-11-18T11:17:40Z", "end": "2026-11-18T11:47:40Z"},
        "dropoff_window": {"start": "2026-11-18T11:27:40Z", "end": "2026-11-18T12:27:40Z"},
    }  # fmt: skip


def test_a_round_is_due_when_everyone_answered_or_at_its_deadline() -> None:
    r = _round()
    assert not is_due(r, {"zoomly", "dashly"}, now=99.9)
    assert is_due(r, set(ASKED), now=1.0)  # all answered: no need to wait
    assert is_due(r, set(), now=100.0)  # deadline: the silent ones are not waited for
    assert not is_due(_round(status=RoundStatus.CANCELLED), set(ASKED), now=200.0)
    assert not is_due(_round(status=RoundStatus.QUOTED), set(), now=200.0)


def test_decide_ranks_the_priority_fleet_first_then_cheapest() -> None:
    answers = [
        parse_quote_answer(quote_doc(c, p)) for c, p in (("dashly", 700), ("zoomly", 900), ("pedalo", 650))
    ]
    decision = decide(_round(), answers, T0, MARKET)
    assert isinstance(decision, Quoted)
    assert [q.courier for q in decision.options] == ["zoomly", "pedalo", "dashly"]


def test_decide_with_a_silent_courier_uses_the_answers_it_has() -> None:
    answers = [parse_quote_answer(quote_doc("pedalo", 650)), parse_quote_answer(declined_doc("dashly"))]
    decision = decide(_round(), answers, T0, MARKET)
    assert isinstance(decision, Quoted)
    assert [q.courier for q in decision.options] == ["pedalo"]


def test_no_suitable_quote_is_no_courier_with_the_counts() -> None:
    answers = [
        parse_quote_answer(quote_doc("zoomly", 9000)),  # above max_price_minor
        parse_quote_answer(quote_doc("pedalo", 500, expires=T0 - timedelta(seconds=1))),  # expired
        parse_quote_answer(declined_doc("dashly", "no_vehicle_for_size")),
    ]
    decision = decide(_round(), answers, T0, MARKET)
    assert decision == NoCourier(
        "no suitable quote: asked 3, 2 unsuitable (expired: 1, too_expensive: 1), 1 declined (no_vehicle_for_size: 1)"
    )
    silent = decide(_round(), [], T0, MARKET)
    assert silent == NoCourier("no suitable quote: asked 3, 3 silent")
    assert decide(_round(asked=()), [], T0, MARKET) == NoCourier("no eligible courier for this order")


def test_quoted_publishes_delivery_quoted_and_a_quoted_lifecycle_event() -> None:
    options = (parse_quote_answer(quote_doc("pedalo", 650)),)
    quoted, event = decision_messages(_round(), Quoted(options), T0)  # type: ignore[arg-type]
    assert (quoted.exchange, quoted.routing_key, quoted.message_id) == (
        "quotes",
        "delivery.quoted",
        "dlv_1:delivery.quoted",
    )
    body = DeliveryQuoted.model_validate_json(quoted.body)
    assert body.options == options and body.retailer_id == "r01" and body.decided_at == T0
    assert (event.exchange, event.routing_key, event.message_id) == (
        "lifecycle",
        "quoted",
        "dlv_1:quoted:quoting",
    )
    assert event.headers["x-delivery-id"] == "dlv_1"
    ev = LifecycleEvent.model_validate_json(event.body)
    assert (ev.event, ev.source) == (Event.QUOTED, "quoting")


def test_no_courier_publishes_only_the_lifecycle_event_with_its_reason() -> None:
    (event,) = decision_messages(_round(), NoCourier("no eligible courier for this order"), T0)
    assert (event.exchange, event.message_id) == ("lifecycle", "dlv_1:no_courier:quoting")
    ev = LifecycleEvent.model_validate_json(event.body)
    assert (ev.event, ev.reason) == (Event.NO_COURIER, "no eligible courier for this order")
