"""``drill bench messaging``: our publisher+consumer (outbox and inbox included) vs raw aio-pika.

Both sides move the same number of persistent messages of the same size through a fresh quorum queue
on the same cluster in the same run, end to end (first publish to last ack):

* raw: aio-pika, publisher confirms with a window of ``confirm_window`` unconfirmed, manual ack,
  prefetch ``prefetch``; nothing else.
* ours: a writer commits each message with a state row in SQLite (outbox), the :class:`OutboxRelay`
  publishes with confirms and records them, the :class:`InboxConsumer` applies each in a transaction
  with its inbox row and acks after commit.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiosqlite

from system.logs import get_logger

from . import outbox, workload
from .consumer import InboxConsumer
from .db import open_db
from .declare import declare_topology, delete_topology
from .envelope import InboundMessage
from .publisher import ConfirmingPublisher
from .relay import OutboxRelay
from .settings import MessagingSettings

log = get_logger(__name__)


@dataclass(frozen=True)
class BenchResult:
    """Throughputs in messages per second."""

    count: int
    size: int
    raw_rate: float
    ours_rate: float

    @property
    def ratio(self) -> float:
        """ours / raw (goal ≥ 0.5)."""
        return self.ours_rate / self.raw_rate if self.raw_rate else 0.0


async def bench_raw(settings: MessagingSettings, count: int, size: int) -> float:
    """msgs/s of plain aio-pika: confirm window, manual ack, quorum queue."""
    queue_name = f"bench.raw.{uuid.uuid4().hex[:8]}"
    url = settings.amqp_urls[0]
    pub_conn = await aio_pika.connect(url)
    sub_conn = await aio_pika.connect(url)
    try:
        pub = await pub_conn.channel(publisher_confirms=True)
        queue = await pub.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        sub = await sub_conn.channel()
        await sub.set_qos(prefetch_count=settings.prefetch)
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= count:
                done.set()

        sub_queue = await sub.get_queue(queue_name)
        consumer_tag = await sub_queue.consume(on_message)
        window = asyncio.Semaphore(settings.confirm_window)
        body = b"x" * size

        async def publish_one() -> None:
            async with window:
                msg = aio_pika.Message(
                    body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=uuid.uuid4().hex
                )
                await pub.default_exchange.publish(msg, routing_key=queue_name, timeout=30)

        started = time.perf_counter()
        await asyncio.gather(*(publish_one() for _ in range(count)))
        await done.wait()
        elapsed = time.perf_counter() - started
        # Cancelled first: deleting a queue under a live consumer makes the broker cancel it, which
        # aiormq reports as a warning on the console of `drill bench`.
        await sub_queue.cancel(consumer_tag)
        await queue.delete(if_unused=False, if_empty=False)
        return count / elapsed
    finally:
        await pub_conn.close()
        await sub_conn.close()


async def bench_ours(settings: MessagingSettings, count: int, size: int, workdir: Path) -> float:
    """msgs/s through outbox → relay → broker → inbox consumer, with the same queue type."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topology = workload.single_queue_topology(prefix)
    admin = await aio_pika.connect(settings.amqp_urls[0])
    await declare_topology(admin, topology)
    producer_db, consumer_db = workdir / f"{prefix}-out.db", workdir / f"{prefix}-in.db"
    db = await open_db(producer_db)
    await outbox.ensure_schema(db)
    await db.executescript(workload.EFFECTS_SCHEMA)
    async with aiosqlite.connect(consumer_db) as cdb:
        await cdb.executescript(workload.EFFECTS_SCHEMA)

    async def handler(tx: aiosqlite.Connection, message: InboundMessage[workload.Item]) -> None:
        await tx.execute(
            "INSERT INTO effects (message_id, seq, redelivered, at) VALUES (?, ?, ?, 0)",
            (message.message_id, message.payload.seq, int(message.redelivered)),
        )

    consumer: InboxConsumer[workload.Item] = InboxConsumer(
        settings,
        db_path=consumer_db,
        topology=topology,
        queue=f"{prefix}.work",
        handler=handler,
        decode=workload.Item.model_validate_json,
    )
    publisher = ConfirmingPublisher(settings, name="bench:relay")
    relay = OutboxRelay(producer_db, publisher, settings)
    consuming = asyncio.create_task(consumer.run())
    await consumer.consuming.wait()
    await publisher.start()
    written = asyncio.Event()
    try:
        started = time.perf_counter()
        relaying = asyncio.create_task(relay.run(asyncio.Event(), drain_after=written))
        pad = max(size - 40, 0)  # JSON envelope overhead, so bodies are ~size bytes like the raw side
        await workload.write_items(db, 0, count, f"{prefix}.ex", pad, relay)
        written.set()
        relay.notify()
        await consumer.wait_processed(count)
        elapsed = time.perf_counter() - started
        await relaying
        log.info(
            "bench ours done",
            extra={
                "relay": relay.stats.__dict__,
                "publisher": publisher.stats.__dict__,
                "consumer": consumer.stats.__dict__,
            },
        )
    finally:
        consumer.stop()
        await consuming
        await publisher.close()
        await db.close()
        await delete_topology(admin, topology)
        channel = await admin.channel()
        await channel.exchange_delete(f"{prefix}.ex")
        await admin.close()
    return count / elapsed


async def run_bench_async(settings: MessagingSettings, count: int = 10_000, size: int = 512) -> BenchResult:
    """Run both sides, raw first, and return their rates."""
    with tempfile.TemporaryDirectory(prefix="drill-bench-") as tmp:
        raw = await bench_raw(settings, count, size)
        ours = await bench_ours(settings, count, size, Path(tmp))
    return BenchResult(count=count, size=size, raw_rate=raw, ours_rate=ours)


def run_bench(count: int = 10_000, size: int = 512, settings: MessagingSettings | None = None) -> BenchResult:
    """Run the bench and print it; the LAST line is the ratio."""
    settings = settings or MessagingSettings()
    result = asyncio.run(run_bench_async(settings, count, size))
    print(f"messages: {result.count} x {result.size} B, quorum queue, nodes: {len(settings.amqp_urls)}")
    print(
        f"raw aio-pika (confirm window {settings.confirm_window}, manual ack): {result.raw_rate:,.0f} msg/s"
    )
    print(f"drill messaging (outbox + relay + inbox consumer): {result.ours_rate:,.0f} msg/s")
    print(f"ratio ours/raw: {result.ratio:.2f}")
    return result
