"""A consumer whose node's quorum member never sends it deliveries moves to another node.

Seen in the demo drill with ``full_outage mode=kill`` (runs 20261129T054211Z-demo and
20261129T075325Z-demo-kill): after every node was SIGKILLed and restarted, the member of
``gateway.uber`` / ``gateway.doordash`` on node 3 stayed in ``pre_vote`` with its log behind the commit
index, while the leader (node 2) and node 1 went on. Both gateway replicas consumed through node 3.
RabbitMQ sends a quorum queue's deliveries from the member on the consuming channel's node (local
delivery), so the leader checked the couriers' confirmed messages out to those consumers (management:
ready 0, unacked 289 / 7) and nothing ever reached them (every gateway channel: unacked 0). A passive
declare's ready count was 0, so the consumer's stall check saw nothing wrong.

Here the lagging member is made deterministic: the queue's Ra server on a follower node is suspended
(``sys:suspend``), so it applies nothing, exactly like the stuck member; the leader and the third member
keep the majority, so publishes are confirmed. The test first shows the broker symptom with a plain
aio-pika consumer on that node, then requires :class:`InboxConsumer`, started on that node, to process
every message: it must notice that it receives nothing and re-subscribe on another node (closing its
channel returns the messages checked out to it).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aio_pika
import aiosqlite
import pytest

from rig.cluster import LocalCluster, ManagementClient
from system.messaging import workload
from system.messaging.consumer import InboxConsumer
from system.messaging.envelope import InboundMessage, OutgoingMessage
from system.messaging.publisher import ConfirmingPublisher

from .conftest import DeclaredTopology, async_wait_for, scalar, settings_for

pytestmark = pytest.mark.integration

Item = workload.Item
COUNT = 40


def _ra_server(queue: str) -> str:
    """An Erlang expression for the pid of ``queue``'s Ra server on the node it is evaluated on."""
    return (
        f'{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"{queue}">>)), '
        "{RaName, _} = amqqueue:get_pid(Q), whereis(RaName)"
    )


def _suspend(cluster: LocalCluster, node: int, queue: str) -> None:
    cluster.ctl(node, "eval", f"Pid = begin {_ra_server(queue)} end, ok = sys:suspend(Pid), Pid.")


def _resume(cluster: LocalCluster, node: int, queue: str) -> None:
    cluster.ctl(node, "eval", f"Pid = begin {_ra_server(queue)} end, ok = sys:resume(Pid), Pid.")


def _counts(cluster: LocalCluster, node: int, queue: str) -> tuple[int, int]:
    """(ready, unacked) as the management API reports them."""
    with ManagementClient(cluster.management_url(node), *cluster.admin) as mc:
        q = mc.queue(queue)
    return int(q.get("messages_ready") or 0), int(q.get("messages_unacknowledged") or 0)


async def test_consumer_moves_off_a_node_whose_quorum_member_does_not_deliver(
    local_cluster: LocalCluster, topo: DeclaredTopology, tmp_path: Path
) -> None:
    leader = local_cluster.queue_leader(topo.queue)
    lagging = next(n for n in local_cluster.node_indices if n != leader)
    others = [local_cluster.amqp_url(n) for n in local_cluster.node_indices if n != lagging]
    lagging_url = local_cluster.amqp_url(lagging)
    # The consumer starts on the lagging node; the publisher avoids it (the symptom is on delivery).
    # stall_check_s 0.5: the consumer's idle limit (six checks) is 3 s.
    consumer_settings = settings_for(
        local_cluster, amqp_urls=[lagging_url, *others], random_start_node=False, stall_check_s=0.5
    )
    publisher = ConfirmingPublisher(settings_for(local_cluster, amqp_urls=others), name="outage-test")
    messages = [OutgoingMessage.json(topo.exchange, "item.created", Item(seq=i)) for i in range(COUNT)]

    db_path = tmp_path / "consumer.db"
    async with aiosqlite.connect(db_path) as db:
        await db.executescript(workload.EFFECTS_SCHEMA)

    async def handler(db: aiosqlite.Connection, message: InboundMessage[workload.Item]) -> None:
        await db.execute(
            "INSERT INTO effects (message_id, seq, redelivered, at) VALUES (?, ?, ?, ?)",
            (message.message_id, message.payload.seq, int(message.redelivered), time.time()),
        )

    consumer: InboxConsumer[workload.Item] = InboxConsumer(
        consumer_settings,
        db_path=db_path,
        topology=topo.topology,
        queue=topo.queue,
        handler=handler,
        decode=Item.model_validate_json,
    )
    run: asyncio.Task[None] | None = None
    _suspend(local_cluster, lagging, topo.queue)
    try:
        # 1. The broker symptom, with a plain consumer on the lagging node: the leader checks every
        #    confirmed message out to it (unacked), none arrives.
        plain = await aio_pika.connect(lagging_url, timeout=10)
        received: list[str] = []
        try:
            channel = await plain.channel()
            await channel.set_qos(prefetch_count=200)
            queue = await channel.get_queue(topo.queue, ensure=False)

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                received.append(message.message_id or "")

            await queue.consume(on_message)
            await asyncio.gather(*(publisher.publish(m) for m in messages))
            await async_wait_for(
                lambda: _counts(local_cluster, leader, topo.queue) == (0, COUNT),
                30,
                f"the leader to count all {COUNT} messages as unacked to the plain consumer",
                period=0.5,
            )
            assert received == [], "the suspended member delivered: the test would prove nothing"
        finally:
            await plain.close()  # its channel's death returns the messages to the queue
        await async_wait_for(
            lambda: _counts(local_cluster, leader, topo.queue) == (COUNT, 0),
            30,
            "the messages to be ready again after the plain consumer left",
            period=0.5,
        )

        # 2. The InboxConsumer, on the same node, gets every one of them processed.
        run = asyncio.create_task(consumer.run())
        await asyncio.wait_for(consumer.consuming.wait(), 20)

        def effects() -> int:
            return scalar(db_path, "SELECT COUNT(DISTINCT message_id) FROM effects")

        await async_wait_for(lambda: effects() == COUNT, 40, f"all {COUNT} messages to be processed")
        assert consumer.stats.idle_resubscribes >= 1
        assert scalar(db_path, "SELECT COUNT(*) FROM effects") == COUNT  # each effect once
        print(
            f"\nlagging member on node {lagging} (leader {leader}): plain consumer got {len(received)}/{COUNT};"
            f" InboxConsumer processed {effects()} after {consumer.stats.idle_resubscribes} idle move(s)"
        )
    finally:
        _resume(local_cluster, lagging, topo.queue)
        consumer.stop()
        if run is not None:
            await asyncio.wait_for(run, 30)
        await publisher.close()
