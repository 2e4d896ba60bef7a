"""The wire contract: each channel's headers, body fields and signatures (docs/intake-api.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from itertools import islice

from simulator.channels import Encoders
from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.orders import OrderGenerator, OrderSpec
from simulator.world import Retailer

CLOCK = SimClock(epoch=1_800_000_000.0)


def world(channel: str, **webhooks: float) -> tuple[list[OrderSpec], dict[str, Retailer]]:
    mix = {"rest": 0.0, "shopify": 0.0, "epos": 0.0, channel: 1.0}
    sc = Scenario.model_validate({"arrivals": {"rate": 10.0}, "world": {"retailers": 3, "channel_mix": mix},
                                  "webhooks": webhooks})  # fmt: skip
    gen = OrderGenerator(sc, 21)
    return list(islice(gen, 40)), {r.id: r for r in gen.retailers}


def sig(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_rest_request() -> None:
    orders, rs = world("rest")
    o = orders[0]
    (req,) = Encoders(CLOCK).for_channel("rest").encode_order(o, rs[o.retailer_id])
    assert req.path == "/v1/deliveries" and req.method == "POST"
    assert req.headers["Authorization"] == f"Bearer {rs[o.retailer_id].credentials.api_key}"
    assert req.headers["Idempotency-Key"] == req.key
    body = json.loads(req.body)
    assert body["reference"] == o.ref
    assert set(body) == {"reference", "pickup", "dropoff", "recipient", "parcel", "basket", "items"}
    assert set(body["dropoff"]["address"]) == {"lines", "city", "postcode", "lat", "lon"}
    assert body["basket"] == {"amount_minor": o.basket_minor, "currency": "GBP"}
    assert body["pickup"]["window"]["start"] < body["pickup"]["window"]["end"]
    assert body["dropoff"]["window"]["start"].endswith("Z")
    # Same order → same key (a retry is recognisable); another order → another key.
    (again,) = Encoders(CLOCK).for_channel("rest").encode_order(o, rs[o.retailer_id])
    (other,) = Encoders(CLOCK).for_channel("rest").encode_order(orders[1], rs[orders[1].retailer_id])
    assert again.key == req.key != other.key
    cancel = Encoders(CLOCK).for_channel("rest").encode_cancel(o, rs[o.retailer_id], "dlv_9")
    assert cancel is not None and cancel.path == "/v1/deliveries/dlv_9/cancel"
    assert Encoders(CLOCK).for_channel("rest").encode_cancel(o, rs[o.retailer_id], None) is None


def test_shopify_webhook_is_signed_with_the_shop_secret() -> None:
    orders, rs = world("shopify")
    for o in orders:
        r = rs[o.retailer_id]
        (req,) = Encoders(CLOCK).for_channel("shopify").encode_order(o, r)
        assert req.headers["X-Shopify-Hmac-Sha256"] == sig(r.credentials.webhook_secret, req.body)
        assert req.headers["X-Shopify-Topic"] == "orders/create"
        assert req.headers["X-Shopify-Shop-Domain"] == r.credentials.shop_domain
        assert req.headers["X-Shopify-Webhook-Id"] == req.key
        body = json.loads(req.body)
        assert body["name"] == o.ref and isinstance(body["id"], int)
        assert body["total_price"] == f"{o.basket_minor / 100:.2f}"
        assert body["line_items"] and body["shipping_address"]["zip"] == o.dropoff.postcode
    # A tampered body no longer verifies.
    assert sig(r.credentials.webhook_secret, req.body + b" ") != req.headers["X-Shopify-Hmac-Sha256"]


def test_epos_events_order_and_out_of_order() -> None:
    orders, rs = world("epos", update_share=1.0, out_of_order_share=0.5)
    seen_ooo = seen_in_order = False
    for o in orders:
        r = rs[o.retailer_id]
        reqs = Encoders(CLOCK).for_channel("epos").encode_order(o, r)
        docs = [json.loads(q.body) for q in reqs]
        types = [d["type"] for d in docs]
        assert sorted(types) == ["order.created", "order.updated"]
        if o.out_of_order:
            seen_ooo = True
            assert types == ["order.updated", "order.created"]
        else:
            seen_in_order = True
            assert types == ["order.created", "order.updated"]
        for q, d in zip(reqs, docs, strict=True):
            assert q.headers["X-Epos-Signature"] == sig(r.credentials.webhook_secret, q.body)
            assert d["event_id"] == q.key and d["merchant_id"] == r.credentials.merchant_id
            f = d["data"]["object"]["order"]["fulfillments"][0]
            assert f["type"] == "DELIVERY" and f["state"] in {"PROPOSED", "RESERVED"}
        assert len({q.key for q in reqs}) == 2
    assert seen_ooo and seen_in_order
    cancel = Encoders(CLOCK).for_channel("epos").encode_cancel(orders[0], rs[orders[0].retailer_id], None)
    assert cancel is not None
    assert json.loads(cancel.body)["data"]["object"]["order"]["fulfillments"][0]["state"] == "CANCELED"
