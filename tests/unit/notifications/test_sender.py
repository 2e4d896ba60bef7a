"""The sender sweep with a scripted provider: sent, failed with the reason, retried after backoff, and a
crash between the provider's answer and "sent" re-sends the same notification_id (never a new one)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from system.domain.lifecycle import State
from system.notifications import store
from system.notifications.decide import owed
from system.notifications.providers import Refused, RetryLater, SendOutcome, Sent
from system.notifications.sender import Sender
from system.notifications.settings import NotificationsSettings

from .conftest import FakeRuntime, change, open_store, rows


class Scripted:
    """A provider answering per notification state from a script (default: sent); counts sends."""

    def __init__(self, script: Mapping[str, list[SendOutcome]] | None = None) -> None:
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.sends: Counter[str] = Counter()

    async def send(self, body: Mapping[str, str]) -> SendOutcome:
        self.sends[body["notification_id"]] += 1
        queue = self.script.get(body["state"], [])
        if queue:
            outcome = queue.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return Sent("202")

    async def close(self) -> None:
        return None


SETTINGS = NotificationsSettings(batch_size=4, backoff_initial_s=0.05, backoff_max_s=0.1, claim_s=6.0)


async def _plan(rt: FakeRuntime, *changes: object) -> list[str]:
    ids: list[str] = []
    async with rt.transaction() as tx:
        for i, c in enumerate(changes):
            notes = owed(c)  # type: ignore[arg-type]
            await store.add_owed(tx, notes, f"m{i}", time.time())
            ids += [n.notification_id for n in notes]
    return ids


async def test_sent_refused_and_retried(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    rt = FakeRuntime(db)
    try:
        ids = await _plan(
            rt,
            change(State.REQUESTED, None),  # email: sent
            change(State.PICKED_UP, State.COURIER_ASSIGNED),  # sms: 503 twice, then sent
            change(State.RETURNED, State.FAILED),  # email: refused
        )
        provider = Scripted(
            {
                "picked_up": [RetryLater("HTTP 503"), RetryLater("HTTP 503")],
                "returned": [Refused("HTTP 400: bad address")],
            }
        )
        sender = Sender(SETTINGS, provider, "notifications.0:1")
        await sender(rt)  # type: ignore[arg-type]
        assert await store.status_counts(db) == {"pending": 1, "sent": 1, "failed": 1}
        deadline = time.monotonic() + 3
        while (await store.status_counts(db))["pending"] and time.monotonic() < deadline:
            await sender(rt)  # type: ignore[arg-type]
        found = await rows(db)
        by_state = {r["state"]: r for r in found.values()}
        assert by_state["picked_up"]["status"] == "sent" and by_state["picked_up"]["attempts"] == 3
        assert by_state["returned"]["status"] == "failed"
        assert by_state["returned"]["last_error"] == "HTTP 400: bad address"
        assert by_state["requested"]["status"] == "sent" and by_state["requested"]["attempts"] == 1
        assert provider.sends == Counter({ids[0]: 1, ids[1]: 3, ids[2]: 1})
    finally:
        await db.close()


async def test_a_retry_waits_for_its_backoff(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    rt = FakeRuntime(db)
    try:
        await _plan(rt, change(State.PICKED_UP, State.COURIER_ASSIGNED))
        slow = NotificationsSettings(backoff_initial_s=60, backoff_max_s=60)
        provider = Scripted({"picked_up": [RetryLater("HTTP 429", retry_after_s=None)]})
        sender = Sender(slow, provider, "notifications.0:1")
        await sender(rt)  # type: ignore[arg-type]
        await sender(rt)  # type: ignore[arg-type]
        assert sum(provider.sends.values()) == 1  # not due again for a minute
        (row,) = (await rows(db)).values()
        assert row["status"] == "pending" and row["next_attempt_at"] > time.time() + 50
        assert row["claimed_by"] is None and row["last_error"] == "HTTP 429"
    finally:
        await db.close()


async def test_a_provider_that_raises_is_a_retry_not_a_lost_row(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    rt = FakeRuntime(db)
    try:
        await _plan(rt, change(State.PICKED_UP, State.COURIER_ASSIGNED))
        provider = Scripted({"picked_up": [RuntimeError("bug")]})  # type: ignore[list-item]
        await Sender(SETTINGS, provider, "o")(rt)  # type: ignore[arg-type]
        (row,) = (await rows(db)).values()
        assert row["status"] == "pending" and "bug" in row["last_error"]
    finally:
        await db.close()


async def test_full_batches_drain_in_one_sweep(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    rt = FakeRuntime(db)
    try:
        ids = await _plan(
            rt, *(change(State.DELIVERED, State.IN_TRANSIT, delivery=f"d{i}") for i in range(9))
        )
        provider = Scripted()
        await Sender(SETTINGS, provider, "o")(rt)  # type: ignore[arg-type]
        assert len(ids) == 18 and provider.sends == Counter(dict.fromkeys(ids, 1))
        assert await store.status_counts(db) == {"pending": 0, "sent": 18, "failed": 0}
    finally:
        await db.close()


async def test_crash_after_the_providers_answer_resends_the_same_id(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    rt = FakeRuntime(db)
    try:
        ids = await _plan(rt, change(State.DELIVERED, State.IN_TRANSIT))
        provider = Scripted()
        # replica A claims and sends, then dies before recording the answer
        async with rt.transaction() as tx:
            claimed = await store.claim_due(tx, "A", time.time(), 0.2, 10)
        for c in claimed:
            assert await provider.send(c.body) == Sent("202")
        # while A's claim holds, B sends nothing
        b = Sender(NotificationsSettings(claim_s=6.0), provider, "B")
        await b(rt)  # type: ignore[arg-type]
        assert sum(provider.sends.values()) == 2
        deadline = time.monotonic() + 3
        while (await store.status_counts(db))["pending"] and time.monotonic() < deadline:
            await b(rt)  # type: ignore[arg-type]
        assert await store.status_counts(db) == {"pending": 0, "sent": 2, "failed": 0}
        # each notification went out twice with its own id: re-sends, no new notification ids
        assert provider.sends == Counter(dict.fromkeys(ids, 2))
        assert {r["attempts"] for r in (await rows(db)).values()} == {2}
    finally:
        await db.close()
