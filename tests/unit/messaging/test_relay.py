"""OutboxRelay against a real SQLite file and a scripted publisher (no broker)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from system.messaging import outbox
from system.messaging.db import open_db, transaction
from system.messaging.envelope import OutgoingMessage
from system.messaging.publisher import UnroutableMessage
from system.messaging.relay import OutboxRelay
from system.messaging.settings import MessagingSettings


class ScriptedPublisher:
    """Confirms everything, except that the first ``returns`` publishes of ``unroutable`` are returned."""

    def __init__(self, unroutable: str, returns: int) -> None:
        self.sent: list[str] = []
        self.unroutable, self.returns = unroutable, returns

    async def publish(self, message: OutgoingMessage) -> None:
        self.sent.append(message.message_id)
        await asyncio.sleep(0)
        if message.message_id == self.unroutable and self.returns > 0:
            self.returns -= 1
            raise UnroutableMessage(message, "NO_ROUTE")

    async def close(self) -> None:
        pass


async def test_every_committed_row_is_sent_once_and_returned_rows_are_retried(tmp_path: Path) -> None:
    path = tmp_path / "svc.db"
    db = await open_db(path)
    await outbox.ensure_schema(db)
    messages = [OutgoingMessage.json("ex", "k", {"i": i}) for i in range(300)]
    async with transaction(db):
        for m in messages[:150]:
            await outbox.add(db, m)
    publisher = ScriptedPublisher(unroutable=messages[7].message_id, returns=2)
    settings = MessagingSettings(confirm_window=16, relay_batch=40, relay_retry_backoff_s=0.01)
    relay = OutboxRelay(path, publisher, settings)
    stop, written = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(relay.run(stop, drain_after=written))
    async with transaction(db):  # rows committed while the relay runs
        for m in messages[150:]:
            await outbox.add(db, m)
    relay.notify()
    written.set()
    await asyncio.wait_for(task, 20)

    assert await outbox.count_pending(db) == 0
    assert publisher.sent.count(messages[7].message_id) == 3  # returned twice, then confirmed
    others = [mid for mid in publisher.sent if mid != messages[7].message_id]
    assert sorted(others) == sorted(m.message_id for m in messages if m is not messages[7])
    cursor = await db.execute("SELECT attempts FROM outbox WHERE message_id = ?", (messages[7].message_id,))
    assert (await cursor.fetchone()) == (2,)
    await db.close()
