"""TEST ONLY: a deliberately broken consumer for the drill to catch (``test_ack_before_commit``).

It acks every message the moment it arrives and writes the notifications afterwards, with no inbox.
A replica killed between the two has told the broker "done" for work it never committed, so those
state changes are never notified: the loss audit must see it. The real service uses the
:class:`~system.messaging.InboxConsumer` (ack after commit) and never runs this module.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol

import aio_pika
import aiosqlite

from system.logs import get_logger
from system.messaging import MalformedMessage, MessagingSettings
from system.messaging.connector import ClusterConnector
from system.messaging.db import begin_immediate, open_db

from . import store
from .handlers import decode_state_changed, record_owed

log = get_logger(__name__)


class ReceivedMessage(Protocol):
    """What this consumer needs of a delivery (aio-pika's incoming message has it)."""

    @property
    def body(self) -> bytes:
        """The raw body."""

    @property
    def message_id(self) -> str | None:
        """The AMQP message id."""

    async def ack(self, multiple: bool = False) -> None:
        """Tell the broker the message is done."""


class AckFirst:
    """The broken order of operations, on purpose: :meth:`on_delivery` acks at once and queues the
    message; :meth:`process_next` decodes it and commits its notifications later (no inbox)."""

    def __init__(self, work_s: float = 0.0) -> None:
        self.received: asyncio.Queue[ReceivedMessage] = asyncio.Queue()
        # Time the work takes after the ack (a slow provider call, say): acked messages pile up in
        # memory meanwhile, which is exactly what a kill then loses.
        self.work_s = work_s

    async def on_delivery(self, message: ReceivedMessage) -> None:
        """The consumer callback: ack on receipt (the bug), then hand the message to the worker."""
        await message.ack()
        self.received.put_nowait(message)

    async def process_next(self, db: aiosqlite.Connection) -> None:
        """Write the next received message's notifications in a transaction of its own."""
        message = await self.received.get()
        if self.work_s:
            await asyncio.sleep(self.work_s)
        try:
            change = decode_state_changed(message.body)
        except MalformedMessage as exc:
            log.error(
                "malformed message acked and dropped",
                extra={"message_id": message.message_id, "error": str(exc)},
            )
            return
        await begin_immediate(db)
        try:
            await record_owed(db, change, message.message_id or "")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")


async def consume_ack_first(
    messaging: MessagingSettings, db_path: Path, queue: str, work_s: float = 0.05
) -> None:
    """Consume ``queue`` the broken way until cancelled; reconnects like any consumer."""
    db = await open_db(db_path)
    await db.executescript(store.SCHEMA)
    connector = ClusterConnector(messaging, name=f"ack-first:{queue}")
    consumer = AckFirst(work_s)

    async def work() -> None:
        while True:
            try:
                await consumer.process_next(db)
            except Exception:  # already acked: whatever failed here is lost (that is the bug)
                log.exception("processing failed after the ack")

    worker = asyncio.create_task(work())
    log.warning("TEST ONLY: consuming with ack before commit (no inbox)", extra={"queue": queue})
    try:
        while True:
            try:
                connection = await connector.connect()
            except ConnectionError:
                return
            try:
                await _session(connection, consumer, queue, messaging.prefetch)
            except (aio_pika.exceptions.AMQPError, ConnectionError, OSError) as exc:
                log.warning("ack-first consumer session failed", extra={"error": repr(exc)})
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()
            await asyncio.sleep(messaging.reconnect_initial_s)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await db.close()


async def _session(
    connection: aio_pika.abc.AbstractConnection, consumer: AckFirst, queue: str, prefetch: int
) -> None:
    """Consume on one channel until it or its connection closes."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    q = await channel.get_queue(queue, ensure=False)
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda *_: closed.set())
    channel.close_callbacks.add(lambda *_: closed.set())
    await q.consume(consumer.on_delivery)
    await closed.wait()
