"""REST intake: acceptance, idempotency (replay and 409), and every kind of bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from simulator.channels.base import WireRequest
from system.intake.app import build_app, slow_release_middleware
from system.intake.settings import IntakeSettings
from system.intake.store import IntakeStore
from system.platform.retailers import RetailerRegistry

from .conftest import Intake, World


def _with_body(req: WireRequest, body: bytes) -> WireRequest:
    return WireRequest(req.kind, req.method, req.path, req.headers, body, req.key)


async def test_accepts_and_writes_delivery_and_outbox_row_in_one_go(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("rest"))
    status, body = await intake.send(req)
    assert status == 202 and body["state"] == "requested"
    delivery_id = body["id"]
    assert isinstance(delivery_id, str) and delivery_id.startswith("dlv_")
    assert intake.rows("SELECT state, reference FROM deliveries WHERE id = ?", delivery_id) == [
        ("requested", world.order("rest").ref)
    ]
    outbox = intake.rows("SELECT message_id, exchange, routing_key, status FROM outbox")
    assert outbox == [(f"{delivery_id}:order.created", "orders", "order.created", "pending")]
    payload = json.loads(str(intake.rows("SELECT CAST(body AS TEXT) FROM outbox")[0][0]))
    assert payload["delivery_id"] == delivery_id and payload["order_reference"] == world.order("rest").ref


async def test_same_key_same_body_is_the_same_delivery(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("rest"))
    first = await intake.send(req)
    # The same JSON with other whitespace and key order is the same body.
    respaced = json.dumps(dict(reversed(list(json.loads(req.body).items()))), indent=2).encode()
    again = await intake.send(_with_body(req, respaced))
    assert first[0] == 202 and again == (200, {"id": first[1]["id"], "state": "requested"})
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 1
    assert intake.count("SELECT COUNT(*) FROM outbox") == 1


async def test_same_key_other_body_is_409_with_the_original_id(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("rest"))
    _, first = await intake.send(req)
    doc = json.loads(req.body)
    doc["parcel"]["weight_g"] += 1
    status, body = await intake.send(_with_body(req, json.dumps(doc).encode()))
    assert status == 409 and body == {"error": "idempotency conflict", "id": first["id"]}
    assert intake.count("SELECT COUNT(*) FROM outbox") == 1


async def test_same_reference_under_a_new_key(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("rest"))
    _, first = await intake.send(req)
    status, body = await intake.send(req, **{"Idempotency-Key": "another-key"})
    assert (status, body["id"]) == (200, first["id"])
    doc = json.loads(req.body)
    doc["parcel"]["weight_g"] += 1
    status, body = await intake.send(
        _with_body(req, json.dumps(doc).encode()), **{"Idempotency-Key": "third"}
    )
    assert status == 409 and body["id"] == first["id"]


async def test_malformed_json_is_422(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("rest"))
    status, body = await intake.send(_with_body(req, b'{"reference": "s1-1",'))
    assert status == 422 and body["errors"][0]["field"] == "(body)"
    status, body = await intake.send(_with_body(req, b"\xff\xfe not utf-8"))
    assert status == 422
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 0


async def test_wrong_types_name_each_field(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("rest"))
    doc = json.loads(req.body)
    doc["parcel"]["weight_g"] = "940"
    doc["dropoff"]["address"]["postcode"] = "NOT A POSTCODE"
    doc["unexpected"] = 1
    status, body = await intake.send(_with_body(req, json.dumps(doc).encode()))
    assert status == 422
    fields = {e["field"] for e in body["errors"]}
    assert {"parcel.weight_g", "dropoff.address.postcode", "unexpected"} <= fields
    status, body = await intake.send(_with_body(req, b"[1, 2, 3]"))
    assert status == 422


async def test_unknown_or_missing_api_key_is_401(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("rest"))
    assert (await intake.send(req, Authorization="Bearer sk_sim_not_a_key"))[0] == 401
    assert (await intake.send(req, Authorization=""))[0] == 401
    assert (await intake.send(req, Authorization="Basic Zm9vOmJhcg=="))[0] == 401
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 0


async def test_missing_idempotency_key_is_422(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("rest"))
    status, body = await intake.send(req, **{"Idempotency-Key": ""})
    assert status == 422 and body["errors"] == [{"field": "Idempotency-Key", "message": "header required"}]


async def test_unknown_store_is_404(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("rest"))
    doc = json.loads(req.body)
    doc["pickup"]["store_id"] = "r99-s1"
    status, body = await intake.send(_with_body(req, json.dumps(doc).encode()))
    assert status == 404 and "r99-s1" in str(body["error"])


async def test_oversize_body_is_413_json(intake: Intake, world: World) -> None:
    (req,) = world.requests(world.order("rest"))
    doc = json.loads(req.body)
    doc["pad"] = "x" * (80 * 1024)
    status, body = await intake.send(_with_body(req, json.dumps(doc).encode()))
    assert status == 413 and "error" in body
    # The process is fine: the next order goes through.
    assert (await intake.send(req))[0] == 202


async def test_unknown_route_and_method_answer_json(intake: Intake) -> None:
    resp = await intake.client.get("/v1/nothing")
    assert resp.status == 404 and "error" in await resp.json()
    resp = await intake.client.put("/v1/deliveries")
    assert resp.status == 405 and "error" in await resp.json()


async def test_get_returns_state_and_history_to_the_owner_only(intake: Intake, world: World) -> None:
    order = world.order("rest")
    (req,) = world.requests(order)
    _, created = await intake.send(req)
    auth = {"Authorization": req.headers["Authorization"]}
    resp = await intake.client.get(f"/v1/deliveries/{created['id']}", headers=auth)
    doc = await resp.json()
    assert resp.status == 200
    assert doc["state"] == "requested" and doc["reference"] == order.ref
    assert [h["state"] for h in doc["history"]] == ["requested"]
    assert doc["courier"] is None and doc["driver"] is None and doc["eta"] is None
    other = next(r for r in world.retailers if r.id != order.retailer_id)
    resp = await intake.client.get(
        f"/v1/deliveries/{created['id']}", headers={"Authorization": f"Bearer {other.credentials.api_key}"}
    )
    assert resp.status == 404
    resp = await intake.client.get("/v1/deliveries/dlv_unknown", headers=auth)
    assert resp.status == 404
    resp = await intake.client.get(f"/v1/deliveries/{created['id']}")
    assert resp.status == 401


async def test_the_test_only_slow_release_holds_every_order_answer_back(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DRILL_INTAKE_TEST_ANSWER_DELAY_S (scenarios/slow-intake.toml): each POST waits first; reads do not.
    The wait is recorded, not timed (no timed tests): the drill's latency objectives must catch it."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float) -> None:
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("system.intake.app.asyncio.sleep", recording_sleep)
    settings = IntakeSettings(run_dir=tmp_path, retailers_file=world.path, sqlite_synchronous="NORMAL",
                              test_answer_delay_s=2.0)  # fmt: skip
    store = IntakeStore(settings.database, synchronous="NORMAL")
    await store.open()
    try:
        async with TestClient(TestServer(build_app(settings, store, RetailerRegistry(world.path)))) as client:
            (req,) = world.requests(world.order("rest"))
            resp = await client.request(req.method, req.path, data=req.body, headers=req.headers)
            assert resp.status == 202 and waits == [2.0]
            assert (await client.get("/healthz")).status == 200 and waits == [2.0]
    finally:
        await store.close()
    # Off by default: no middleware at all.
    plain = build_app(IntakeSettings(run_dir=tmp_path), store, RetailerRegistry(world.path))
    assert slow_release_middleware not in plain.middlewares
