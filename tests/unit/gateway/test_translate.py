"""The gateway's dialect adapters: courier messages (as the simulator shapes them) → canonical messages;
everything that cannot be translated is refused with a reason, never guessed."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from typing import Any

import pytest

import system.gateway.decide
from simulator.courier_desk import dialect_payload
from simulator.couriers import DIALECT_BOOKED, DIALECTS, TimelineEvent
from system.domain.common import LatLon
from system.domain.lifecycle import Event
from system.gateway.handlers import decoder_for, handle
from system.gateway.settings import GatewaySettings
from system.messaging import outbox
from system.messaging.consumer import MalformedMessage
from system.messaging.db import open_db
from system.messaging.envelope import InboundMessage
from system.platform.contracts import LifecycleEvent, LocationPing, lifecycle_message
from system.platform.topology import DELIVERY_HEADER, LIFECYCLE

COURIER = {"uber": "zoomly", "doordash": "dashly", "stuart": "pedalo"}
AT = "2026-11-18T11:09:38Z"


def status(dialect: str, canonical: str, seq: int = 2, **envelope: Any) -> bytes:
    """A status body exactly as the simulator's courier desk publishes it."""
    courier, job = COURIER[dialect], f"{COURIER[dialect]}-job-77"
    name = DIALECT_BOOKED[dialect] if canonical == "booked" else DIALECTS[dialect][canonical]  # type: ignore[index]
    ev = TimelineEvent(60.0, "status", None, name, 51.5125, -0.1016)
    body: dict[str, Any] = {
        "type": "status", "courier": courier, "dialect": dialect, "delivery_id": "dlv_abc",
        "order_reference": "s42-0000001", "courier_job_id": job, "seq": seq, "at": AT,
        "message_id": f"{job}:{seq}", "status": name,
        "payload": dialect_payload(dialect, name, ev, job, "s42-0000001", AT, f"{courier}-drv-9", "bike"),
    }  # fmt: skip
    body.update(envelope)
    return json.dumps(body).encode()


def teleported() -> bytes:
    """An Uber-style status whose name (envelope and payload alike) the dialect does not define."""
    body = json.loads(status("uber", "picked_up"))
    body["status"] = body["payload"]["status"] = "teleported"
    return json.dumps(body).encode()


def location(dialect: str = "uber", **envelope: Any) -> bytes:
    body: dict[str, Any] = {
        "type": "location", "courier": COURIER[dialect], "dialect": dialect, "delivery_id": "dlv_abc",
        "order_reference": "s42-0000001", "courier_job_id": "zoomly-job-77", "seq": 5, "at": AT,
        "message_id": "zoomly-job-77:5", "location": {"lat": 51.51, "lon": -0.1},
    }  # fmt: skip
    body.update(envelope)
    return json.dumps(body).encode()


CANONICAL = [
    "booked",
    "courier_assigned",
    "picked_up",
    "in_transit",
    "delivered",
    "failed",
    "returned",
    "cancelled",
]


@pytest.mark.parametrize("dialect", ["uber", "doordash", "stuart"])
@pytest.mark.parametrize("canonical", CANONICAL)
def test_every_status_of_every_dialect_becomes_its_canonical_lifecycle_event(
    dialect: str, canonical: str
) -> None:
    ev = decoder_for(dialect)(status(dialect, canonical, seq=4))  # type: ignore[arg-type]
    assert isinstance(ev, LifecycleEvent)
    assert ev.event is Event(canonical)
    assert ev.source == "gateway" and ev.seq == 4
    assert ev.message_id == f"gw:{COURIER[dialect]}-job-77:4"
    assert (ev.delivery_id, ev.order_reference) == ("dlv_abc", "s42-0000001")
    assert (ev.courier, ev.courier_job_id) == (COURIER[dialect], f"{COURIER[dialect]}-job-77")
    assert ev.driver is not None and ev.driver.id == f"{COURIER[dialect]}-drv-9"
    # DoorDash-style payloads carry no vehicle; the others name the platform's own vehicle.
    assert ev.driver.vehicle == (None if dialect == "doordash" else "bike")
    assert ev.location == LatLon(lat=51.5125, lon=-0.1016)
    assert ev.at.isoformat() == "2026-11-18T11:09:38+00:00"


def test_the_outgoing_message_goes_to_lifecycle_hashed_on_the_delivery() -> None:
    ev = decoder_for("doordash")(status("doordash", "picked_up"))
    out = lifecycle_message(ev)
    assert (out.exchange, out.routing_key, out.message_id) == (LIFECYCLE, "picked_up", "gw:dashly-job-77:2")
    assert out.headers[DELIVERY_HEADER] == "dlv_abc"
    assert LifecycleEvent.model_validate_json(out.body) == ev


def test_a_location_becomes_a_location_ping() -> None:
    ping = decoder_for("uber")(location())
    assert isinstance(ping, LocationPing)
    assert (ping.message_id, ping.seq, ping.courier_job_id) == ("gw:zoomly-job-77:5", 5, "zoomly-job-77")
    assert ping.location == LatLon(lat=51.51, lon=-0.1)
    assert lifecycle_message(ping).routing_key == "location"


def test_a_vehicle_the_platform_does_not_know_is_not_carried_over() -> None:
    body = json.loads(status("uber", "picked_up"))
    body["payload"]["courier"]["vehicle_type"] = "hoverboard"
    ev = decoder_for("uber")(json.dumps(body).encode())
    assert isinstance(ev, LifecycleEvent) and ev.driver is not None and ev.driver.vehicle is None


@pytest.mark.parametrize(
    ("dialect", "body", "why"),
    [
        ("uber", teleported(), "unknown status 'teleported'"),
        ("uber", b"{not json", "not JSON"),
        ("uber", b"\xff\xfe", "not JSON"),
        ("uber", b"[1, 2]", "must be a JSON object"),
        ("uber", status("doordash", "picked_up"), "registered with the uber dialect"),
        ("stuart", location("uber"), "uber location to the stuart adapter"),
        ("uber", status("uber", "picked_up", delivery_id=None), "no delivery_id"),
        ("uber", location(delivery_id=None), "no delivery_id"),
        ("uber", status("uber", "picked_up", type="quote"), "neither 'status' nor 'location'"),
        ("uber", status("uber", "picked_up", seq="two"), "seq"),  # type: ignore[arg-type]
        ("doordash", status("doordash", "picked_up", order_reference="s42-9"), "external_delivery_id"),
    ],
)
def test_what_cannot_be_translated_is_malformed_with_the_reason(dialect: str, body: bytes, why: str) -> None:
    decode = decoder_for(dialect)  # type: ignore[arg-type]
    with pytest.raises(MalformedMessage, match=f"{dialect} adapter: ") as caught:
        decode(body)
    assert why in str(caught.value)


def test_a_payload_status_that_contradicts_the_envelope_is_refused() -> None:
    body = json.loads(status("stuart", "delivered"))
    body["payload"]["data"]["status"] = "picking"
    with pytest.raises(MalformedMessage, match="contradicts"):
        decoder_for("stuart")(json.dumps(body).encode())


async def test_the_handler_outboxes_the_translation_once(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "gateway.db")
    try:
        await db.executescript(outbox.SCHEMA)
        ev = decoder_for("uber")(status("uber", "delivered", seq=9))
        msg = InboundMessage("zoomly-job-77:9", ev, {}, "courier.events", "zoomly.status", False, 0, b"")
        for _ in range(2):  # the same courier message republished under another AMQP id
            await db.execute("BEGIN IMMEDIATE")
            await handle(db, msg)
            await db.execute("COMMIT")
        cursor = await db.execute("SELECT message_id, exchange, routing_key, headers FROM outbox")
        rows = list(await cursor.fetchall())
    finally:
        await db.close()
    assert len(rows) == 1
    assert rows[0][:3] == ("gw:zoomly-job-77:9", LIFECYCLE, "delivered")
    assert json.loads(rows[0][3])[DELIVERY_HEADER] == "dlv_abc"


def test_settings_pick_the_dialect_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRILL_GATEWAY_DIALECTS", raising=False)
    assert GatewaySettings().dialects == ("uber", "doordash", "stuart")
    monkeypatch.setenv("DRILL_GATEWAY_DIALECTS", "uber, stuart")
    assert GatewaySettings().dialects == ("uber", "stuart")
    monkeypatch.setenv("DRILL_GATEWAY_DIALECTS", "uber,fedex")
    with pytest.raises(ValueError, match="fedex"):
        GatewaySettings()


def test_docstring_examples() -> None:
    assert doctest.testmod(system.gateway.decide).failed == 0
