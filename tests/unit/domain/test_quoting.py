"""Quote ranking: the retailer's rules, priority fleet first, deterministic order, retries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config import Scenario
from simulator.world import build_retailers, retailers_document
from system.domain.common import VEHICLES, Money, Vehicle
from system.domain.dialects import CourierMessageInvalid
from system.domain.quoting import (
    OrderFacts,
    Quote,
    QuoteDeclined,
    RetailerRules,
    Unsuitable,
    assess,
    next_option,
    outcome,
    parse_quote_answer,
    rank_quotes,
)

T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
FACTS = OrderFacts(distance_km=4.0, size="S", basket=Money(amount_minor=2247, currency="GBP"))


def q(courier: str, price: int, vehicle: Vehicle = "bike", expires_min: float = 15.0, eta_min: float = 30.0,
      qid: str | None = None, currency: str = "GBP") -> Quote:  # fmt: skip
    return Quote(
        courier=courier, quote_id=qid or f"q-{courier}", price=Money(amount_minor=price, currency=currency),
        vehicle=vehicle, pickup_eta=T0 + timedelta(minutes=5), dropoff_eta=T0 + timedelta(minutes=eta_min),
        expires_at=T0 + timedelta(minutes=expires_min),
    )  # fmt: skip


def ids(quotes: list[Quote]) -> list[str]:
    return [x.courier for x in quotes]


def test_rules_from_the_simulators_retailers_file() -> None:
    sc = Scenario.model_validate({"arrivals": {"rate": 1.0}, "world": {"retailers": 12}})
    doc: Any = retailers_document(3, build_retailers(3, sc))
    for r in doc["retailers"]:
        rules = RetailerRules.model_validate(r["rules"])
        assert rules.priority_fleet == ("zoomly",) and rules.selection in {"cheapest", "priority"}
        assert rules.high_value_basket_minor is None  # the contract's rules only, unless configured


def test_priority_fleet_first_then_backups_cheapest() -> None:
    rules = RetailerRules(priority_fleet=("zoomly", "dashly"), selection="cheapest")
    quotes = [q("pedalo", 650), q("dashly", 900), q("zoomly", 800), q("vanguard", 600, "car")]
    assert ids(rank_quotes(quotes, rules, T0, FACTS)) == ["zoomly", "dashly", "vanguard", "pedalo"]
    by_priority = rules.model_copy(update={"selection": "priority"})
    quotes.append(q("dashly", 700, qid="q-dashly-2"))
    assert ids(rank_quotes(quotes, by_priority, T0, FACTS)) == [
        "zoomly",
        "dashly",
        "dashly",
        "vanguard",
        "pedalo",
    ]


def test_default_fleet_when_the_retailer_names_none() -> None:
    quotes = [q("pedalo", 650), q("zoomly", 800)]
    assert ids(rank_quotes(quotes, RetailerRules(), T0, FACTS, default_fleet=["zoomly"])) == [
        "zoomly",
        "pedalo",
    ]
    assert ids(rank_quotes(quotes, RetailerRules(), T0, FACTS)) == ["pedalo", "zoomly"]


def test_ties_break_on_eta_then_marketplace_rank_then_id() -> None:
    quotes = [
        q("b", 500, eta_min=40),
        q("a", 500, eta_min=40),
        q("c", 500, eta_min=30),
        q("d", 500, eta_min=40),
    ]
    assert ids(rank_quotes(quotes, RetailerRules(), T0, FACTS, ranks={"d": 1, "b": 2})) == [
        "c",
        "d",
        "b",
        "a",
    ]


@pytest.mark.parametrize(
    ("quote", "rules", "facts", "reason"),
    [
        (q("a", 500, expires_min=0), RetailerRules(), FACTS, Unsuitable.EXPIRED),
        (q("a", 500, expires_min=-1), RetailerRules(), FACTS, Unsuitable.EXPIRED),
        (q("a", 500, currency="EUR"), RetailerRules(), FACTS, Unsuitable.CURRENCY),
        (q("a", 500, "van"), RetailerRules(allowed_vehicles=("bike", "car")), FACTS, Unsuitable.VEHICLE_NOT_ALLOWED),
        (q("a", 500, "bike"), RetailerRules(), OrderFacts(4.0, "L", FACTS.basket), Unsuitable.VEHICLE_TOO_SMALL),
        (q("a", 500, "car"), RetailerRules(), OrderFacts(4.0, "XL", FACTS.basket), Unsuitable.VEHICLE_TOO_SMALL),
        (q("a", 500), RetailerRules(max_distance_km=3.0), FACTS, Unsuitable.TOO_FAR),
        (q("a", 2501), RetailerRules(max_price_minor=2500), FACTS, Unsuitable.TOO_EXPENSIVE),
        (q("a", 500, "bike"), RetailerRules(high_value_basket_minor=2000), FACTS, Unsuitable.HIGH_VALUE),
    ],
)  # fmt: skip
def test_each_rule(quote: Quote, rules: RetailerRules, facts: OrderFacts, reason: Unsuitable) -> None:
    assert assess(quote, rules, T0, facts) is reason
    assert rank_quotes([quote], rules, T0, facts) == []
    assert outcome([]) == "no_courier_available"


def test_high_value_basket_allows_car_van_or_the_priority_fleet() -> None:
    rules = RetailerRules(high_value_basket_minor=2000, priority_fleet=("zoomly",))
    quotes = [q("pedalo", 500, "bike"), q("zoomly", 900, "bike"), q("vanguard", 1200, "van")]
    assert ids(rank_quotes(quotes, rules, T0, FACTS)) == ["zoomly", "vanguard"]
    cheap_basket = OrderFacts(4.0, "S", Money(amount_minor=2000, currency="GBP"))  # at the threshold: fine
    assert ids(rank_quotes(quotes, rules, T0, cheap_basket)) == ["zoomly", "pedalo", "vanguard"]


def test_next_option_skips_tried_couriers_and_quote_ids() -> None:
    ranked = rank_quotes(
        [q("zoomly", 900), q("pedalo", 650), q("dashly", 700)],
        RetailerRules(priority_fleet=("zoomly",)),
        T0,
        FACTS,
    )
    first = next_option(ranked, set())
    assert first is not None and first.courier == "zoomly"
    second = next_option(ranked, {"zoomly"})
    assert second is not None and second.courier == "pedalo"
    third = next_option(ranked, {"zoomly", "q-pedalo"})
    assert third is not None and third.courier == "dashly"
    assert next_option(ranked, {"zoomly", "pedalo", "dashly"}) is None
    assert outcome(ranked) == "quoted"


def test_parse_quote_answers() -> None:
    doc = {"type": "quote", "courier": "dashly", "dialect": "doordash", "delivery_id": "dlv_000123",
           "order_reference": "s42-0000001", "in_reply_to": "qr-1", "message_id": "dashly:s42-0000001:quote:0",
           "quote_id": "q-dashly-731101564802", "price": {"amount_minor": 705, "currency": "GBP"},
           "vehicle": "bike", "pickup_eta": "2026-11-18T11:29:18Z", "dropoff_eta": "2026-11-18T11:45:55Z",
           "expires_at": "2026-11-18T11:21:40Z"}  # fmt: skip
    quote = parse_quote_answer(doc)
    assert isinstance(quote, Quote) and quote.price.amount_minor == 705 and quote.delivery_id == "dlv_000123"
    declined = parse_quote_answer({**doc, "type": "quote_declined", "reason": "no_vehicle_for_size"})
    assert isinstance(declined, QuoteDeclined) and declined.reason == "no_vehicle_for_size"
    with pytest.raises(CourierMessageInvalid, match="lacks price"):
        parse_quote_answer({k: v for k, v in doc.items() if k != "price"})
    with pytest.raises(CourierMessageInvalid, match="vehicle"):
        parse_quote_answer({**doc, "vehicle": "rocket"})
    with pytest.raises(CourierMessageInvalid, match=r"price\.amount_minor"):
        parse_quote_answer({**doc, "price": {"amount_minor": "seven", "currency": "GBP"}})
    with pytest.raises(CourierMessageInvalid):
        parse_quote_answer(b"{oops")


# --- properties ------------------------------------------------------------------------------------------

COURIERS = ["zoomly", "dashly", "pedalo", "vanguard", "soho-sprint", "bow-bikes"]
quotes_st = st.lists(
    st.builds(
        q,
        courier=st.sampled_from(COURIERS),
        price=st.integers(0, 5000),
        vehicle=st.sampled_from(VEHICLES),
        expires_min=st.floats(-30, 30),
        eta_min=st.integers(5, 90),
        qid=st.text("abcdef0123", min_size=1, max_size=6),
        currency=st.sampled_from(["GBP", "GBP", "GBP", "EUR"]),
    ),
    max_size=20,
)
rules_st = st.builds(
    RetailerRules,
    selection=st.sampled_from(["cheapest", "priority"]),
    priority_fleet=st.lists(st.sampled_from(COURIERS), unique=True, max_size=3).map(tuple),
    max_distance_km=st.floats(1, 30),
    allowed_vehicles=st.lists(st.sampled_from(VEHICLES), unique=True, min_size=1).map(tuple),
    max_price_minor=st.none() | st.integers(0, 5000),
    high_value_basket_minor=st.none() | st.integers(0, 5000),
)
facts_st = st.builds(
    OrderFacts,
    distance_km=st.floats(0, 30),
    size=st.sampled_from(["S", "M", "L", "XL"]),
    basket=st.builds(Money, amount_minor=st.integers(0, 10_000), currency=st.just("GBP")),
)


@settings(max_examples=300, deadline=None)
@given(quotes_st, rules_st, facts_st)
def test_rank_never_returns_unsuitable_and_is_a_subset(
    quotes: list[Quote], rules: RetailerRules, facts: OrderFacts
) -> None:
    ranked = rank_quotes(quotes, rules, T0, facts)
    assert all(not x.expired(T0) and assess(x, rules, T0, facts) is None for x in ranked)
    assert len({x.quote_id for x in ranked}) == len(ranked)  # each quote once
    for x in ranked:
        assert ranked.count(x) <= quotes.count(x)  # a sub-multiset of the input
    fleet = [x.courier in rules.priority_fleet for x in ranked]
    assert fleet == sorted(fleet, reverse=True)  # priority fleet first
    backups = [x.price.amount_minor for x in ranked if x.courier not in rules.priority_fleet]
    assert backups == sorted(backups)  # then cheapest first
    if rules.selection == "cheapest":
        head = [x.price.amount_minor for x in ranked if x.courier in rules.priority_fleet]
        assert head == sorted(head)
    else:
        head_pos = [
            rules.priority_fleet.index(x.courier) for x in ranked if x.courier in rules.priority_fleet
        ]
        assert head_pos == sorted(head_pos)


@settings(max_examples=200, deadline=None)
@given(quotes_st, rules_st, facts_st, st.randoms(use_true_random=False))
def test_rank_is_independent_of_arrival_order(quotes: list[Quote], rules: RetailerRules, facts: OrderFacts,
                                              rnd: random.Random) -> None:  # fmt: skip
    unique = list({x.quote_id: x for x in quotes}.values())  # one answer per quote id
    shuffled = unique[:]
    rnd.shuffle(shuffled)
    assert rank_quotes(unique, rules, T0, facts) == rank_quotes(shuffled, rules, T0, facts)


@settings(max_examples=200, deadline=None)
@given(quotes_st, rules_st, facts_st)
def test_next_option_walks_the_ranking_without_repeating_a_courier(quotes: list[Quote], rules: RetailerRules,
                                                                   facts: OrderFacts) -> None:  # fmt: skip
    ranked = rank_quotes(quotes, rules, T0, facts)
    tried: set[str] = set()
    order = []
    while (nxt := next_option(ranked, tried)) is not None:
        assert nxt.courier not in tried
        order.append(nxt.courier)
        tried.add(nxt.courier)
    assert order == list(dict.fromkeys(x.courier for x in ranked))
