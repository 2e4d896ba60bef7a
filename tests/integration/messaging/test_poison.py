"""Poison and malformed messages reach the parking lot; the rest keeps flowing; replay is deduplicated."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite
import pytest

from rig.cluster import Cluster
from system.messaging import workload
from system.messaging.consumer import InboxConsumer
from system.messaging.envelope import ATTEMPT, InboundMessage, OutgoingMessage
from system.messaging.parking import ParkingLot
from system.messaging.publisher import ConfirmingPublisher

from .conftest import DeclaredTopology, async_wait_for, scalar, settings_for

pytestmark = pytest.mark.integration

Item = workload.Item


async def test_poison_and_malformed_are_parked_and_replay_is_deduplicated(
    cluster: Cluster, topo: DeclaredTopology, tmp_path: Path
) -> None:
    settings = settings_for(cluster)
    db_path = tmp_path / "consumer.db"
    async with aiosqlite.connect(db_path) as db:
        await db.executescript(workload.EFFECTS_SCHEMA)
    broken = {7}

    async def handler(db: aiosqlite.Connection, message: InboundMessage[workload.Item]) -> None:
        if message.payload.seq in broken:
            raise RuntimeError(f"cannot handle item {message.payload.seq}")
        await db.execute(
            "INSERT INTO effects (message_id, seq, redelivered, at) VALUES (?, ?, 0, 0)",
            (message.message_id, message.payload.seq),
        )

    consumer: InboxConsumer[workload.Item] = InboxConsumer(
        settings,
        db_path=db_path,
        topology=topo.topology,
        queue=topo.queue,
        handler=handler,
        decode=Item.model_validate_json,
    )
    publisher = ConfirmingPublisher(settings, name="poison-test")
    run = asyncio.create_task(consumer.run())
    poison = OutgoingMessage.json(topo.exchange, "item.created", Item(seq=7))
    malformed = OutgoingMessage(topo.exchange, "item.created", b"{not json")
    invalid = OutgoingMessage.json(topo.exchange, "item.created", {"no_seq": True})
    good = [OutgoingMessage.json(topo.exchange, "item.created", Item(seq=100 + i)) for i in range(300)]

    def effects() -> int:
        return scalar(db_path, "SELECT COUNT(*) FROM effects")

    try:
        await consumer.consuming.wait()
        for m in [poison, malformed, invalid]:
            await publisher.publish(m)
        await asyncio.gather(*(publisher.publish(m) for m in good))
        # The good messages, published after the poison, are all handled while it is still retrying.
        await async_wait_for(lambda: effects() == len(good), 20, "the good messages")
        poison_still_retrying = consumer.stats.parked < 3
        await async_wait_for(lambda: consumer.stats.parked == 3, 20, "three messages to be parked")
        assert poison_still_retrying, "the good messages waited behind the poison"
        assert consumer.stats.retried == 2  # tiers 200 ms and 400 ms, then the third failure parks

        lot = ParkingLot(settings, topo.topology.work_queue(topo.queue))
        parked = {m.message_id: m for m in await lot.list()}
        assert set(parked) == {poison.message_id, malformed.message_id, invalid.message_id}
        p = parked[poison.message_id]
        assert "handler failed 3 times" in p.reason and "cannot handle item 7" in p.reason
        assert p.headers[ATTEMPT] == 3
        assert (p.original_exchange, p.original_routing_key) == (topo.exchange, "item.created")
        for bad in (malformed, invalid):
            assert parked[bad.message_id].reason.startswith("malformed")
            assert parked[bad.message_id].headers[ATTEMPT] == 0  # parked at once, no retry
        # list() leaves them in place
        assert {m.message_id for m in await lot.list()} == set(parked)

        # The same message id published again while still broken: a second parked copy.
        await publisher.publish(poison)
        await async_wait_for(lambda: consumer.stats.parked == 4, 20, "the second copy to be parked")

        broken.clear()  # "the bug is fixed": replay both copies
        report = await lot.replay({poison.message_id})
        assert len(report.replayed) == 2 and not report.unroutable
        await async_wait_for(
            lambda: consumer.stats.processed == len(good) + 1 and consumer.stats.duplicates >= 1,
            20,
            "the replayed copies to be consumed",
        )
        assert scalar(db_path, "SELECT COUNT(*) FROM effects WHERE seq = 7") == 1
        remaining = {m.message_id for m in await lot.list()}
        assert remaining == {malformed.message_id, invalid.message_id}
        print(
            f"\npoison: parked={consumer.stats.parked} retried={consumer.stats.retried} "
            f"replayed={len(report.replayed)} effects for it=1 duplicates absorbed={consumer.stats.duplicates}"
        )
    finally:
        consumer.stop()
        await asyncio.wait_for(run, 30)
        await publisher.close()
