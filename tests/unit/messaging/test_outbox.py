"""Outbox row state transitions (pure) and the SQL that stores them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from system.messaging import outbox
from system.messaging.db import open_db
from system.messaging.envelope import OutgoingMessage
from system.messaging.outbox import Confirmed, OutboxStatus, Returned, RowState, eligible, transition

from .conftest import run_closing

events = st.lists(
    st.one_of(
        st.builds(Confirmed, at=st.floats(0, 1e6)),
        st.builds(Returned, at=st.floats(0, 1e6), base_backoff_s=st.floats(0.01, 10)),
    ),
    max_size=20,
)


@given(events)
def test_sent_is_final_and_attempts_only_grow(evs: list[Confirmed | Returned]) -> None:
    state = RowState()
    was_sent = False
    for ev in evs:
        new = transition(state, ev)
        assert new.attempts >= state.attempts
        if was_sent:
            assert new == state  # nothing moves a sent row (a late return of an old copy included)
        if isinstance(ev, Confirmed):
            assert new.status is OutboxStatus.SENT
        was_sent = new.status is OutboxStatus.SENT
        state = new
    assert (state.status is OutboxStatus.SENT) == any(isinstance(e, Confirmed) for e in evs)


@given(st.integers(0, 30), st.floats(0, 1e6), st.floats(0.01, 10))
def test_a_returned_row_stays_pending_and_waits_a_growing_backoff(
    attempts: int, now: float, base: float
) -> None:
    state = RowState(attempts=attempts)
    after = transition(state, Returned(now, base))
    assert after.status is OutboxStatus.PENDING and after.attempts == attempts + 1
    assert not eligible(after, now) and eligible(after, now + outbox.MAX_BACKOFF_S + 1)
    assert transition(after, Returned(now, base)).next_attempt_at >= after.next_attempt_at
    assert not eligible(transition(state, Confirmed(now)), now + 1e9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["confirm", "return", "crash"]), min_size=1, max_size=12))
def test_store_follows_the_transitions(actions: list[str]) -> None:
    """Against a real SQLite file: pending rows are exactly those never confirmed; a crash changes nothing."""

    async def scenario(path: Path) -> None:
        db = await open_db(path)
        await outbox.ensure_schema(db)
        await db.execute("BEGIN IMMEDIATE")
        for i in range(len(actions)):
            await outbox.add(db, OutgoingMessage.json("ex", "k", {"i": i}))
        await db.execute("COMMIT")
        rows = await outbox.fetch_pending(db, after_id=0, limit=100, now=1e12)
        assert len(rows) == len(actions)
        confirmed = []
        for row, action in zip(rows, actions, strict=True):
            if action == "confirm":
                confirmed.append(row.id)
            elif action == "return":
                state = transition(row.state, Returned(1000.0, 1.0))
                await outbox.save_states(db, [(row.id, state, "unroutable")])
        await outbox.mark_sent(db, confirmed, 1000.0)
        await db.close()
        db = await open_db(path)  # "restart": only committed state counts
        pending = await outbox.fetch_pending(db, after_id=0, limit=100, now=1e12)
        assert {r.id for r in pending} == {r.id for r in rows} - set(confirmed)
        assert await outbox.count_pending(db) == len(actions) - len(confirmed)
        due_now = await outbox.fetch_pending(db, after_id=0, limit=100, now=1000.0)
        assert {r.id for r, a in zip(rows, actions, strict=True) if a == "crash"} == {r.id for r in due_now}
        # the same message comes back with the same id (republish = same message id)
        assert {r.message.message_id for r in pending} <= {r.message.message_id for r in rows}
        await db.close()

    with tempfile.TemporaryDirectory() as tmp:
        run_closing(scenario(Path(tmp) / "outbox.db"))


def test_a_row_keeps_its_expiration_and_add_once_keeps_one_row_per_id() -> None:
    async def scenario(path: Path) -> None:
        db = await open_db(path)
        await outbox.ensure_schema(db)
        await db.execute("BEGIN IMMEDIATE")
        short = OutgoingMessage.json("ex", "k", {"a": 1}, message_id="qr-1", expiration_ms=3000)
        assert await outbox.add_once(db, short)
        assert not await outbox.add_once(db, short)  # a handler run again writes nothing twice
        await outbox.add(db, OutgoingMessage.json("ex", "k", {"b": 2}, message_id="plain"))
        await db.execute("COMMIT")
        rows = await outbox.fetch_pending(db, after_id=0, limit=10, now=1e12)
        assert [(r.message.message_id, r.message.expiration_ms) for r in rows] == [
            ("qr-1", 3000),
            ("plain", None),
        ]
        await db.close()

    with tempfile.TemporaryDirectory() as tmp:
        run_closing(scenario(Path(tmp) / "outbox.db"))
