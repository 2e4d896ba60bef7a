"""The AMQP shell around the courier desk, with fake aio-pika objects (no broker here)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aio_pika
from pamqp.commands import Basic

from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.courier_amqp import CourierAmqpAdapter
from simulator.courier_desk import CourierDesk
from simulator.ledger import Ledger


class FakeExchange:
    """Fails the first ``fail`` publishes (like a nack or a return), then records them."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.published: list[tuple[str, aio_pika.Message]] = []
        self.got_one = asyncio.Event()

    async def publish(self, message: aio_pika.Message, routing_key: str, *, mandatory: bool = True) -> None:
        assert mandatory
        if self.fail > 0:
            self.fail -= 1
            raise aio_pika.exceptions.DeliveryError(None, Basic.Nack())
        self.published.append((routing_key, message))
        self.got_one.set()


class FakeIncoming:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = json.dumps(body).encode()
        self.message_id = "amqp-mid-1"
        self.acked = False

    async def ack(self) -> None:
        self.acked = True

    async def reject(self, requeue: bool = False) -> None:
        raise AssertionError("valid requests are acked")


async def test_request_in_answer_out_with_republish_of_the_same_id() -> None:
    buf = io.StringIO()
    led = Ledger(buf, lambda: 0.0)
    sc = Scenario.model_validate({"arrivals": {"rate": 1.0}})
    desk = CourierDesk(1, sc, SimClock(epoch=1_800_000_000.0), led)
    now = {"t": 0.0}
    adapter = CourierAmqpAdapter("amqp://unused/", desk, led, lambda: now["t"])
    exchange = FakeExchange(fail=1)
    adapter._events = exchange  # type: ignore[assignment]
    msg = FakeIncoming({"type": "quote_request", "courier": "pedalo", "order_reference": "s1-0000001",
                        "delivery_id": "dlv_1", "pickup": {"lat": 51.52, "lon": -0.1},
                        "dropoff": {"lat": 51.5, "lon": -0.12}, "parcel": {"weight_g": 500, "size": "S"}})  # fmt: skip
    await adapter._on_request(msg)  # type: ignore[arg-type]
    assert msg.acked
    now["t"] = 10.0
    pump = asyncio.create_task(adapter._pump_loop())
    await asyncio.wait_for(exchange.got_one.wait(), 3.0)
    pump.cancel()
    await asyncio.gather(pump, return_exceptions=True)
    ((key, published),) = exchange.published
    assert key == "pedalo.quote"
    body = json.loads(published.body)
    assert body["type"] == "quote" and body["in_reply_to"] == "amqp-mid-1"
    assert (
        published.message_id == body["message_id"]
        and published.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    )
    kinds = [json.loads(line) for line in buf.getvalue().splitlines()]
    retry = next(r for r in kinds if r["kind"] == "courier_publish_retry")
    assert retry["message_id"] == body["message_id"]  # republished under the same id
    sent = next(r for r in kinds if r["kind"] == "quote_sent")
    assert sent["price_minor"] == body["price"]["amount_minor"] and sent["courier"] == "pedalo"


class FakeConnection:
    def __init__(self) -> None:
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


async def test_a_channel_that_keeps_nacking_is_dropped_so_the_adapter_reconnects() -> None:
    """Seen in CI: after its queue's leader was killed, a courier's channel nacked every publish for
    13 s; its booking answer came 15 s late and the platform had booked a second courier meanwhile."""
    from simulator.courier_amqp import NACKS_BEFORE_RECONNECT

    led = Ledger(io.StringIO(), lambda: 0.0)
    sc = Scenario.model_validate({"arrivals": {"rate": 1.0}})
    desk = CourierDesk(1, sc, SimClock(epoch=1_800_000_000.0), led)
    adapter = CourierAmqpAdapter("amqp://unused/", desk, led, lambda: 0.0)
    exchange = FakeExchange(fail=100)
    conn = FakeConnection()
    adapter._events, adapter._conn = exchange, conn  # type: ignore[assignment]
    out = type("Out", (), {"body": {"message_id": "m-1"}, "routing_key": "pedalo.quote", "order_ref": "s1"})()
    publishing = asyncio.create_task(adapter._publish(out))  # type: ignore[arg-type]
    for _ in range(100):
        await asyncio.sleep(0.05)
        if conn.closed:
            break
    assert conn.closed == 1 and adapter._events is None, "dropped once, after the nack streak"
    assert exchange.fail == 100 - NACKS_BEFORE_RECONNECT
    adapter._stopping = True
    adapter._connected.set()
    assert await asyncio.wait_for(publishing, 5.0) is False
