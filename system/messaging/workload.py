"""Real processes for the integration tests and the bench: ``python -m system.messaging.workload``.

``produce``  writes N business rows, each with its outbox message in ONE transaction, while an
             :class:`OutboxRelay` publishes them; exits when every row is confirmed.
``consume``  runs an :class:`InboxConsumer` whose handler writes an ``effects`` row in the inbox
             transaction; stops gracefully on SIGTERM. Payloads with ``"poison": true`` always fail.

Broker URLs and the rest come from ``DRILL_MSG_*`` (see :class:`MessagingSettings`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import aiosqlite
from pydantic import BaseModel

from system.logs import configure_logging, get_logger

from . import outbox
from .consumer import InboxConsumer
from .db import begin_immediate, open_db
from .envelope import InboundMessage, OutgoingMessage
from .publisher import ConfirmingPublisher
from .relay import OutboxRelay
from .settings import MessagingSettings
from .topology import Binding, Exchange, RetryTier, Service, Topology, WorkQueue

log = get_logger(__name__)

ROUTING_KEY = "item.created"


class Item(BaseModel):
    """The test payload: a sequence number, optional padding, optional poison flag."""

    seq: int
    pad: str = ""
    poison: bool = False


def single_queue_topology(
    prefix: str, retry_ms: tuple[int, ...] = (200, 400), max_attempts: int = 3
) -> Topology:
    """One exchange ``<prefix>.ex`` and one work queue ``<prefix>.work`` bound with ``item.*``."""
    return Topology(
        exchanges=(Exchange(f"{prefix}.ex", "topic"),),
        services=(
            Service(
                name=f"{prefix}-svc",
                consumes=(
                    WorkQueue(
                        name=f"{prefix}.work",
                        bindings=(Binding(f"{prefix}.ex", "item.*"),),
                        retry_tiers=tuple(RetryTier(ms) for ms in retry_ms),
                        max_attempts=max_attempts,
                        delivery_limit=20,
                    ),
                ),
                publishes_to=(f"{prefix}.ex",),
            ),
        ),
    )


EFFECTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    message_id TEXT NOT NULL, seq INTEGER NOT NULL, redelivered INTEGER NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (seq INTEGER PRIMARY KEY, state TEXT NOT NULL);
"""


async def write_items(
    db: aiosqlite.Connection,
    start: int,
    count: int,
    exchange: str,
    pad: int,
    relay: OutboxRelay | None,
    per_tx: int = 1,
) -> None:
    """The "service": per transaction, a state change (``items`` row) and its message in the outbox."""
    for first in range(start, start + count, per_tx):
        await begin_immediate(db)
        for seq in range(first, min(first + per_tx, start + count)):
            await db.execute("INSERT INTO items (seq, state) VALUES (?, 'created')", (seq,))
            await outbox.add(db, OutgoingMessage.json(exchange, ROUTING_KEY, Item(seq=seq, pad="x" * pad)))
        await db.execute("COMMIT")
        if relay is not None:
            relay.notify()


async def produce(args: argparse.Namespace, settings: MessagingSettings) -> None:
    db = await open_db(args.db)
    await outbox.ensure_schema(db)
    await db.executescript(EFFECTS_SCHEMA)
    publisher = ConfirmingPublisher(settings, name="testprocs:relay")
    relay = OutboxRelay(args.db, publisher, settings)
    written = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(asyncio.Event(), drain_after=written))
    cursor = await db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM items")
    row = await cursor.fetchone()
    await cursor.close()
    start = int(row[0]) if row else 0
    await write_items(db, start, max(args.count - start, 0), args.exchange, args.pad, relay, args.per_tx)
    log.info("all rows committed", extra={"count": args.count})
    written.set()
    relay.notify()
    await relay_task
    await publisher.close()
    await db.close()
    print(json.dumps({"published": relay.stats.published, **publisher.stats.__dict__}))


async def effect_handler(db: aiosqlite.Connection, message: InboundMessage[Item]) -> None:
    """The business effect: one ``effects`` row per processed message (no unique key: dupes show)."""
    if message.payload.poison:
        raise RuntimeError(f"poison item {message.payload.seq}")
    await db.execute(
        "INSERT INTO effects (message_id, seq, redelivered, at) VALUES (?, ?, ?, (julianday('now') - 2440587.5) * 86400.0)",
        (message.message_id, message.payload.seq, int(message.redelivered)),
    )
    if _HANDLER_DELAY_S:
        await asyncio.sleep(_HANDLER_DELAY_S)


_HANDLER_DELAY_S = 0.0


async def consume(args: argparse.Namespace, settings: MessagingSettings) -> None:
    global _HANDLER_DELAY_S
    _HANDLER_DELAY_S = args.handler_delay_ms / 1000
    db = await open_db(args.db)
    await db.executescript(EFFECTS_SCHEMA)
    await db.close()
    topology = single_queue_topology(args.prefix)
    consumer: InboxConsumer[Item] = InboxConsumer(
        settings,
        db_path=args.db,
        topology=topology,
        queue=f"{args.prefix}.work",
        handler=effect_handler,
        decode=Item.model_validate_json,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, consumer.stop)
    loop.add_signal_handler(signal.SIGINT, consumer.stop)
    task = asyncio.create_task(consumer.run())
    await consumer.consuming.wait()
    if args.ready_file:
        await asyncio.to_thread(Path(args.ready_file).write_text, "ready")
    await task
    print(json.dumps(consumer.stats.__dict__))


async def consume_acking_first(args: argparse.Namespace, settings: MessagingSettings) -> None:
    """TEST ONLY, deliberately broken: acks every delivery on receipt and only then writes its effect
    (no inbox, no transaction around the ack). A SIGKILL loses what was acked but not yet written: the
    chaos hunt's tests use it to show that a loss is found and shrunk to a minimal fault schedule."""
    from .connector import ClusterConnector

    db = await open_db(args.db)
    await db.executescript(EFFECTS_SCHEMA)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    bodies: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def work() -> None:
        while True:
            message_id, body = await bodies.get()
            await asyncio.sleep(args.handler_delay_ms / 1000)
            item = Item.model_validate_json(body)
            await db.execute(
                "INSERT INTO effects (message_id, seq, redelivered, at) VALUES (?, ?, 0, 0)",
                (message_id, item.seq),
            )
            bodies.task_done()

    worker = asyncio.create_task(work())
    connector = ClusterConnector(settings, name="testprocs:broken-consumer")
    while not stop.is_set():
        try:
            connection = await connector.connect(stop)
        except ConnectionError:
            break
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_, ev=lost: ev.set())

        async def on_message(message: Any) -> None:
            await message.ack()  # the bug: acknowledged before the effect exists
            bodies.put_nowait((message.message_id or "", message.body))

        try:
            # Deadlines as in InboxConsumer: on a node still recovering from an earlier fault these can
            # hang, and a consumer that never subscribes would stall the hunt's workload (seen in CI).
            async with asyncio.timeout(2 * settings.connect_timeout_s):
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=settings.prefetch)
                queue = await channel.get_queue(f"{args.prefix}.work", ensure=False)
                await queue.consume(on_message)
        except Exception as exc:  # any failure to subscribe: another connection, maybe another node
            log.warning("subscribe failed; reconnecting", extra={"error": repr(exc)})
            with contextlib.suppress(Exception):
                await connection.close()
            await asyncio.sleep(settings.reconnect_initial_s)
            continue
        if args.ready_file:
            await asyncio.to_thread(Path(args.ready_file).write_text, "ready")
        await asyncio.wait(
            {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )
        with contextlib.suppress(Exception):
            await connection.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(bodies.join(), 5)
    worker.cancel()
    await db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m system.messaging.workload")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--db", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--exchange", required=True)
    p.add_argument("--pad", type=int, default=0)
    p.add_argument("--per-tx", type=int, default=1)
    c = sub.add_parser("consume")
    c.add_argument("--db", required=True)
    c.add_argument("--prefix", required=True)
    c.add_argument("--handler-delay-ms", type=float, default=0.0)
    c.add_argument("--ready-file")
    c.add_argument(
        "--ack-on-receipt", action="store_true", help="TEST ONLY: a deliberately broken consumer (acks first)"
    )
    args = parser.parse_args(argv)
    configure_logging("INFO")
    settings = MessagingSettings()
    runner: Any = produce if args.cmd == "produce" else consume
    if args.cmd == "consume" and args.ack_on_receipt:
        runner = consume_acking_first
    try:
        asyncio.run(runner(args, settings))
    except BaseException:
        # Exit, never hang: a DB connection left open by the crash keeps aiosqlite's non-daemon thread
        # (and so the process) alive, and a supervisor restarts only a process that exited.
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
