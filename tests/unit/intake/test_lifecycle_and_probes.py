"""Cancel over REST against the lifecycle, the tracking hook, racing replicas, probes, secrets in logs."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from system.domain.intake import idempotency_fingerprint, normalise_rest, parse_rest
from system.domain.lifecycle import Event
from system.domain.retailers import parse_retailers
from system.intake.app import build_app
from system.intake.settings import IntakeSettings
from system.intake.store import IntakeStore
from system.platform.retailers import RetailerRegistry

from .conftest import Intake, World


async def _create(intake: Intake, world: World) -> tuple[str, dict[str, str]]:
    (req,) = world.requests(world.order("rest"))
    _, body = await intake.send(req)
    return str(body["id"]), {"Authorization": req.headers["Authorization"]}


async def test_cancel_then_cancel_again_then_unknown(intake: Intake, world: World) -> None:
    delivery_id, auth = await _create(intake, world)
    cancel = json.dumps({"reason": "customer_request"})
    headers = {**auth, "Idempotency-Key": "c1", "Content-Type": "application/json"}
    resp = await intake.client.post(f"/v1/deliveries/{delivery_id}/cancel", data=cancel, headers=headers)
    assert resp.status == 202 and await resp.json() == {"id": delivery_id, "state": "cancelled"}
    resp = await intake.client.post(f"/v1/deliveries/{delivery_id}/cancel", data=cancel, headers=headers)
    assert resp.status == 202
    assert intake.count("SELECT COUNT(*) FROM outbox WHERE message_type = 'order.cancel_requested'") == 1
    resp = await intake.client.post("/v1/deliveries/dlv_nope/cancel", data=cancel, headers=headers)
    assert resp.status == 404
    resp = await intake.client.post(
        f"/v1/deliveries/{delivery_id}/cancel", data=b"{bad", headers={**headers, "Idempotency-Key": "c2"}
    )
    assert resp.status == 422


async def test_cancel_after_pickup_is_409_and_get_shows_the_tracking_updates(
    intake: Intake, world: World
) -> None:
    delivery_id, auth = await _create(intake, world)
    store = intake.store
    await store.apply_lifecycle_event(delivery_id, Event.QUOTED)
    await store.apply_lifecycle_event(delivery_id, Event.BOOKED, courier="dashly", courier_job_id="j1")
    await store.apply_lifecycle_event(
        delivery_id,
        Event.COURIER_ASSIGNED,
        seq=2,
        driver_id="d7",
        driver_vehicle="bike",
        eta="2026-11-18T11:45:55Z",
    )
    await store.apply_lifecycle_event(delivery_id, Event.PICKED_UP, seq=4)
    # A late, out-of-order status is rejected, never applied.
    assert await store.apply_lifecycle_event(delivery_id, Event.COURIER_ASSIGNED, seq=3) is not None
    headers = {**auth, "Idempotency-Key": "c1"}
    resp = await intake.client.post(
        f"/v1/deliveries/{delivery_id}/cancel", data=b'{"reason": "customer_request"}', headers=headers
    )
    body = await resp.json()
    assert resp.status == 409 and body["id"] == delivery_id and body["state"] == "picked_up"
    resp = await intake.client.get(f"/v1/deliveries/{delivery_id}", headers=auth)
    doc = await resp.json()
    assert doc["state"] == "picked_up"
    assert [h["state"] for h in doc["history"]] == [
        "requested",
        "quoted",
        "booked",
        "courier_assigned",
        "picked_up",
    ]
    assert doc["courier"] == {"name": "dashly", "job_id": "j1"}
    assert doc["driver"] == {"id": "d7", "vehicle": "bike"} and doc["eta"] == "2026-11-18T11:45:55Z"


async def test_two_replicas_racing_on_one_order_make_one_row(tmp_path: Path, world: World) -> None:
    """Two stores on one file (two replicas) submit the same order at once: one 202, one 200, one row."""
    db = tmp_path / "intake.db"
    stores = [IntakeStore(db, synchronous="NORMAL") for _ in range(2)]
    for s in stores:
        await s.open()
    book = parse_retailers(world.path.read_bytes())
    answers = []
    for n in range(20):
        (req,) = world.requests(world.order("rest", n))
        retailer = book.by_api_key(req.headers["Authorization"].removeprefix("Bearer "))
        assert retailer is not None
        delivery = normalise_rest(parse_rest(req.body), retailer)
        fp = idempotency_fingerprint(req.body)
        answers.append(
            await asyncio.gather(
                *(s.submit_rest(delivery, req.headers["Idempotency-Key"], fp) for s in stores)
            )
        )
    for s in stores:
        await s.close()
    for pair in answers:
        assert sorted(a.status for a in pair) == [200, 202]
        assert pair[0].body["id"] == pair[1].body["id"]
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 20
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 20


async def test_probes(intake: Intake) -> None:
    resp = await intake.client.get("/healthz")
    assert resp.status == 200
    resp = await intake.client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["status"] == "ready"


async def test_missing_retailers_file_is_not_ready_and_orders_get_503(tmp_path: Path, world: World) -> None:
    settings = IntakeSettings(run_dir=tmp_path, retailers_file=tmp_path / "absent.json")
    store = IntakeStore(settings.database, synchronous="NORMAL")
    await store.open()
    app = build_app(settings, store, RetailerRegistry(settings.retailers_path))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/readyz")
        assert resp.status == 503
        (req,) = world.requests(world.order("rest"))
        resp = await client.post(req.path, data=req.body, headers=req.headers)
        assert resp.status == 503 and "error" in await resp.json()
        # The file appears (the simulator writes it late): while nothing is loaded, every request looks.
        (tmp_path / "absent.json").write_bytes(world.path.read_bytes())
        resp = await client.post(req.path, data=req.body, headers=req.headers)
        assert resp.status == 202
    await store.close()


async def test_secrets_never_reach_the_logs(
    intake: Intake, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for channel in ("rest", "shopify", "epos"):
        for req in world.requests(world.order(channel)):
            await intake.send(req)
            await intake.send(req, Authorization="Bearer wrong")
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "order accepted" in text
    for r in world.retailers:
        assert r.credentials.api_key not in text
        assert r.credentials.webhook_secret not in text
