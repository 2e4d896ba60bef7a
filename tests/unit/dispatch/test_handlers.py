"""Dispatch's handlers and sweep over a real SQLite file (no broker): the booking paths end to end as rows
and outbox messages, and every path by which bad input is refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import pytest

from system.dispatch import store
from system.dispatch.decide import on_timeout
from system.dispatch.handlers import CancelReply, Dispatch, decode_answer, decode_order, decode_quoted
from system.dispatch.settings import DispatchSettings
from system.dispatch.store import SCHEMA
from system.domain.common import Money
from system.domain.dialects import BookingAnswer, CourierMessageInvalid
from system.domain.quoting import Quote
from system.messaging import MalformedMessage, inbox, outbox
from system.messaging.db import open_db, transaction
from system.messaging.envelope import InboundMessage
from system.platform import contracts
from system.platform.contracts import DeliveryQuoted, LifecycleEvent, quoted_message

T = TypeVar("T")
T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
START = T0.timestamp()


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await open_db(tmp_path / "dispatch.db")
    await conn.executescript(outbox.SCHEMA + inbox.SCHEMA + SCHEMA)
    try:
        yield conn
    finally:
        await conn.close()


def _inbound(payload: T, message_id: str) -> InboundMessage[T]:
    return InboundMessage(message_id, payload, {}, "x", "k", False, 0, b"")


def quote(courier: str, delivery_id: str = "dlv_1") -> Quote:
    return Quote(
        courier=courier, quote_id=f"q-{courier}", price=Money(amount_minor=700, currency="GBP"), vehicle="bike",
        pickup_eta=T0, dropoff_eta=T0 + timedelta(minutes=30), expires_at=T0 + timedelta(minutes=15),
        delivery_id=delivery_id, order_reference="s42-0000001",
    )  # fmt: skip


def quoted(*couriers: str, delivery_id: str = "dlv_1") -> InboundMessage[DeliveryQuoted]:
    m = DeliveryQuoted(
        message_id=f"{delivery_id}:delivery.quoted", delivery_id=delivery_id, order_reference="s42-0000001",
        retailer_id="r01", options=tuple(quote(c, delivery_id) for c in couriers), decided_at=T0,
    )  # fmt: skip
    return _inbound(decode_quoted(quoted_message(m).body), m.message_id)


def booking(courier: str, n: int, accepted: bool, *, job: str | None = None, mid: str | None = None,
            delivery_id: str = "dlv_1", **extra: Any) -> InboundMessage[BookingAnswer | CancelReply]:  # fmt: skip
    doc: dict[str, Any] = {
        "type": "booking_accepted" if accepted else "booking_rejected", "courier": courier, "dialect": "uber",
        "delivery_id": delivery_id, "order_reference": "s42-0000001", "in_reply_to": f"bk-{delivery_id}-{n}",
        "quote_id": f"q-{courier}", "message_id": mid or f"{courier}:s42-0000001:booking:{n}",
    }  # fmt: skip
    if accepted:
        doc |= {
            "courier_job_id": job or f"{courier}-job-1",
            "driver": {"id": f"{courier}-drv-1", "vehicle": "bike"},
        }
    else:
        doc["reason"] = "no_driver_available"
    doc |= extra
    return _inbound(decode_answer(json.dumps(doc).encode()), doc["message_id"])


def cancel_answer(
    courier: str, job: str, accepted: bool, *, in_reply_to: str | None = None
) -> InboundMessage[Any]:
    doc = {
        "type": "cancel_accepted" if accepted else "cancel_rejected", "courier": courier, "dialect": "uber",
        "delivery_id": "dlv_1", "order_reference": "s42-0000001", "courier_job_id": job,
        "message_id": f"{courier}:cancel:{job}", "reason": None if accepted else "too_late:picked_up",
    }  # fmt: skip
    if in_reply_to is not None:
        doc["in_reply_to"] = in_reply_to
    return _inbound(decode_answer(json.dumps(doc).encode()), str(doc["message_id"]))


def cancel_order(delivery_id: str = "dlv_1") -> InboundMessage[Any]:
    m = contracts.cancel_requested(delivery_id, "s42-0000001", "r01", "customer_request", at=0.0)
    return _inbound(decode_order(m.body), m.message_id)


async def run(db: aiosqlite.Connection, handler: Any, message: Any) -> None:
    async with transaction(db):
        await handler(db, message)


async def relay(db: aiosqlite.Connection, at: float = START) -> None:
    """What the outbox relay does once the broker confirmed: every pending row is sent at ``at``."""
    async with transaction(db):
        await db.execute("UPDATE outbox SET status = 'sent', sent_at = ? WHERE status = 'pending'", (at,))


async def sweep(db: aiosqlite.Connection, service: Dispatch, *, relayed: bool = True) -> int:
    if relayed:
        await relay(db)
    async with transaction(db):
        return await service.time_out_due(db)


async def sent(db: aiosqlite.Connection) -> list[tuple[str, str, dict[str, Any]]]:
    cursor = await db.execute("SELECT message_id, routing_key, body FROM outbox ORDER BY id")
    rows = await cursor.fetchall()
    await cursor.close()
    return [(r[0], r[1], json.loads(r[2])) for r in rows]


async def rows(db: aiosqlite.Connection, sql: str) -> list[tuple[Any, ...]]:
    cursor = await db.execute(sql)
    out = [tuple(r) for r in await cursor.fetchall()]
    await cursor.close()
    return out


def service(clock: Clock, *, asks: int = 2) -> Dispatch:
    return Dispatch(DispatchSettings(booking_timeout_s=2.0, booking_asks=asks), clock)


async def test_a_quote_books_option_zero_with_the_contracts_request(db: aiosqlite.Connection) -> None:
    d = service(Clock())
    await run(db, d.on_quoted, quoted("zoomly", "dashly"))
    ((mid, key, body),) = await sent(db)
    assert (mid, key) == ("bk-dlv_1-1", "zoomly.booking_request")
    assert body == {"type": "booking_request", "message_id": "bk-dlv_1-1", "courier": "zoomly",
                    "delivery_id": "dlv_1", "order_reference": "s42-0000001", "quote_id": "q-zoomly"}  # fmt: skip
    assert await rows(db, "SELECT number, courier, status, deadline_at FROM attempts") == [
        (1, "zoomly", "pending", START + 2.0)
    ]


async def test_rejected_then_accepted_books_the_second_courier(db: aiosqlite.Connection) -> None:
    d = service(Clock())
    await run(db, d.on_quoted, quoted("zoomly", "dashly"))
    await run(db, d.on_answer, booking("zoomly", 1, False))
    await run(db, d.on_answer, booking("dashly", 2, True))
    assert await rows(db, "SELECT status, courier, courier_job_id FROM jobs") == [
        ("booked", "dashly", "dashly-job-1")
    ]
    assert [m for m, _, _ in await sent(db)] == ["bk-dlv_1-1", "bk-dlv_1-2", "dlv_1:booked:dispatch"]
    ev = LifecycleEvent.model_validate((await sent(db))[-1][2])
    assert (ev.event.value, ev.source, ev.courier, ev.courier_job_id) == (
        "booked",
        "dispatch",
        "dashly",
        "dashly-job-1",
    )
    assert ev.driver is not None and ev.driver.id == "dashly-drv-1"
    # The courier republishes its acceptance (a new message id): nothing more is sent.
    await run(db, d.on_answer, booking("dashly", 2, True, mid="dashly:again"))
    assert len(await sent(db)) == 3


async def test_every_refusal_ends_in_no_courier(db: aiosqlite.Connection) -> None:
    d = service(Clock())
    await run(db, d.on_quoted, quoted("zoomly"))
    await run(db, d.on_answer, booking("zoomly", 1, False))
    (_, key, body) = (await sent(db))[-1]
    assert (key, body["event"], body["reason"], body["message_id"]) == (
        "no_courier", "no_courier", "every booking refused", "dlv_1:no_courier:dispatch",
    )  # fmt: skip


async def test_timeout_then_late_acceptance_is_cancelled(db: aiosqlite.Connection) -> None:
    clock = Clock()
    d = service(clock, asks=1)
    await run(db, d.on_quoted, quoted("zoomly", "pedalo"))
    clock.now = START + 1.9
    assert await sweep(db, d) == 0
    clock.now = START + 2.0
    assert await sweep(db, d) == 1
    assert await sweep(db, d) == 0
    await run(db, d.on_answer, booking("pedalo", 2, True))
    await run(db, d.on_answer, booking("zoomly", 1, True, job="zoomly-job-9"))
    assert await rows(db, "SELECT status, courier FROM jobs") == [("booked", "pedalo")]
    assert await rows(db, "SELECT number, status, courier_job_id FROM attempts ORDER BY number") == [
        (1, "released", "zoomly-job-9"),
        (2, "booked", "pedalo-job-1"),
    ]
    mid, key, body = (await sent(db))[-1]
    assert (mid, key) == ("cx-dlv_1-zoomly-job-9", "zoomly.cancel_request")
    assert body == {"type": "cancel_request", "message_id": "cx-dlv_1-zoomly-job-9", "courier": "zoomly",
                    "delivery_id": "dlv_1", "order_reference": "s42-0000001", "courier_job_id": "zoomly-job-9"}  # fmt: skip
    assert await rows(db, "SELECT courier_job_id, why, status FROM cancels") == [
        ("zoomly-job-9", "late acceptance (timed_out)", "sent")
    ]
    await run(
        db, d.on_answer, cancel_answer("zoomly", "zoomly-job-9", True, in_reply_to="cx-dlv_1-zoomly-job-9")
    )
    assert await rows(db, "SELECT status FROM cancels") == [("accepted",)]
    await run(db, d.on_answer, booking("zoomly", 1, True, job="zoomly-job-9", mid="zoomly:again"))
    assert sum(m.startswith("cx-") for m, _, _ in await sent(db)) == 1


async def test_two_replicas_sweeping_together_act_once(db: aiosqlite.Connection, tmp_path: Path) -> None:
    clock = Clock()
    d0, d1 = service(clock), service(clock)
    await run(db, d0.on_quoted, quoted("zoomly", "pedalo"))
    clock.now = START + 5
    await relay(db)
    other = await open_db(tmp_path / "dispatch.db")
    try:
        first = await sweep(db, d0)
        async with transaction(other):
            second = await d1.time_out_due(other)
    finally:
        await other.close()
    assert (first, second) == (1, 0)
    assert [m for m, _, _ in await sent(db)] == ["bk-dlv_1-1", "bk-dlv_1-1-2"]


async def test_the_booking_wait_starts_when_the_broker_confirmed_the_request(
    db: aiosqlite.Connection,
) -> None:
    # A broker outage holds the request in the outbox: timing it out then would book a second courier
    # while the first request is still to be delivered.
    clock = Clock()
    d = service(clock)
    await run(db, d.on_quoted, quoted("zoomly", "pedalo"))
    clock.now = START + 60
    assert await sweep(db, d, relayed=False) == 0  # never published: nothing to wait for yet
    await relay(db, at=START + 59)  # the broker is back; confirmed a second ago
    assert await sweep(db, d, relayed=False) == 0
    clock.now = START + 61
    assert await sweep(db, d, relayed=False) == 1
    assert [m for m, _, _ in await sent(db)] == ["bk-dlv_1-1", "bk-dlv_1-1-2"]
    # The same holds for the second ask, which waits twice as long once confirmed.
    clock.now = START + 200
    assert await sweep(db, d, relayed=False) == 0
    await relay(db, at=START + 199)
    clock.now = START + 202.9
    assert await sweep(db, d, relayed=False) == 0
    clock.now = START + 203
    assert await sweep(db, d, relayed=False) == 1
    assert [m for m, _, _ in await sent(db)] == ["bk-dlv_1-1", "bk-dlv_1-1-2", "bk-dlv_1-2"]


async def test_a_silent_courier_is_asked_again_and_its_late_acceptance_books_it(
    db: aiosqlite.Connection,
) -> None:
    clock = Clock()
    d = service(clock)
    await run(db, d.on_quoted, quoted("zoomly", "pedalo"))
    clock.now = START + 2.0
    assert await sweep(db, d) == 1
    (_, _, first), (mid, key, body) = await sent(db)
    assert (mid, key) == ("bk-dlv_1-1-2", "zoomly.booking_request")
    assert body == {**first, "message_id": "bk-dlv_1-1-2"}  # the same courier, the same quote
    assert await rows(db, "SELECT number, message_id, status, asks, deadline_at FROM attempts") == [
        (1, "bk-dlv_1-1", "pending", 2, START + 2.0 + 4.0)
    ]
    clock.now = START + 5.9
    assert await sweep(db, d) == 0
    # The answer to the first ask arrives late: zoomly is booked, nobody is released.
    await run(db, d.on_answer, booking("zoomly", 1, True))
    # zoomly answers the second ask with the same booking: a repeat.
    await run(db, d.on_answer, booking("zoomly", 1, True, mid="zoomly:again", in_reply_to="bk-dlv_1-1-2"))
    clock.now = START + 60
    assert await sweep(db, d) == 0
    assert await rows(db, "SELECT status, courier, courier_job_id FROM jobs") == [
        ("booked", "zoomly", "zoomly-job-1")
    ]
    assert [m for m, _, _ in await sent(db)] == ["bk-dlv_1-1", "bk-dlv_1-1-2", "dlv_1:booked:dispatch"]
    assert await rows(db, "SELECT COUNT(*) FROM cancels") == [(0,)]


async def test_find_attempt_resolves_the_id_of_every_ask_sent(db: aiosqlite.Connection) -> None:
    clock = Clock()
    d = service(clock, asks=3)
    await run(db, d.on_quoted, quoted("zoomly", "pedalo"))
    clock.now = START + 2.0
    assert await sweep(db, d) == 1
    found = ("dlv_1", 1, "zoomly", "q-zoomly")
    assert await store.find_attempt(db, "bk-dlv_1-1") == found
    assert await store.find_attempt(db, "bk-dlv_1-1-2") == found
    never_sent = ("bk-dlv_1-1-3", "bk-dlv_1-1-1", "bk-dlv_1-1-02", "bk-dlv_1-2", "bk-dlv_1-2-2", "bk-dlv")
    assert [await store.find_attempt(db, m) for m in never_sent] == [None] * len(never_sent)


async def test_a_cancel_after_booking_sends_a_cancel_request(db: aiosqlite.Connection) -> None:
    d = service(Clock())
    await run(db, d.on_quoted, quoted("dashly"))
    await run(db, d.on_answer, booking("dashly", 1, True))
    await run(db, d.on_order, cancel_order())
    assert await rows(db, "SELECT status FROM jobs") == [("cancelled",)]
    mid, key, _ = (await sent(db))[-1]
    assert (mid, key) == ("cx-dlv_1-dashly-job-1", "dashly.cancel_request")
    await run(db, d.on_order, cancel_order())  # a replayed cancel (new delivery): no second request
    assert sum(m.startswith("cx-") for m, _, _ in await sent(db)) == 1
    # An answer without in_reply_to is matched by the courier job.
    await run(db, d.on_answer, cancel_answer("dashly", "dashly-job-1", False))
    assert await rows(db, "SELECT status, reason FROM cancels") == [("rejected", "too_late:picked_up")]


async def test_a_cancel_while_booking_cancels_the_acceptance_that_follows(db: aiosqlite.Connection) -> None:
    d = service(Clock())
    await run(db, d.on_quoted, quoted("zoomly", "dashly"))
    await run(db, d.on_order, cancel_order())
    await run(db, d.on_answer, booking("zoomly", 1, True))
    assert await rows(db, "SELECT status, courier FROM jobs") == [("cancelled", None)]
    assert [m for m, _, _ in await sent(db)] == ["bk-dlv_1-1", "cx-dlv_1-zoomly-job-1"]


async def test_a_cancel_before_the_quote_books_nothing(db: aiosqlite.Connection) -> None:
    d = service(Clock())
    await run(db, d.on_order, cancel_order())
    await run(db, d.on_quoted, quoted("zoomly"))
    assert await rows(db, "SELECT status, quoted FROM jobs") == [("cancelled", 1)]
    assert await sent(db) == []


async def test_order_updates_other_than_cancels_change_nothing(db: aiosqlite.Connection) -> None:
    d = service(Clock())
    body = (
        b'{"type": "order.updated", "message_id": "dlv_1:order.updated:v2", "delivery_id": "dlv_1",'
        b' "order_reference": "s42-0000001", "version": 2, "updated_at": "2026-11-18T11:00:00.000Z",'
        b' "request": {}}'
    )
    await run(db, d.on_order, _inbound(decode_order(body), "dlv_1:order.updated:v2"))
    assert await rows(db, "SELECT COUNT(*) FROM jobs") == [(0,)]


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (lambda: booking("zoomly", 7, True), "'bk-dlv_1-7', a booking request dispatch did not send"),
        (
            lambda: booking("zoomly", 1, True, in_reply_to="bk-dlv_1-1-2"),  # an ask not made yet
            "'bk-dlv_1-1-2', a booking request dispatch did not send",
        ),
        (lambda: booking("dashly", 1, True, quote_id="q-dashly"), "the request went to 'zoomly'"),
        (lambda: booking("zoomly", 1, True, quote_id="q-other"), "quote 'q-other'"),
        (lambda: cancel_answer("zoomly", "no-such-job", True), "cancel request dispatch did not send"),
    ],
)
async def test_answers_that_match_no_request_are_malformed(
    db: aiosqlite.Connection, message: Any, match: str
) -> None:
    d = service(Clock())
    await run(db, d.on_quoted, quoted("zoomly", "dashly"))
    with pytest.raises(MalformedMessage, match=match):
        await run(db, d.on_answer, message())
    assert await rows(db, "SELECT status FROM attempts") == [("pending",)]


def _doc(**changes: Any) -> bytes:
    doc = {"type": "booking_accepted", "courier": "zoomly", "order_reference": "s1", "in_reply_to": "bk-d-1",
           "quote_id": "q", "message_id": "m", "courier_job_id": "j", "driver": {"id": "d", "vehicle": "bike"}}  # fmt: skip
    return json.dumps({k: v for k, v in (doc | changes).items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{", "not JSON"),
        (b'"text"', "must be a JSON object"),
        (_doc(type="booking_maybe"), "not a booking or cancel answer"),
        (_doc(courier_job_id=None), "without courier_job_id"),
        (_doc(in_reply_to=None), "no in_reply_to"),
        (_doc(driver={"id": 5}), "driver"),
        (_doc(driver={"id": "d", "vehicle": "rocket"}), "vehicle"),
        (
            json.dumps({"type": "cancel_accepted", "courier": "zoomly", "message_id": "m"}).encode(),
            "courier_job_id",
        ),
    ],
)
def test_the_answer_decoder_refuses_bad_bodies(body: bytes, match: str) -> None:
    with pytest.raises(CourierMessageInvalid, match=match):
        decode_answer(body)


def test_the_quote_decoder_refuses_bad_bodies() -> None:
    good = quoted("zoomly").payload.model_dump(mode="json")
    with pytest.raises(ValueError, match="options"):
        decode_quoted(json.dumps({**good, "options": [{"courier": "zoomly"}]}).encode())
    with pytest.raises(ValueError, match="decided_at"):
        decode_quoted(json.dumps({**good, "decided_at": "yesterday"}).encode())


async def test_a_decision_on_a_stale_job_is_refused(db: aiosqlite.Connection) -> None:
    """Two replicas that both loaded the job: the second save finds it changed and fails (then retried)."""
    d = service(Clock())
    await run(db, d.on_quoted, quoted("zoomly", "dashly"))
    stale = await store.load_job(db, "dlv_1")
    assert stale is not None
    await run(db, d.on_answer, booking("zoomly", 1, False))
    late = on_timeout(stale, 1, T0 + timedelta(minutes=1), timeout_s=2.0, max_asks=2)
    with pytest.raises(store.StaleJob):
        async with transaction(db):
            await store.save(db, stale, late.job, START)
    assert await rows(db, "SELECT number, status FROM attempts ORDER BY number") == [
        (1, "rejected"),
        (2, "pending"),
    ]


async def test_a_quote_expired_during_an_outage_is_quoted_again_and_round_2_is_booked(
    db: aiosqlite.Connection,
) -> None:
    """The message path of a requote: quote_expired → ``delivery.requote`` to quoting (on ``quotes``), then
    round 2's ``DeliveryQuoted`` books the fresh quote; the job and attempts remember their rounds."""
    d = service(Clock())
    await run(db, d.on_quoted, quoted("zoomly"))
    await run(db, d.on_answer, booking("zoomly", 1, False, reason="quote_expired"))
    mid, key, body = (await sent(db))[-1]
    assert (mid, key) == ("dlv_1:requote:1", "delivery.requote")
    assert (body["type"], body["round"], body["refused"]) == ("delivery.requote", 1, [])
    assert await rows(db, "SELECT status, round FROM jobs") == [("requoting", 1)]
    fresh = quote("zoomly").model_copy(update={"quote_id": "q-zoomly-2"})
    m = DeliveryQuoted(
        message_id="dlv_1:delivery.quoted:2", delivery_id="dlv_1", order_reference="s42-0000001",
        retailer_id="r01", options=(fresh,), decided_at=T0, round=2, book_by=T0 + timedelta(minutes=30),
    )  # fmt: skip
    await run(db, d.on_quoted, _inbound(decode_quoted(quoted_message(m).body), m.message_id))
    assert (await sent(db))[-1][:2] == ("bk-dlv_1-2", "zoomly.booking_request")
    assert await rows(db, "SELECT status, round, book_by FROM jobs") == [
        ("booking", 2, (T0 + timedelta(minutes=30)).timestamp())
    ]
    assert await rows(db, "SELECT number, quote_id, status, reason, round FROM attempts ORDER BY number") == [
        (1, "q-zoomly", "rejected", "quote_expired", 1),
        (2, "q-zoomly-2", "pending", None, 2),
    ]
    await run(db, d.on_answer, booking("zoomly", 2, True, quote_id="q-zoomly-2"))
    assert await rows(db, "SELECT status, courier FROM jobs") == [("booked", "zoomly")]
