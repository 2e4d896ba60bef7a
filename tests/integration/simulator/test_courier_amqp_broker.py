"""The simulated courier companies on a real RabbitMQ cluster: request in, confirmed answer out."""

from __future__ import annotations

import asyncio
import io
import json
import uuid

import aio_pika
import pytest

from rig.cluster import Cluster
from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.courier_amqp import EVENTS_EXCHANGE, REQUESTS_EXCHANGE, CourierAmqpAdapter
from simulator.courier_desk import CourierDesk
from simulator.ledger import Ledger

pytestmark = pytest.mark.integration


def quote_request(mid: str) -> dict[str, object]:
    return {"type": "quote_request", "message_id": mid, "courier": "pedalo", "order_reference": "s1-0000001",
            "delivery_id": "dlv_1", "pickup": {"lat": 51.52, "lon": -0.1}, "dropoff": {"lat": 51.5, "lon": -0.12},
            "parcel": {"weight_g": 500, "size": "S"}}  # fmt: skip


async def scenario(url: str) -> list[dict[str, object]]:
    led = Ledger(io.StringIO(), lambda: 0.0)
    sc = Scenario.model_validate({"arrivals": {"rate": 1.0}})
    desk = CourierDesk(1, sc, SimClock(epoch=1_800_000_000.0), led)
    now = {"t": 0.0}
    adapter = CourierAmqpAdapter(url, desk, led, lambda: now["t"])
    await adapter.start()
    conn = await aio_pika.connect(url)
    answers: list[dict[str, object]] = []
    try:
        ch = await conn.channel(publisher_confirms=True)
        events = await ch.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        requests = await ch.declare_exchange(REQUESTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        inbox = await ch.declare_queue(f"platform-test-{uuid.uuid4().hex[:8]}", exclusive=True)
        await inbox.bind(events, routing_key="pedalo.#")
        mid = f"qr-{uuid.uuid4().hex[:8]}"
        for _ in range(2):  # the platform republishes after an unknown outcome: same message id
            await requests.publish(
                aio_pika.Message(json.dumps(quote_request(mid)).encode(), message_id=mid,
                                 content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="pedalo.quote_request", mandatory=True,
            )  # fmt: skip
        now["t"] = 30.0  # past the courier's quote latency: the answer is due
        async with inbox.iterator(timeout=15) as it:
            async for msg in it:
                async with msg.process():
                    answers.append(json.loads(msg.body))
                    assert msg.correlation_id == mid
                break
        # The repeated request (same id) may be answered again, but only with the same quote: quoting
        # keeps the first answer per courier. Collect a repeat if one comes within the courier's latency.
        extra = await inbox.get(timeout=3, fail=False)
        if extra is not None:
            answers.append(json.loads(extra.body))
    finally:
        await adapter.stop()
        async with conn:
            ch = await conn.channel()
            for name in desk.models:
                await ch.queue_delete(f"courier.{name}.requests")
    return answers


def test_couriers_answer_quote_requests_through_the_broker(cluster: Cluster) -> None:
    answers = asyncio.run(scenario(cluster.amqp_urls[0]))
    assert [a["type"] for a in answers] in (["quote"], ["quote", "quote"]), answers
    # a request sent twice never makes a second, different quote: a repeat answers the same quote (its
    # own message id: the platform keeps the first answer per courier and round)
    assert len({(a["quote_id"], json.dumps(a["price"])) for a in answers}) == 1
    quote = answers[0]
    assert quote["courier"] == "pedalo" and quote["dialect"] == "stuart"
    assert quote["price"] == {"amount_minor": quote["price"]["amount_minor"], "currency": "GBP"}  # type: ignore[index]
    assert int(quote["price"]["amount_minor"]) > 0  # type: ignore[index]
