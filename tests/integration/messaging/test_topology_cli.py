"""Declaring on the real cluster: idempotence, clear conflicts, per-service users, the parked CLI."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from pathlib import Path

import aio_pika
import aiormq
import aiosqlite
import pytest
from typer.testing import CliRunner
from yarl import URL

from rig.cluster import LocalCluster
from system.messaging import workload
from system.messaging.cli import app
from system.messaging.consumer import InboxConsumer
from system.messaging.declare import TopologyConflict, declare_topology
from system.messaging.envelope import (
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
    PARK_REASON,
    InboundMessage,
    OutgoingMessage,
)
from system.messaging.publisher import ConfirmingPublisher
from system.messaging.topology import Service, Topology

from .conftest import DeclaredTopology, async_wait_for, settings_for

pytestmark = pytest.mark.integration


async def test_redeclare_is_idempotent_and_a_changed_argument_is_named(
    local_cluster: LocalCluster, topo: DeclaredTopology
) -> None:
    connection = await aio_pika.connect(local_cluster.amqp_urls[1])
    try:
        assert await declare_topology(connection, topo.topology) == 4
        svc = topo.topology.services[0]
        changed_queue = replace(svc.consumes[0], delivery_limit=5)
        changed = Topology(
            exchanges=topo.topology.exchanges, services=(replace(svc, consumes=(changed_queue,)),)
        )
        with pytest.raises(TopologyConflict) as info:
            await declare_topology(connection, changed)
        assert info.value.name == topo.queue and info.value.argument == "x-delivery-limit"
        assert topo.queue in str(info.value) and "x-delivery-limit" in str(info.value)
    finally:
        await connection.close()


def _as_user(url: str, user: str, password: str) -> str:
    return str(URL(url).with_user(user).with_password(password))


async def test_a_service_user_with_rendered_permissions_can_do_its_job(
    local_cluster: LocalCluster, topo: DeclaredTopology, tmp_path: Path
) -> None:
    """Declare its own queues, publish, consume, retry through the tiers: nothing more is needed."""
    service: Service = topo.topology.services[0]
    perms = topo.topology.permissions(service.name)
    user, password = f"svc-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    await asyncio.to_thread(local_cluster.ctl, 1, "add_user", user, password)
    await asyncio.to_thread(
        local_cluster.ctl, 1, "set_permissions", "-p", "/", user, perms.configure, perms.write, perms.read
    )
    try:
        settings = settings_for(
            local_cluster, amqp_urls=[_as_user(u, user, password) for u in local_cluster.amqp_urls]
        )
        connection = await aio_pika.connect(settings.amqp_urls[0])
        await declare_topology(connection, topo.topology, service=service.name)
        # ...but not another service's queue
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.declare_queue(f"other-{uuid.uuid4().hex[:6]}", durable=True)
        await connection.close()

        db_path = tmp_path / "svc.db"
        async with aiosqlite.connect(db_path) as db:
            await db.executescript(workload.EFFECTS_SCHEMA)
        failed_once: set[str] = set()

        async def handler(db: aiosqlite.Connection, message: InboundMessage[workload.Item]) -> None:
            if message.message_id not in failed_once:
                failed_once.add(message.message_id)
                raise RuntimeError("first attempt fails: go through the retry tier")
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
            decode=workload.Item.model_validate_json,
        )
        run = asyncio.create_task(consumer.run())
        publisher = ConfirmingPublisher(settings)
        try:
            await consumer.consuming.wait()
            for i in range(5):
                await publisher.publish(
                    OutgoingMessage.json(topo.exchange, "item.created", workload.Item(seq=i))
                )
            await async_wait_for(lambda: consumer.stats.processed == 5, 20, "processing after one retry each")
            assert consumer.stats.retried == 5 and consumer.stats.parked == 0
        finally:
            consumer.stop()
            await asyncio.wait_for(run, 30)
            await publisher.close()
    finally:
        await asyncio.to_thread(local_cluster.ctl, 1, "delete_user", user)


def test_parked_cli_lists_shows_and_replays(
    local_cluster: LocalCluster, topo: DeclaredTopology, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(local_cluster)
    monkeypatch.setenv("DRILL_MSG_AMQP_URLS", ",".join(local_cluster.amqp_urls))
    parked = OutgoingMessage.json(
        topo.topology.parked_exchange,
        topo.queue,
        {"seq": 1},
        headers={
            PARK_REASON: "handler failed 4 times: boom",
            ORIGINAL_EXCHANGE: topo.exchange,
            ORIGINAL_ROUTING_KEY: "item.created",
        },
    )

    async def park_and_count() -> None:
        publisher = ConfirmingPublisher(settings)
        await publisher.publish(parked)
        await publisher.close()

    asyncio.run(park_and_count())
    runner = CliRunner()
    listed = runner.invoke(app, ["parked", "list", "--queue", topo.queue])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert json.loads(lines[0])["message_id"] == parked.message_id and lines[-1] == "1 parked messages"
    shown = runner.invoke(app, ["parked", "show", parked.message_id, "--queue", topo.queue])
    assert shown.exit_code == 0 and "handler failed 4 times: boom" in shown.output
    replayed = runner.invoke(app, ["parked", "replay", parked.message_id, "--queue", topo.queue])
    assert replayed.exit_code == 0, replayed.output
    assert replayed.output.strip().splitlines()[-1] == "1 replayed, 0 unroutable"
    assert runner.invoke(app, ["parked", "list", "-q", topo.queue]).output.strip() == "0 parked messages"

    async def from_work_queue() -> aio_pika.abc.AbstractIncomingMessage | None:
        connection = await aio_pika.connect(local_cluster.amqp_urls[0])
        try:
            channel = await connection.channel()
            queue = await channel.get_queue(topo.queue)
            for _ in range(50):
                message = await queue.get(fail=False)
                if message is not None:
                    await message.ack()
                    return message
                await asyncio.sleep(0.1)
            return None
        finally:
            await connection.close()

    back = asyncio.run(from_work_queue())
    assert back is not None and back.message_id == parked.message_id
    assert PARK_REASON not in (back.headers or {})
