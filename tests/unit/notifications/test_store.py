"""The notifications table: one row per dedup key, claims that never overlap, final states stay final."""

from __future__ import annotations

import asyncio
from pathlib import Path

from system.domain.lifecycle import State
from system.messaging.db import begin_immediate
from system.notifications import store
from system.notifications.decide import owed

from .conftest import FakeRuntime, change, open_store, rows


async def test_a_state_change_is_stored_once_whatever_carries_it(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    try:
        delivered = owed(change(State.DELIVERED, State.IN_TRANSIT))
        async with FakeRuntime(db).transaction() as tx:
            assert await store.add_owed(tx, delivered, "m1", 1.0) == 2
            # the same message again, and the same state change in another message: nothing new
            assert await store.add_owed(tx, delivered, "m1", 2.0) == 0
            assert await store.add_owed(tx, owed(change(State.DELIVERED, State.PICKED_UP)), "m2", 3.0) == 0
        found = await rows(db)
        assert len(found) == 2
        sms = next(r for r in found.values() if r["channel"] == "sms")
        assert (sms["status"], sms["attempts"], sms["source_message_id"], sms["created_at"]) == (
            "pending",
            0,
            "m1",
            1.0,
        )
        assert '"state":"delivered"' in sms["body"] and sms["recipient"] == "+447700900786"
    finally:
        await db.close()


async def _seed(db: object, count: int) -> list[str]:
    ids = []
    async with FakeRuntime(db).transaction() as tx:  # type: ignore[arg-type]
        for i in range(count):
            notes = owed(change(State.PICKED_UP, State.COURIER_ASSIGNED, delivery=f"dlv_{i}"))
            await store.add_owed(tx, notes, f"m{i}", float(i))
            ids += [n.notification_id for n in notes]
    return ids


async def test_claims_are_disjoint_expire_and_count_attempts(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    try:
        ids = await _seed(db, 5)
        rt = FakeRuntime(db)
        async with rt.transaction() as tx:
            a = await store.claim_due(tx, "a", now=100.0, claim_s=10.0, limit=3)
            b = await store.claim_due(tx, "b", now=100.0, claim_s=10.0, limit=3)
            c = await store.claim_due(tx, "c", now=105.0, claim_s=10.0, limit=3)
        assert len(a) == 3 and len(b) == 2 and c == []
        assert {x.notification_id for x in a} | {x.notification_id for x in b} == set(ids)
        assert not {x.notification_id for x in a} & {x.notification_id for x in b}
        assert all(x.attempts == 1 and x.body["state"] == "picked_up" for x in a + b)
        # a's claims expire (a died): another replica takes them, attempts counts the second claim
        async with rt.transaction() as tx:
            taken = await store.claim_due(tx, "c", now=110.0, claim_s=10.0, limit=10)
        assert {x.notification_id for x in taken} == set(ids)
        assert {x.attempts for x in taken} == {2}
        assert {r["claimed_by"] for r in (await rows(db)).values()} == {"c"}
    finally:
        await db.close()


async def test_outcomes_sent_failed_and_retry(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    try:
        await _seed(db, 3)
        rt = FakeRuntime(db)
        async with rt.transaction() as tx:
            first, second, third = await store.claim_due(tx, "a", 100.0, 10.0, 10)
            assert await store.mark_sent(tx, first.notification_id, 101.0, "202 received")
            assert not await store.mark_sent(tx, first.notification_id, 102.0, "again")  # final already
            assert await store.mark_failed(tx, second.notification_id, "HTTP 400: bad phone")
            assert not await store.mark_retry(tx, third.notification_id, "b", 200.0, "not b's claim")
            assert await store.mark_retry(tx, third.notification_id, "a", 200.0, "HTTP 503")
            assert await store.status_counts(tx) == {"pending": 1, "sent": 1, "failed": 1}
            # sent and failed rows are never claimed again; the retried one only once due
            assert await store.claim_due(tx, "a", 150.0, 10.0, 10) == []
            again = await store.claim_due(tx, "a", 200.0, 10.0, 10)
        assert [x.notification_id for x in again] == [third.notification_id]
        found = await rows(db)
        assert found[first.notification_id]["provider_answer"] == "202 received"
        assert found[first.notification_id]["sent_at"] == 101.0
        assert found[second.notification_id]["last_error"] == "HTTP 400: bad phone"
        assert found[third.notification_id]["last_error"] == "HTTP 503"
        assert found[third.notification_id]["attempts"] == 2
    finally:
        await db.close()


async def test_a_late_answer_to_an_expired_claim_still_counts_as_sent(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    try:
        await _seed(db, 1)
        rt = FakeRuntime(db)
        async with rt.transaction() as tx:
            (mine,) = await store.claim_due(tx, "a", 100.0, 1.0, 10)
            (theirs,) = await store.claim_due(tx, "b", 101.5, 1.0, 10)  # a's claim expired
            assert mine.notification_id == theirs.notification_id
            assert await store.mark_sent(tx, mine.notification_id, 101.6, "202")  # a's answer arrives
            assert not await store.mark_retry(tx, theirs.notification_id, "b", 300.0, "timeout")
            assert await store.status_counts(tx) == {"pending": 0, "sent": 1, "failed": 0}
    finally:
        await db.close()


async def test_two_connections_claiming_concurrently_never_share_a_row(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    seed = await open_store(path)
    ids = await _seed(seed, 60)
    await seed.close()
    conns = [await open_store(path) for _ in range(2)]
    got: dict[str, list[str]] = {"a": [], "b": []}

    async def worker(owner: str, db: object) -> None:
        while True:
            await begin_immediate(db)  # type: ignore[arg-type]
            claimed = await store.claim_due(db, owner, 100.0, 10.0, 7)  # type: ignore[arg-type]
            await db.execute("COMMIT")  # type: ignore[attr-defined]
            if not claimed:
                return
            got[owner] += [c.notification_id for c in claimed]
            await asyncio.sleep(0)

    try:
        await asyncio.gather(worker("a", conns[0]), worker("b", conns[1]))
    finally:
        for c in conns:
            await c.close()
    assert sorted(got["a"] + got["b"]) == sorted(ids)
    assert not set(got["a"]) & set(got["b"])
