"""Shopify and ePOS webhooks: signatures on the raw body, dedupe, versions, PICKUP, bad input."""

from __future__ import annotations

import json

from simulator.channels.base import WireRequest, hmac_b64

from .conftest import Intake, World


def _resigned(req: WireRequest, body: bytes, secret: str, header: str) -> WireRequest:
    return WireRequest(
        req.kind, req.method, req.path, {**req.headers, header: hmac_b64(secret, body)}, body, req.key
    )


# -- Shopify ----------------------------------------------------------------------------------------------


async def test_shopify_create_then_repeated_webhook_id_is_200_and_no_second_order(
    intake: Intake, world: World
) -> None:
    (req,) = world.requests(world.order("shopify"))
    status, first = await intake.send(req)
    assert status == 202 and first["state"] == "requested"
    again = await intake.send(req)
    assert again == (200, {"id": first["id"], "state": "requested"})
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 1
    assert intake.count("SELECT COUNT(*) FROM outbox") == 1


async def test_shopify_bad_hmac_is_401(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("shopify"))
    assert (await intake.send(req, **{"X-Shopify-Hmac-Sha256": hmac_b64("not-the-secret", req.body)}))[
        0
    ] == 401
    assert (await intake.send(req, **{"X-Shopify-Hmac-Sha256": ""}))[0] == 401
    # The HMAC is of the raw bytes: the same JSON re-serialised no longer matches.
    respaced = json.dumps(json.loads(req.body), indent=1).encode()
    tampered = WireRequest(req.kind, req.method, req.path, req.headers, respaced, req.key)
    assert (await intake.send(tampered))[0] == 401
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 0


async def test_shopify_unknown_or_missing_shop(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("shopify"))
    assert (await intake.send(req, **{"X-Shopify-Shop-Domain": "nobody.myshopify.com"}))[0] == 404
    assert (await intake.send(req, **{"X-Shopify-Shop-Domain": ""}))[0] == 401


async def test_shopify_signed_garbage_is_422(intake: Intake, world: World) -> None:
    order = world.order("shopify")
    (req,) = world.requests(order)
    secret = world.retailer(order).credentials.webhook_secret
    status, body = await intake.send(_resigned(req, b"{not json", secret, "X-Shopify-Hmac-Sha256"))
    assert status == 422 and "errors" in body
    doc = json.loads(req.body)
    doc["total_weight"] = "heavy"
    status, body = await intake.send(
        _resigned(req, json.dumps(doc).encode(), secret, "X-Shopify-Hmac-Sha256")
    )
    assert status == 422 and body["errors"][0]["field"] == "total_weight"


async def test_shopify_other_topic_is_acknowledged_and_ignored(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("shopify"))
    assert await intake.send(req, **{"X-Shopify-Topic": "orders/paid"}) == (
        200,
        {"id": None, "state": "ignored"},
    )
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 0


async def test_shopify_cancelled_cancels_and_emits_a_cancel_message(intake: Intake, world: World) -> None:
    order = world.order("shopify")
    (req,) = world.requests(order)
    _, first = await intake.send(req)
    status, body = await intake.send(world.cancel(order))
    assert (status, body) == (200, {"id": first["id"], "state": "cancelled"})
    types = [r[0] for r in intake.rows("SELECT message_type FROM outbox ORDER BY id")]
    assert types == ["order.created", "order.cancel_requested"]


async def test_shopify_cancel_before_create_still_one_delivery(intake: Intake, world: World) -> None:
    order = world.order("shopify")
    status, body = await intake.send(world.cancel(order))
    assert status == 202 and body["state"] == "cancelled"
    (req,) = world.requests(order)
    assert await intake.send(req) == (200, {"id": body["id"], "state": "cancelled"})
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 1


# -- ePOS -------------------------------------------------------------------------------------------------


async def test_epos_created_then_updated_then_duplicate(intake: Intake, world: World) -> None:
    created, updated = world.requests(world.order("epos", update=True, out_of_order=False))
    status, first = await intake.send(created)
    assert status == 202
    assert await intake.send(updated) == (200, {"id": first["id"], "state": "requested"})
    assert await intake.send(updated) == (200, {"id": first["id"], "state": "requested"})
    assert intake.rows("SELECT source_version FROM deliveries") == [(2,)]
    types = [r[0] for r in intake.rows("SELECT message_type FROM outbox ORDER BY id")]
    assert types == ["order.created", "order.updated"]


async def test_epos_update_before_create_creates_once_and_keeps_the_newer_version(
    intake: Intake, world: World
) -> None:
    updated, created = world.requests(world.order("epos", update=True, out_of_order=True))
    assert json.loads(updated.body)["type"] == "order.updated"
    status, first = await intake.send(updated)
    assert status == 202
    assert await intake.send(created) == (200, {"id": first["id"], "state": "requested"})
    assert intake.rows("SELECT source_version FROM deliveries") == [(2,)]
    assert intake.count("SELECT COUNT(*) FROM outbox WHERE message_type = 'order.created'") == 1
    assert intake.count("SELECT COUNT(*) FROM outbox") == 1  # the stale v1 emitted nothing


async def test_epos_pickup_is_ignored(intake: Intake, world: World) -> None:
    order = world.order("epos")
    (req,) = world.requests(order)
    doc = json.loads(req.body)
    doc["data"]["object"]["order"]["fulfillments"][0]["type"] = "PICKUP"
    secret = world.retailer(order).credentials.webhook_secret
    pickup = _resigned(req, json.dumps(doc).encode(), secret, "X-Epos-Signature")
    assert await intake.send(pickup) == (200, {"id": None, "state": "ignored"})
    assert await intake.send(pickup) == (200, {"id": None, "state": "ignored"})
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 0
    assert intake.count("SELECT COUNT(*) FROM outbox") == 0


async def test_epos_bad_signature_unknown_merchant_and_mismatch(intake: Intake, world: World) -> None:
    order = world.order("epos")
    (req,) = world.requests(order)
    assert (await intake.send(req, **{"X-Epos-Signature": hmac_b64("nope", req.body)}))[0] == 401
    assert (await intake.send(req, **{"X-Epos-Merchant-Id": "MUNKNOWN"}))[0] == 404
    assert (await intake.send(req, **{"X-Epos-Merchant-Id": ""}))[0] == 401
    doc = json.loads(req.body)
    doc["merchant_id"] = "MSOMEONEELSE"
    secret = world.retailer(order).credentials.webhook_secret
    assert (await intake.send(_resigned(req, json.dumps(doc).encode(), secret, "X-Epos-Signature")))[0] == 401
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 0


async def test_epos_wrong_types_are_422(intake: Intake, world: World) -> None:
    order = world.order("epos")
    (req,) = world.requests(order)
    doc = json.loads(req.body)
    doc["data"]["object"]["order"]["version"] = "two"
    secret = world.retailer(order).credentials.webhook_secret
    status, body = await intake.send(_resigned(req, json.dumps(doc).encode(), secret, "X-Epos-Signature"))
    assert status == 422 and body["errors"][0]["field"] == "data.object.order.version"
    status, body = await intake.send(_resigned(req, b'{"merchant_id": ', secret, "X-Epos-Signature"))
    assert status == 422 and body["errors"][0]["field"] == "(body)"
    doc = json.loads(req.body)
    doc["data"]["object"]["order"]["location_id"] = "r99-s9"
    status, body = await intake.send(_resigned(req, json.dumps(doc).encode(), secret, "X-Epos-Signature"))
    assert status == 404 and "r99-s9" in str(body["error"])
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 0


async def test_epos_cancel_event(intake: Intake, world: World) -> None:
    order = world.order("epos")
    (req,) = world.requests(order)
    _, first = await intake.send(req)
    assert await intake.send(world.cancel(order)) == (200, {"id": first["id"], "state": "cancelled"})
    # A late created (v1) after the cancel (v3) changes nothing.
    assert await intake.send(req) == (200, {"id": first["id"], "state": "cancelled"})
    assert intake.rows("SELECT state, source_version FROM deliveries") == [("cancelled", 3)]
