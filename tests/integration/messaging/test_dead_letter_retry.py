"""The brokers retry an at-least-once dead-letter hop within seconds, not minutes.

A message the platform parks for a second in a retry tier comes back to its work queue by dead-lettering
(TTL expiry, at-least-once). When the work queue cannot take it at that moment (no leader yet while the
cluster comes back from a full outage), the quorum queue's dead-letter worker keeps the message and tries
again after ``dead_letter_worker_publisher_confirm_timeout``: 180 s by RabbitMQ's default, which let a
demo end with two orders' cancellations still held there (the audit: lost). The rig sets 5 s
(``rig.cluster._local.ADVANCED_CONFIG``).

Here the target queue is not bound when the message expires, so the first hop finds nowhere to go; once
it is bound, the message must arrive well before the default interval would have let it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import pytest

from rig.cluster import LocalCluster

pytestmark = pytest.mark.integration

#: Far below RabbitMQ's default retry interval (180 s), well above the rig's (5 s).
WITHIN_S = 40.0


async def _count(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def _settle_count(channel: aio_pika.abc.AbstractChannel, queue: str, want: int, within: float) -> float:
    """Poll ``queue``'s depth until it is ``want`` or ``within`` seconds passed; the seconds it took."""
    start = time.monotonic()
    for _ in range(int(within / 0.1)):
        if await _count(channel, queue) == want:
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_a_dead_letter_hop_with_nowhere_to_go_is_retried_within_seconds(
    local_cluster: LocalCluster,
) -> None:
    tag = uuid.uuid4().hex[:8]
    source, target, exchange = f"dlx-src-{tag}", f"dlx-dst-{tag}", f"dlx-ex-{tag}"
    connection = await aio_pika.connect(local_cluster.amqp_urls[0])
    try:
        channel = await connection.channel(publisher_confirms=True)
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        dst = await channel.declare_queue(target, durable=True, arguments={"x-queue-type": "quorum"})
        # No binding yet: the worker's first hop finds no queue for the message and must keep it.
        await channel.declare_queue(
            source,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": 200,
                "x-dead-letter-exchange": exchange,
                "x-dead-letter-routing-key": target,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        await channel.default_exchange.publish(
            aio_pika.Message(
                b"cancel", message_id=f"m-{tag}", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            ),
            routing_key=source,
        )
        # The message expires and the worker tries the hop, which nothing can take yet.
        await _settle_count(channel, source, 0, within=20.0)
        assert await _count(channel, source) == 0, "the message never expired from the source queue"
        await asyncio.sleep(2.0)  # the refused first hop happens within milliseconds of the expiry
        assert await _count(channel, target) == 0, "an unbound queue got the message"
        await dst.bind(ex, routing_key=target)
        waited = await _settle_count(channel, target, 1, within=WITHIN_S)
        assert await _count(channel, target) == 1, (
            f"the dead-lettered message did not reach its target within {WITHIN_S:.0f} s of the binding "
            "(the brokers' dead-letter worker retries at RabbitMQ's default 180 s, not the rig's 5 s?)"
        )
        print(f"dead-letter hop retried {waited:.1f} s after the binding")
        await channel.queue_delete(source)
        await channel.queue_delete(target)
        await channel.exchange_delete(exchange)
    finally:
        await connection.close()
