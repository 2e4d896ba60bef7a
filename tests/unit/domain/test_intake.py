"""Intake models against what the simulator really sends, and every kind of bad input."""

from __future__ import annotations

import json
from functools import cache
from itertools import islice
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.channels import Encoders
from simulator.clock import SimClock
from simulator.config import Scenario, default_couriers
from simulator.orders import OrderGenerator, OrderSpec
from simulator.world import Retailer as SimRetailer
from simulator.world import retailers_document
from system.domain.common import LatLon
from system.domain.intake import (
    DeliveryRequest,
    EposAction,
    IdempotencyVerdict,
    IntakeInvalid,
    StoredKey,
    UnknownStore,
    decimal_to_minor,
    delivery_id_for,
    epos_action,
    epos_is_newer,
    idempotency_check,
    idempotency_fingerprint,
    normalise_epos,
    normalise_rest,
    normalise_shopify,
    parse_epos,
    parse_rest,
    parse_rest_cancel,
    parse_shopify,
    sign_body,
    verify_epos_signature,
    verify_shopify_hmac,
)
from system.domain.marketplace import eligible, load_marketplace
from system.domain.retailers import RetailerBook, RetailersError, parse_retailers

CLOCK = SimClock(epoch=1_800_000_000.0)
SEED = 21


@cache
def world(channel: str) -> tuple[list[OrderSpec], dict[str, SimRetailer], RetailerBook]:
    mix = {"rest": 0.0, "shopify": 0.0, "epos": 0.0, channel: 1.0}
    sc = Scenario.model_validate({"arrivals": {"rate": 10.0}, "world": {"retailers": 4, "channel_mix": mix},
                                  "webhooks": {"update_share": 0.6, "out_of_order_share": 0.5}})  # fmt: skip
    gen = OrderGenerator(sc, SEED)
    book = parse_retailers(json.dumps(retailers_document(SEED, gen.retailers)))
    return list(islice(gen, 60)), {r.id: r for r in gen.retailers}, book


def check_normalised(req: Any, o: OrderSpec) -> None:
    assert req.reference == o.ref and req.retailer_id == o.retailer_id and req.store_id == o.store_id
    assert req.basket.amount_minor == o.basket_minor and req.basket.currency == o.currency
    assert req.parcel.weight_g == o.weight_g and req.parcel.size == o.size
    assert req.dropoff.lines == o.dropoff.lines and req.dropoff.postcode == o.dropoff.postcode
    assert (req.dropoff.lat, req.dropoff.lon) == (o.dropoff.point.lat, o.dropoff.point.lon)
    assert (req.pickup.lat, req.pickup.lon) == (o.pickup.point.lat, o.pickup.point.lon)
    assert req.recipient.phone == o.recipient.phone and req.recipient.name == o.recipient.name
    assert req.pickup_window.start.timestamp() == CLOCK.epoch + int(o.pickup_window[0])
    assert req.dropoff_window.end.timestamp() == CLOCK.epoch + int(o.dropoff_window[1])
    assert [(i.sku, i.quantity, i.unit_price_minor) for i in req.items] == [
        (i.sku, i.quantity, i.unit_price_minor) for i in o.items
    ]
    assert abs(req.distance_km - o.distance_km) < 0.01


def test_rest_requests_of_the_simulator_validate_and_normalise() -> None:
    orders, sim, book = world("rest")
    enc = Encoders(CLOCK).for_channel("rest")
    for o in orders:
        (wire,) = enc.encode_order(o, sim[o.retailer_id])
        retailer = book.by_api_key(wire.headers["Authorization"].removeprefix("Bearer "))
        assert retailer is not None and retailer.id == o.retailer_id
        check_normalised(normalise_rest(parse_rest(wire.body), retailer), o)
    cancel = enc.encode_cancel(orders[0], sim[orders[0].retailer_id], "dlv_1")
    assert cancel is not None and parse_rest_cancel(cancel.body).reference == orders[0].ref


def test_shopify_webhooks_of_the_simulator_verify_validate_and_normalise() -> None:
    orders, sim, book = world("shopify")
    enc = Encoders(CLOCK).for_channel("shopify")
    for o in orders:
        (wire,) = enc.encode_order(o, sim[o.retailer_id])
        retailer = book.by_shop_domain(wire.headers["X-Shopify-Shop-Domain"])
        assert retailer is not None
        assert verify_shopify_hmac(wire.body, wire.headers["X-Shopify-Hmac-Sha256"], retailer.webhook_secret)
        req = normalise_shopify(parse_shopify(wire.body), retailer)
        check_normalised(req, o)
        assert req.recipient.email == o.recipient.email and req.source_id is not None
        cancel = enc.encode_cancel(o, sim[o.retailer_id], None)
        assert cancel is not None and cancel.headers["X-Shopify-Topic"] == "orders/cancelled"
        assert parse_shopify(cancel.body).cancelled_at is not None


def test_epos_events_of_the_simulator_verify_validate_and_normalise() -> None:
    orders, sim, book = world("epos")
    enc = Encoders(CLOCK).for_channel("epos")
    swapped = 0
    for o in orders:
        stored: int | None = None
        applied = []
        wires = enc.encode_order(o, sim[o.retailer_id])
        for wire in wires:
            retailer = book.by_merchant_id(wire.headers["X-Epos-Merchant-Id"])
            assert retailer is not None
            assert verify_epos_signature(wire.body, wire.headers["X-Epos-Signature"], retailer.webhook_secret)
            ev = parse_epos(wire.body)
            assert ev.event_id == wire.key and epos_action(ev) is EposAction.UPSERT
            req = normalise_epos(ev, retailer)
            assert req is not None
            check_normalised(req, o)
            if epos_is_newer(ev.order.version, stored):
                stored = ev.order.version
                applied.append(ev.type)
        # Whatever the arrival order, the newest version wins and an older one is ignored.
        assert stored == max(parse_epos(w.body).order.version for w in wires)
        swapped += applied == ["order.updated"]
        cancel = enc.encode_cancel(o, sim[o.retailer_id], None)
        assert cancel is not None and epos_action(parse_epos(cancel.body)) is EposAction.CANCEL
    assert swapped > 0  # the out-of-order case was exercised


# --- bad input -----------------------------------------------------------------------------------------


@cache
def rest_body() -> dict[str, Any]:
    orders, sim, _ = world("rest")
    (wire,) = Encoders(CLOCK).for_channel("rest").encode_order(orders[0], sim[orders[0].retailer_id])
    doc: dict[str, Any] = json.loads(wire.body)
    return doc


def mutate(path: str, value: Any, doc: dict[str, Any] | None = None, delete: bool = False) -> bytes:
    out = json.loads(json.dumps(doc or rest_body()))
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    return json.dumps(out).encode()


def rest_errors(body: bytes | str) -> list[tuple[str, str]]:
    with pytest.raises(IntakeInvalid) as err:
        parse_rest(body)
    return [(e.field, e.message) for e in err.value.errors]


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        (b"{not json", "(body)", "JSON"),
        (b"[]", "(body)", "object"),
        (mutate("parcel.weight_g", "940"), "parcel.weight_g", "integer"),  # strict: no coercion
        (mutate("parcel.weight_g", 0), "parcel.weight_g", "greater than 0"),
        (mutate("parcel.size", "XXL"), "parcel.size", "'S', 'M', 'L' or 'XL'"),
        (mutate("dropoff.address.lat", "51.5"), "dropoff.address.lat", "number"),
        (mutate("dropoff.address.lat", 151.5), "dropoff.address.lat", "less than or equal to 90"),
        (mutate("dropoff.address.postcode", "12345"), "dropoff.address.postcode", "not a UK postcode"),
        (mutate("dropoff.address.lines", ["a", "b", "c"]), "dropoff.address.lines", "at most 2"),
        (mutate("dropoff.address.lines", []), "dropoff.address.lines", "at least 1"),
        (mutate("recipient.phone", "07700 900786"), "recipient.phone", "international"),
        (mutate("recipient.email", "ben"), "recipient.email", "e-mail"),
        (mutate("basket.currency", "gbp"), "basket.currency", "pattern"),
        (mutate("basket.amount_minor", -5), "basket.amount_minor", "greater than or equal to 0"),
        (mutate("reference", "  "), "reference", "blank"),
        (mutate("pickup.window.end", "2000-01-01T00:00:00Z"), "pickup.window", "before its end"),
        (mutate("pickup.window.start", "2026-11-18T11:17:40"), "pickup.window.start", "timezone"),
        (mutate("pickup.window.start", "soon"), "pickup.window.start", "datetime"),
        (mutate("surprise", 1), "surprise", "Extra inputs"),
        (mutate("dropoff.address.flat", "4"), "dropoff.address.flat", "Extra inputs"),
        (mutate("items.0.quantity", 0), "items.0.quantity", "greater than or equal to 1"),
        (mutate("recipient", None, delete=True), "recipient", "Field required"),
    ],
)
def test_rest_bad_input_names_the_field(body: bytes, field: str, needle: str) -> None:
    errors = rest_errors(body)
    assert any(f == field and needle in m for f, m in errors), errors


def test_rest_reports_every_bad_field_at_once_and_formats_for_422() -> None:
    body = json.loads(mutate("parcel.size", "XXL"))
    body["dropoff"]["address"]["postcode"] = "nope"
    with pytest.raises(IntakeInvalid) as err:
        parse_rest(json.dumps(body))
    wire = err.value.wire()
    assert sorted(e["field"] for e in wire["errors"]) == ["dropoff.address.postcode", "parcel.size"]
    assert all(set(e) == {"field", "message"} for e in wire["errors"])


def test_rest_dropoff_window_ending_before_pickup_is_refused() -> None:
    body = mutate("dropoff.window", {"start": "2000-01-01T00:00:00Z", "end": "2000-01-01T01:00:00Z"})
    assert rest_errors(body) == [
        ("dropoff.window.end", "dropoff window ends before the pickup window starts")
    ]


def test_rest_unknown_store_and_foreign_currency() -> None:
    _, _, book = world("rest")
    retailer = book.retailers[0]
    with pytest.raises(UnknownStore):
        normalise_rest(parse_rest(mutate("pickup.store_id", "r99-s9")), retailer)
    with pytest.raises(IntakeInvalid, match=r"basket\.currency"):
        normalise_rest(parse_rest(mutate("basket.currency", "EUR")), retailer)


def test_postcode_and_phone_are_normalised() -> None:
    req = parse_rest(mutate("dropoff.address.postcode", " nw103yb "))
    assert req.dropoff.address.postcode == "NW10 3YB"


@cache
def shopify_wire() -> tuple[bytes, str, Any]:
    orders, sim, book = world("shopify")
    (wire,) = Encoders(CLOCK).for_channel("shopify").encode_order(orders[0], sim[orders[0].retailer_id])
    retailer = book.by_shop_domain(wire.headers["X-Shopify-Shop-Domain"])
    return wire.body, wire.headers["X-Shopify-Hmac-Sha256"], retailer


def test_shopify_bad_hmac_is_refused() -> None:
    body, header, retailer = shopify_wire()
    secret = retailer.webhook_secret
    assert verify_shopify_hmac(body, header, secret)
    assert not verify_shopify_hmac(body + b" ", header, secret)  # any byte changed
    assert not verify_shopify_hmac(body.replace(b"GBP", b"EUR"), header, secret)
    assert not verify_shopify_hmac(body, header, secret + "x")  # wrong shop secret
    assert not verify_shopify_hmac(body, None, secret) and not verify_shopify_hmac(body, "", secret)
    assert not verify_shopify_hmac(body, "not base64 at all é", secret)
    assert not verify_epos_signature(body, sign_body(body, "other"), secret)


def test_shopify_missing_note_attributes_and_bad_price() -> None:
    body, _, retailer = shopify_wire()
    doc = json.loads(body)
    doc["note_attributes"] = [n for n in doc["note_attributes"] if n["name"] != "parcel_size"]
    doc["note_attributes"][0]["value"] = "whenever"
    doc["total_price"] = "22.471"
    with pytest.raises(IntakeInvalid) as err:
        normalise_shopify(parse_shopify(json.dumps(doc)), retailer)
    fields = {e.field for e in err.value.errors}
    assert fields == {"note_attributes", "note_attributes.pickup_window_start", "total_price"}


def test_shopify_wrong_types_and_unknown_location() -> None:
    body, _, retailer = shopify_wire()
    doc = json.loads(body)
    with pytest.raises(IntakeInvalid, match=r"shipping_address\.latitude"):
        parse_shopify(
            json.dumps({**doc, "shipping_address": {**doc["shipping_address"], "latitude": "north"}})
        )
    with pytest.raises(IntakeInvalid, match="id"):
        parse_shopify(json.dumps({**doc, "id": "abc"}))
    assert parse_shopify(json.dumps({**doc, "extra_provider_field": {"x": 1}})).name == doc["name"]  # ignored
    with pytest.raises(UnknownStore):
        normalise_shopify(parse_shopify(json.dumps({**doc, "location_id": "zz-s1"})), retailer)


@cache
def epos_doc() -> tuple[dict[str, Any], Any]:
    orders, sim, book = world("epos")
    wire = Encoders(CLOCK).for_channel("epos").encode_order(orders[0], sim[orders[0].retailer_id])[0]
    doc: dict[str, Any] = json.loads(wire.body)
    return doc, book.by_merchant_id(wire.headers["X-Epos-Merchant-Id"])


def test_epos_pickup_only_is_ignored_and_delivery_without_details_refused() -> None:
    doc, retailer = epos_doc()
    pickup = json.loads(json.dumps(doc))
    f = pickup["data"]["object"]["order"]["fulfillments"][0]
    f["type"], f["delivery_details"] = "PICKUP", None
    ev = parse_epos(json.dumps(pickup))
    assert epos_action(ev) is EposAction.IGNORE and normalise_epos(ev, retailer) is None
    f["type"] = "DELIVERY"
    with pytest.raises(IntakeInvalid, match=r"data\.object\.order\.fulfillments\.0"):
        parse_epos(json.dumps(pickup))


def test_epos_bad_types_and_states() -> None:
    doc, _ = epos_doc()
    bad = json.loads(json.dumps(doc))
    order = bad["data"]["object"]["order"]
    order["version"] = "two"
    order["fulfillments"][0]["state"] = "LOST"
    bad["type"] = "order.deleted"
    with pytest.raises(IntakeInvalid) as err:
        parse_epos(json.dumps(bad))
    fields = {e.field for e in err.value.errors}
    assert {"type", "data.object.order.version", "data.object.order.fulfillments.0.state"} <= fields


def test_epos_version_rule() -> None:
    assert epos_is_newer(1, None) and epos_is_newer(2, 1)
    assert not epos_is_newer(1, 2) and not epos_is_newer(2, 2)


def test_decimal_to_minor() -> None:
    assert decimal_to_minor("0.05") == 5 and decimal_to_minor("100") == 10000
    for bad in ("-1.00", "1.234", "abc", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            decimal_to_minor(bad)


# --- retailers file -----------------------------------------------------------------------------------------


def retailers_doc() -> dict[str, Any]:
    _, sim, _ = world("rest")
    return retailers_document(SEED, list(sim.values()))


def test_retailers_file_unknown_field_is_named() -> None:
    doc = retailers_doc()
    doc["retailers"][1]["rules"]["max_distanse_km"] = 3.0
    with pytest.raises(RetailersError, match=r"retailers\.1\.rules\.max_distanse_km: Extra inputs"):
        parse_retailers(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["retailers"][0]["rules"].update(selection="random"), "rules.selection"),
        (lambda d: d["retailers"][0]["rules"].update(allowed_vehicles=["rocket"]), "allowed_vehicles"),
        (lambda d: d["retailers"][0].update(stores=[]), "stores"),
        (lambda d: d["retailers"][1].update(api_key=d["retailers"][0]["api_key"]), "api_key must be unique"),
        (lambda d: d.update(version=2), "version"),
    ],
)
def test_retailers_file_errors(change: Any, needle: str) -> None:
    doc = retailers_doc()
    change(doc)
    with pytest.raises(RetailersError, match=needle):
        parse_retailers(doc)
    with pytest.raises(RetailersError, match="not JSON"):
        parse_retailers(b"{")


# --- idempotency -------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


def reorder(v: Any, rnd: Any) -> Any:
    if isinstance(v, dict):
        keys = list(v)
        rnd.shuffle(keys)
        return {k: reorder(v[k], rnd) for k in keys}
    if isinstance(v, list):
        return [reorder(x, rnd) for x in v]
    return v


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=6), json_values, max_size=6),
    st.randoms(use_true_random=False),
    st.booleans(),
)
def test_fingerprint_is_stable_under_key_order_and_whitespace(
    doc: dict[str, Any], rnd: Any, indent: bool
) -> None:
    other = json.dumps(reorder(doc, rnd), indent=2 if indent else None)
    assert idempotency_fingerprint(json.dumps(doc).encode()) == idempotency_fingerprint(other)
    assert idempotency_fingerprint(doc) == idempotency_fingerprint(other.encode())


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=6), st.data())
def test_fingerprint_changes_with_any_value(doc: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(doc)))
    changed = {**doc, key: [doc[key], "changed"]}
    assert idempotency_fingerprint(doc) != idempotency_fingerprint(changed)


def test_idempotency_409_rule() -> None:
    body = rest_body()
    f1 = idempotency_fingerprint(json.dumps(body))
    stored = StoredKey(f1, "dlv_7")
    assert idempotency_check(None, f1) is IdempotencyVerdict.NEW
    assert (
        idempotency_check(stored, idempotency_fingerprint(json.dumps(body, indent=1)))
        is IdempotencyVerdict.REPLAY
    )
    assert (
        idempotency_check(stored, idempotency_fingerprint(mutate("parcel.size", "M")))
        is IdempotencyVerdict.CONFLICT
    )
    assert idempotency_fingerprint(b"{not json") == idempotency_fingerprint(b"{not json")


def test_normalised_requests_round_trip_as_json_and_share_keys_across_events() -> None:
    orders, sim, book = world("epos")
    enc = Encoders(CLOCK).for_channel("epos")
    for o in orders[:10]:
        retailer = book.by_id(o.retailer_id)
        assert retailer is not None
        reqs = [normalise_epos(parse_epos(w.body), retailer) for w in enc.encode_order(o, sim[o.retailer_id])]
        cancel = enc.encode_cancel(o, sim[o.retailer_id], None)
        assert cancel is not None
        reqs.append(normalise_epos(parse_epos(cancel.body), retailer))
        keys = {r.order_key for r in reqs if r is not None}
        assert len(keys) == 1 and len({delivery_id_for(k) for k in keys}) == 1
        for r in reqs:
            assert r is not None and DeliveryRequest.model_validate_json(r.model_dump_json()) == r


def test_every_simulated_order_has_an_eligible_simulator_courier() -> None:
    market = load_marketplace()
    sim_couriers = {c.name for c in default_couriers()}
    for channel in ("rest", "shopify", "epos"):
        orders, _, book = world(channel)
        for o in orders:
            retailer = book.by_id(o.retailer_id)
            assert retailer is not None
            ids = {c.id for c in eligible(market, LatLon(lat=o.pickup.point.lat, lon=o.pickup.point.lon),
                                          LatLon(lat=o.dropoff.point.lat, lon=o.dropoff.point.lon), o.size,
                                          o.weight_g, retailer.rules.allowed_vehicles)}  # fmt: skip
            assert ids & sim_couriers, (o.ref, o.size, o.weight_g)
