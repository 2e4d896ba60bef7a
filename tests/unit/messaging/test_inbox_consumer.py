"""The consumer's transaction logic (real SQLite, fake channel/publisher): effects exactly once."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
from aiormq.abc import DeliveredMessage
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp.header import ContentHeader

from system.messaging import inbox
from system.messaging.consumer import InboxConsumer, MalformedMessage, _Delivery
from system.messaging.db import open_db
from system.messaging.envelope import ATTEMPT, PARK_REASON, InboundMessage, OutgoingMessage
from system.messaging.settings import MessagingSettings
from system.messaging.topology import Binding, Exchange, RetryTier, Service, Topology, WorkQueue

from .conftest import run_closing

TOPO = Topology(
    exchanges=(Exchange("ex"),),
    services=(
        Service(
            "s",
            consumes=(WorkQueue("q", (Binding("ex", "#"),), (RetryTier(10), RetryTier(20)), max_attempts=3),),
        ),
    ),
)


@dataclass
class FakeChannel:
    """Settlement as AMQP defines it: ``multiple`` settles every outstanding tag up to ``tag``; settling a
    tag twice is the broker's PRECONDITION_FAILED (it closes the channel)."""

    delivered: set[int] = field(default_factory=set)
    acked: list[int] = field(default_factory=list)
    nacked: list[int] = field(default_factory=list)
    frames: int = 0

    def _settle(self, tag: int, multiple: bool) -> list[int]:
        self.frames += 1
        settled = set(self.acked) | set(self.nacked)
        if tag in settled or tag not in self.delivered:
            raise AssertionError(f"PRECONDITION_FAILED - unknown delivery tag {tag}")
        return sorted(t for t in self.delivered - settled if t <= tag) if multiple else [tag]

    async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.acked.extend(self._settle(tag, multiple))

    async def basic_nack(
        self, tag: int, multiple: bool = False, requeue: bool = True, wait: bool = True
    ) -> None:
        self.nacked.extend(self._settle(tag, multiple))


@dataclass
class FakePublisher:
    published: list[OutgoingMessage] = field(default_factory=list)

    async def publish(self, message: OutgoingMessage) -> None:
        self.published.append(message)

    async def close(self) -> None:
        pass


def delivery(channel: FakeChannel, tag: int, message_id: str, body: bytes, attempt: int = 0) -> _Delivery:
    channel.delivered.add(tag)
    props = spec.Basic.Properties(message_id=message_id, headers={ATTEMPT: attempt} if attempt else {})
    raw = DeliveredMessage(
        delivery=spec.Basic.Deliver(delivery_tag=tag, exchange="ex", routing_key="k", redelivered=False),
        header=ContentHeader(properties=props, body_size=len(body)),
        body=body,
        channel=channel,  # type: ignore[arg-type]
    )
    return _Delivery(1, channel, raw)  # type: ignore[arg-type]


async def make_consumer(db_path: Path, fail: set[str]) -> tuple[InboxConsumer[dict[str, Any]], FakePublisher]:
    async def handler(db: aiosqlite.Connection, message: InboundMessage[dict[str, Any]]) -> None:
        await db.execute("INSERT INTO effects (message_id) VALUES (?)", (message.message_id,))
        if message.message_id in fail:
            raise RuntimeError("handler bug")  # after writing: the savepoint must undo the write

    consumer: InboxConsumer[dict[str, Any]] = InboxConsumer(
        MessagingSettings(), db_path=db_path, topology=TOPO, queue="q", handler=handler, decode=json.loads
    )
    fake = FakePublisher()
    consumer._publisher = fake  # type: ignore[assignment]
    consumer._generation = 1
    return consumer, fake


# A delivery: (message id from a small pool so duplicates happen, handler fails?, malformed body?)
deliveries = st.lists(
    st.tuples(st.sampled_from("abcdef"), st.booleans(), st.integers(0, 9).map(lambda n: n == 0)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(deliveries, st.integers(1, 8))
def test_effects_exactly_once_and_every_delivery_settled_once(
    script: list[tuple[str, bool, bool]], batch_size: int
) -> None:
    async def scenario(db_path: Path) -> None:
        db = await open_db(db_path)
        await db.execute("CREATE TABLE effects (message_id TEXT NOT NULL)")
        await inbox.ensure_schema(db)
        failing = {mid for mid, fails, _ in script if fails}
        consumer, publisher = await make_consumer(db_path, failing)
        channel = FakeChannel()
        items = [
            delivery(channel, tag, mid, b"{oops" if malformed else b'{"x": 1}')
            for tag, (mid, _, malformed) in enumerate(script, start=1)
        ]
        for i in range(0, len(items), batch_size):
            await consumer._process(db, items[i : i + batch_size])

        rows = [r[0] for r in await (await db.execute("SELECT message_id FROM effects")).fetchall()]
        assert len(rows) == len(set(rows)), "an effect was applied twice"
        should_succeed = {mid for mid, _, malformed in script if not malformed and mid not in failing}
        assert set(rows) == should_succeed
        processed = {r[0] for r in await (await db.execute("SELECT message_id FROM inbox")).fetchall()}
        assert processed == should_succeed  # inbox row iff effects committed
        assert sorted(channel.acked) == list(range(1, len(script) + 1)) and not channel.nacked
        assert channel.frames == -(-len(script) // batch_size), "one multiple ack per batch"
        rerouted = [m.message_id for m in publisher.published]
        expected = [mid for mid, _, malformed in script if malformed or mid in failing]
        assert sorted(rerouted) == sorted(expected)
        for m in publisher.published:
            if PARK_REASON in m.headers:
                assert m.exchange == TOPO.parked_exchange and m.routing_key == "q"
            else:
                assert m.exchange == TOPO.retry_exchange and m.routing_key.startswith("q.retry.")
        assert consumer.stats.duplicates == sum(
            1 for mid, _, malformed in script if not malformed and mid in should_succeed
        ) - len(should_succeed)
        await db.close()

    with tempfile.TemporaryDirectory() as tmp:
        run_closing(scenario(Path(tmp) / "inbox.db"))


def test_third_failure_parks_with_reason_and_origin() -> None:
    async def scenario(db_path: Path) -> None:
        db = await open_db(db_path)
        await db.execute("CREATE TABLE effects (message_id TEXT NOT NULL)")
        await inbox.ensure_schema(db)
        consumer, publisher = await make_consumer(db_path, {"m"})
        channel = FakeChannel()
        for attempt in range(3):
            await consumer._process(db, [delivery(channel, attempt + 1, "m", b"{}", attempt=attempt)])
        first, second, third = publisher.published
        assert (first.routing_key, second.routing_key) == ("q.retry.10ms", "q.retry.20ms")
        assert third.exchange == TOPO.parked_exchange
        assert "handler failed 3 times" in third.headers[PARK_REASON]
        assert third.headers["x-drill-original-exchange"] == "ex"
        assert third.headers["x-drill-original-routing-key"] == "k"
        await db.close()

    with tempfile.TemporaryDirectory() as tmp:
        run_closing(scenario(Path(tmp) / "inbox.db"))


def test_a_failing_handler_runs_once_per_delivery_and_its_neighbours_commit() -> None:
    calls: list[str] = []

    async def scenario(db_path: Path) -> None:
        db = await open_db(db_path)
        await db.execute("CREATE TABLE effects (message_id TEXT NOT NULL)")
        await inbox.ensure_schema(db)
        consumer, publisher = await make_consumer(db_path, {"bad"})
        inner = consumer._handler

        async def counting(db: aiosqlite.Connection, message: InboundMessage[dict[str, Any]]) -> None:
            calls.append(message.message_id)
            await inner(db, message)

        consumer._handler = counting
        channel = FakeChannel()
        batch = [
            delivery(channel, 1, "a", b"{}"),
            delivery(channel, 2, "bad", b"{}"),
            delivery(channel, 3, "c", b"{}"),
        ]
        await consumer._process(db, batch)
        rows = sorted(r[0] for r in await (await db.execute("SELECT message_id FROM effects")).fetchall())
        assert rows == ["a", "c"]
        assert calls.count("bad") == 1  # one delivery, one attempt, one failure
        assert [m.message_id for m in publisher.published] == ["bad"]
        assert sorted(channel.acked) == [1, 2, 3]
        await db.close()

    with tempfile.TemporaryDirectory() as tmp:
        run_closing(scenario(Path(tmp) / "inbox.db"))


def test_a_handler_that_finds_the_message_malformed_parks_it_at_once() -> None:
    async def scenario(db_path: Path) -> None:
        db = await open_db(db_path)
        await db.execute("CREATE TABLE effects (message_id TEXT NOT NULL)")
        await inbox.ensure_schema(db)
        consumer, publisher = await make_consumer(db_path, set())

        async def refuse(db: aiosqlite.Connection, message: InboundMessage[dict[str, Any]]) -> None:
            await db.execute("INSERT INTO effects (message_id) VALUES (?)", (message.message_id,))
            raise MalformedMessage("answer for unknown delivery dlv_9")

        consumer._handler = refuse
        channel = FakeChannel()
        await consumer._process(db, [delivery(channel, 1, "m", b"{}")])
        (parked,) = publisher.published  # no retry tier: straight to the parking lot
        assert parked.exchange == TOPO.parked_exchange
        assert "malformed: answer for unknown delivery dlv_9" in parked.headers[PARK_REASON]
        assert await (await db.execute("SELECT COUNT(*) FROM effects")).fetchone() == (0,)
        assert channel.acked == [1]
        await db.close()

    with tempfile.TemporaryDirectory() as tmp:
        run_closing(scenario(Path(tmp) / "inbox.db"))


def test_a_multiple_ack_never_settles_a_delivery_outside_its_batch() -> None:
    """Out of order (a batch whose tags do not follow the last settled one) or after a requeued batch,
    each delivery is acked by its own tag; in order, one ``multiple`` ack settles the batch."""

    async def scenario(db_path: Path) -> None:
        db = await open_db(db_path)
        await db.execute("CREATE TABLE effects (message_id TEXT NOT NULL)")
        await inbox.ensure_schema(db)
        consumer, _ = await make_consumer(db_path, set())
        channel = FakeChannel()
        items = [delivery(channel, t, f"m{t}", b"{}") for t in range(1, 9)]
        await consumer._process(db, items[2:4])  # 3, 4 while 1, 2 are still outstanding
        await consumer._process(db, items[4:5])
        assert sorted(channel.acked) == [3, 4, 5], "1 and 2 are not this consumer's to settle yet"
        real = consumer._batch_fast

        async def locked(db: aiosqlite.Connection, batch: list[Any]) -> Any:
            raise aiosqlite.OperationalError("database is locked")

        consumer._batch_fast = locked  # type: ignore[method-assign]
        await consumer._process(db, items[0:2])
        assert channel.nacked == [1, 2]
        consumer._batch_fast = real  # type: ignore[method-assign]
        frames = channel.frames
        await consumer._process(db, items[5:6])
        await consumer._process(db, items[6:8])
        assert sorted(channel.acked) == [3, 4, 5, 6, 7, 8] and channel.nacked == [1, 2]
        assert channel.frames - frames == 2, (
            "back to one multiple ack per batch once every earlier tag is settled"
        )
        await db.close()

    with tempfile.TemporaryDirectory() as tmp:
        run_closing(scenario(Path(tmp) / "inbox.db"))
