"""OutboxRelay against a real SQLite file and a scripted publisher (no broker)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

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


async def test_a_quiet_relay_polls_slowly_yet_still_finds_rows_another_process_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle cost: after ``relay_quiet_after_s`` without a row, the relay polls every ``relay_quiet_poll_s``
    (not every ``relay_idle_poll_s``); a row committed without a wake-up is still sent by the next poll."""
    path = tmp_path / "svc.db"
    db = await open_db(path)
    await outbox.ensure_schema(db)
    polls = 0
    fetch = outbox.fetch_pending

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal polls
        polls += 1
        return await fetch(*args, **kwargs)

    monkeypatch.setattr(outbox, "fetch_pending", counting)
    settings = MessagingSettings(relay_idle_poll_s=0.01, relay_quiet_poll_s=0.25, relay_quiet_after_s=0.1)
    publisher = ScriptedPublisher(unroutable="", returns=0)
    relay = OutboxRelay(path, publisher, settings)
    stop, written = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(relay.run(stop, drain_after=written))
    await asyncio.sleep(1.0)
    assert polls < 20  # ~10 fast polls, then ~4 quiet ones; at the fast period it would be ~100
    message = OutgoingMessage.json("ex", "k", {"i": 1})
    async with transaction(db):  # another connection, no notify(): found by polling only
        await outbox.add(db, message)
    written.set()
    await asyncio.wait_for(task, 2.0)  # the next quiet poll sends it, then nothing is pending
    assert publisher.sent == [message.message_id]
    assert await outbox.count_pending(db) == 0
    await db.close()


class SlowAfterFirst(ScriptedPublisher):
    """Confirms the first message at once and every other one ``delay_s`` later."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(unroutable="", returns=0)
        self.delay_s = delay_s

    async def publish(self, message: OutgoingMessage) -> None:
        first = not self.sent
        await super().publish(message)
        if not first:
            await asyncio.sleep(self.delay_s)


async def test_a_relay_stopped_during_a_slow_flush_finishes_it_and_leaves_the_database_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping the relay cancels its flusher once the publishes in flight are done; a flush still in
    progress must reach its COMMIT (a cut one left its transaction open, the write lock held for ever, or
    at best its confirms unrecorded)."""
    path = tmp_path / "svc.db"
    db = await open_db(path)
    await outbox.ensure_schema(db)
    async with transaction(db):
        for i in range(5):
            await outbox.add(db, OutgoingMessage.json("ex", "k", {"i": i}))
    in_flush = asyncio.Event()
    mark_sent = outbox.mark_sent
    calls = 0

    async def slow_first_mark_sent(conn: Any, ids: Any, at: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the flusher's, for the first confirm: still running when the relay stops
            in_flush.set()
            await asyncio.sleep(1.5)
        await mark_sent(conn, ids, at)

    monkeypatch.setattr(outbox, "mark_sent", slow_first_mark_sent)
    relay = OutboxRelay(path, SlowAfterFirst(delay_s=0.5), MessagingSettings())
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await asyncio.wait_for(in_flush.wait(), 5)
    stop.set()  # the other publishes end at 0.5 s, then the flusher is cancelled mid-flush
    await asyncio.wait_for(task, 10)
    assert await outbox.count_pending(db) == 0  # the flush in progress was not cut
    other = await open_db(path)
    await asyncio.wait_for(other.execute("BEGIN IMMEDIATE"), 2)  # nobody holds the write lock
    await other.execute("ROLLBACK")
    await other.close()
    await db.close()
