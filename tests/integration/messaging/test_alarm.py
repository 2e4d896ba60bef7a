"""A memory alarm on the cluster while publishing: back-pressure, nothing lost, resumes after."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from rig.cluster import LocalCluster
from system.messaging.envelope import OutgoingMessage
from system.messaging.publisher import ConfirmingPublisher

from .conftest import DeclaredTopology, async_wait_for, settings_for

pytestmark = pytest.mark.integration


async def drain_ids(url: str, queue: str, expected: int, within: float) -> list[str]:
    """Consume ``queue`` until ``expected`` messages arrived or ``within`` seconds passed; return their ids."""
    ids: list[str] = []
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        q = await channel.get_queue(queue)
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            ids.append(str(message.message_id))
            await message.ack()
            if len(ids) >= expected:
                done.set()

        await q.consume(on_message)
        try:
            async with asyncio.timeout(within):
                await done.wait()
        except TimeoutError:
            pass
    finally:
        await connection.close()
    return ids


async def test_memory_alarm_blocks_publishes_then_everything_goes_through(
    local_cluster: LocalCluster, topo: DeclaredTopology
) -> None:
    window, count = 50, 400
    settings = settings_for(local_cluster, confirm_window=window, publish_timeout_s=1.0)
    publisher = ConfirmingPublisher(settings, name="alarm-test")
    await publisher.start()
    messages = [OutgoingMessage.json(topo.exchange, "item.created", {"seq": i}) for i in range(count)]
    try:
        await asyncio.to_thread(local_cluster.set_memory_alarm, True)
        tasks = [asyncio.create_task(publisher.publish(m)) for m in messages]
        await async_wait_for(lambda: publisher.blocked, 20, "the broker to block the publishing connection")
        confirmed_at_block = publisher.stats.confirmed
        # Past the publish timeout while blocked: a naive publisher would republish into the buffer.
        await async_wait_for(
            lambda: publisher.stats.blocked_waits >= window, 20, "publishes to wait out the alarm"
        )
        assert publisher.stats.confirmed == confirmed_at_block, "publishes went through during the alarm"
        assert publisher.stats.republished == 0, "blocked publishes were republished (unbounded buffering)"
        assert publisher.in_flight <= window, "more than the window is buffered"
        assert sum(not t.done() for t in tasks) == count - confirmed_at_block, "callers were not held back"
        print(
            f"\nalarm: blocked with {publisher.in_flight} in flight, {count - publisher.in_flight} callers held"
        )
        await asyncio.to_thread(local_cluster.set_memory_alarm, False)
        async with asyncio.timeout(60):
            await asyncio.gather(*tasks)
        assert publisher.stats.confirmed == count
        assert publisher.stats.republished == 0, "the alarm's end was taken for lost confirms"
    finally:
        await asyncio.to_thread(local_cluster.set_memory_alarm, False)
        await publisher.close()
    ids = await drain_ids(local_cluster.amqp_urls[0], topo.queue, count, 30)
    lost = {m.message_id for m in messages} - set(ids)
    print(
        f"alarm: consumed {len(set(ids))} distinct of {count}; lost={len(lost)} duplicates={len(ids) - len(set(ids))}"
    )
    assert not lost
