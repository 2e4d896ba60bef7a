"""Quoting's handlers and sweep over a real SQLite file (no broker): rounds, answers, deadlines, cancels,
and every path by which bad input is refused."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import pytest

from system.domain.dialects import CourierMessageInvalid
from system.domain.marketplace import load_marketplace
from system.domain.retailers import RetailerRules
from system.messaging import MalformedMessage
from system.messaging.db import open_db, transaction
from system.messaging.envelope import InboundMessage
from system.platform import contracts
from system.platform.contracts import (
    DeliveryQuoted,
    LifecycleEvent,
    OrderCreated,
    QuotingInput,
    RequoteRequested,
    decode_quoting_input,
    requote_message,
    requote_message_id,
)
from system.quoting import store
from system.quoting.handlers import CourierAnswer, Quoting, RegistryRules, decode_answer, decode_order
from system.quoting.settings import QuotingSettings

from .conftest import ASKED, BIKES, declined_doc, quote_doc, request

T = TypeVar("T")
MARKET = load_marketplace()


class Rules:
    """Rules by retailer id (BIKES for r01, defaults otherwise)."""

    def rules_for(self, retailer_id: str) -> RetailerRules:
        return BIKES if retailer_id == "r01" else RetailerRules()


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _inbound(payload: T, message_id: str) -> InboundMessage[T]:
    return InboundMessage(message_id, payload, {}, "x", "k", False, 0, b"")


def _service(clock: Clock, deadline_s: float = 3.0) -> Quoting:
    """Orders accepted at 1000.0 (see :func:`created`) are due within ``deadline_s``: by default one ask
    per round (the re-ask of silent couriers until the order's deadline has its own tests)."""
    return Quoting(
        QuotingSettings(quote_deadline_s=3.0, booking_deadline_s=deadline_s), MARKET, Rules(), clock
    )


def created(delivery_id: str = "dlv_1", at: float = 1_000.0, **changes: Any) -> InboundMessage[QuotingInput]:
    m = contracts.order_created(delivery_id, request(**changes), at=at)
    return _inbound(decode_quoting_input(m.body), m.message_id)


def requote(
    round_: int = 1, refused: tuple[str, ...] = (), delivery_id: str = "dlv_1"
) -> InboundMessage[QuotingInput]:
    m = requote_message(
        RequoteRequested(
            message_id=requote_message_id(delivery_id, round_),
            delivery_id=delivery_id,
            order_reference="s42-0000001",
            round=round_,
            reason="quote expired",
            refused=refused,
        )
    )
    return _inbound(decode_quoting_input(m.body), m.message_id)


def cancel(delivery_id: str = "dlv_1") -> InboundMessage[QuotingInput]:
    m = contracts.cancel_requested(delivery_id, "s42-0000001", "r01", "customer_request", at=0.0)
    return _inbound(decode_quoting_input(m.body), m.message_id)


def answer(doc: dict[str, Any], message_id: str | None = None) -> InboundMessage[CourierAnswer]:
    return _inbound(decode_answer(json.dumps(doc).encode()), message_id or doc["message_id"])


async def outbox_rows(db: aiosqlite.Connection) -> list[tuple[str, str, dict[str, Any]]]:
    cursor = await db.execute("SELECT message_id, routing_key, body FROM outbox ORDER BY id")
    rows = await cursor.fetchall()
    await cursor.close()
    return [(r[0], r[1], json.loads(r[2])) for r in rows]


async def round_row(db: aiosqlite.Connection, delivery_id: str = "dlv_1") -> tuple[Any, ...] | None:
    cursor = await db.execute(
        "SELECT status, deadline_at, asked, outcome FROM quote_rounds WHERE delivery_id = ?", (delivery_id,)
    )
    row = await cursor.fetchone()
    await cursor.close()
    return tuple(row) if row is not None else None


async def run(db: aiosqlite.Connection, handler: Any, message: Any) -> None:
    async with transaction(db):
        await handler(db, message)


async def test_order_created_starts_a_round_and_asks_each_eligible_courier(db: aiosqlite.Connection) -> None:
    q = _service(Clock(1_000.0))
    await run(db, q.on_order, created())
    status, deadline, asked, _ = await round_row(db) or ()
    assert (status, deadline, json.loads(asked)) == ("collecting", 1_003.0, list(ASKED))
    rows = await outbox_rows(db)
    assert [(mid, key) for mid, key, _ in rows] == [(f"qr-dlv_1-{c}", f"{c}.quote_request") for c in ASKED]
    assert all(body["type"] == "quote_request" and body["delivery_id"] == "dlv_1" for _, _, body in rows)
    # worthless after the deadline: the broker drops a request still queued then
    cursor = await db.execute("SELECT DISTINCT expiration_ms FROM outbox")
    assert await cursor.fetchall() == [(3000,)]


async def test_a_replayed_order_created_starts_nothing_twice(db: aiosqlite.Connection) -> None:
    q = _service(Clock())
    await run(db, q.on_order, created())
    again = created()
    await run(db, q.on_order, _inbound(again.payload, "another-id"))
    assert len(await outbox_rows(db)) == 3


async def test_when_every_asked_courier_answered_the_round_is_decided_at_once(
    db: aiosqlite.Connection,
) -> None:
    clock = Clock()
    q = _service(clock)
    await run(db, q.on_order, created())
    await run(db, q.on_answer, answer(quote_doc("dashly", 700)))
    await run(db, q.on_answer, answer(declined_doc("pedalo")))
    assert (await round_row(db) or ())[0] == "collecting"
    clock.now += 0.5  # well before the deadline
    await run(db, q.on_answer, answer(quote_doc("zoomly", 900)))
    status, _, _, outcome = await round_row(db) or ()
    assert (status, outcome) == ("quoted", "zoomly,dashly")
    quoted = [body for mid, _, body in await outbox_rows(db) if mid == "dlv_1:delivery.quoted"]
    assert len(quoted) == 1
    assert [o["courier"] for o in DeliveryQuoted.model_validate(quoted[0]).model_dump()["options"]] == [
        "zoomly",
        "dashly",
    ]
    events = [
        LifecycleEvent.model_validate(b) for mid, _, b in await outbox_rows(db) if mid.endswith(":quoting")
    ]
    assert [(e.message_id, e.event.value) for e in events] == [("dlv_1:quoted:quoting", "quoted")]


async def test_the_deadline_decides_once_without_the_silent_courier(db: aiosqlite.Connection) -> None:
    clock = Clock(1_000.0)
    q = _service(clock)
    await run(db, q.on_order, created())
    await run(db, q.on_answer, answer(quote_doc("pedalo", 650)))
    await run(db, q.on_answer, answer(quote_doc("dashly", 700)))
    clock.now = 1_002.9
    async with transaction(db):
        assert await q.decide_due(db) == 0
    clock.now = 1_003.0
    async with transaction(db):
        assert await q.decide_due(db) == 1
    clock.now = 1_010.0
    async with transaction(db):
        assert await q.decide_due(db) == 0
    (quoted,) = [b for mid, _, b in await outbox_rows(db) if mid == "dlv_1:delivery.quoted"]
    assert [o["courier"] for o in quoted["options"]] == ["pedalo", "dashly"]

    # zoomly answers at last: recorded as late, ignored (no second decision).
    await run(db, q.on_answer, answer(quote_doc("zoomly", 100)))
    cursor = await db.execute("SELECT courier, late FROM quote_answers ORDER BY courier")
    assert list(await cursor.fetchall()) == [("dashly", 0), ("pedalo", 0), ("zoomly", 1)]
    assert sum(mid == "dlv_1:delivery.quoted" for mid, _, _ in await outbox_rows(db)) == 1


async def test_two_replicas_sweeping_together_decide_once(db: aiosqlite.Connection, tmp_path: Path) -> None:
    clock = Clock(1_000.0)
    q0, q1 = _service(clock), _service(clock)
    await run(db, q0.on_order, created())
    clock.now = 1_004.0
    other = await open_db(tmp_path / "quoting.db")
    try:
        async with transaction(db):
            first = await q0.decide_due(db)
        async with transaction(other):
            second = await q1.decide_due(other)
    finally:
        await other.close()
    assert (first, second) == (1, 0)
    rows = await outbox_rows(db)
    assert [mid for mid, _, _ in rows if not mid.startswith("qr-")] == ["dlv_1:no_courier:quoting"]
    assert rows[-1][2]["reason"] == "the order's deadline passed; no suitable quote: asked 3, 3 silent"


async def test_a_second_answer_from_one_courier_is_ignored(db: aiosqlite.Connection) -> None:
    q = _service(Clock())
    await run(db, q.on_order, created())
    await run(db, q.on_answer, answer(quote_doc("pedalo", 650)))
    await run(db, q.on_answer, answer(quote_doc("pedalo", 10), message_id="pedalo:again"))
    cursor = await db.execute("SELECT message_id FROM quote_answers")
    assert list(await cursor.fetchall()) == [("pedalo:s42-0000001:quote:0",)]


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        (quote_doc("pedalo", 650, delivery_id="dlv_unknown"), "answer for unknown delivery 'dlv_unknown'"),
        (quote_doc("vanguard", 650), "'vanguard', which was not asked"),
        (
            {**quote_doc("pedalo", 650), "in_reply_to": "qr-dlv_1-zoomly"},
            "not to our request 'qr-dlv_1-pedalo'",
        ),
    ],
)
async def test_answers_that_match_no_request_are_malformed(
    db: aiosqlite.Connection, doc: dict[str, Any], match: str
) -> None:
    q = _service(Clock())
    await run(db, q.on_order, created())
    with pytest.raises(MalformedMessage, match=match):
        await run(db, q.on_answer, answer(doc))
    cursor = await db.execute("SELECT COUNT(*) FROM quote_answers")
    assert await cursor.fetchone() == (0,)


async def test_a_cancel_before_the_decision_means_no_decision_is_published(db: aiosqlite.Connection) -> None:
    clock = Clock()
    q = _service(clock)
    await run(db, q.on_order, created())
    await run(db, q.on_answer, answer(quote_doc("pedalo", 650)))
    await run(db, q.on_order, cancel())
    assert (await round_row(db) or ())[0] == "cancelled"
    await run(db, q.on_answer, answer(quote_doc("dashly", 700)))
    await run(db, q.on_answer, answer(quote_doc("zoomly", 900)))  # everyone answered: still nothing
    clock.now += 60
    async with transaction(db):
        assert await q.decide_due(db) == 0
    assert all(mid.startswith("qr-") for mid, _, _ in await outbox_rows(db))


async def test_a_cancel_before_the_order_means_no_round_at_all(db: aiosqlite.Connection) -> None:
    q = _service(Clock())
    await run(db, q.on_order, cancel())
    await run(db, q.on_order, created())
    assert (await round_row(db) or ())[0] == "cancelled"
    assert await outbox_rows(db) == []


async def test_no_eligible_courier_is_decided_at_once(db: aiosqlite.Connection) -> None:
    q = _service(Clock())
    await run(db, q.on_order, created(parcel={"weight_g": 9000, "size": "XL"}))  # no bike carries XL
    status, _, asked, outcome = await round_row(db) or ()
    assert (status, json.loads(asked), outcome) == ("no_courier", [], "no eligible courier for this order")
    ((mid, key, body),) = await outbox_rows(db)
    assert (mid, key, body["event"], body["reason"]) == (
        "dlv_1:no_courier:quoting",
        "no_courier",
        "no_courier",
        "no eligible courier for this order",
    )


async def test_order_updates_other_than_cancels_change_nothing(db: aiosqlite.Connection) -> None:
    q = _service(Clock())
    await run(db, q.on_order, created())
    m = contracts.order_updated("dlv_1", request(source_version=2), at=0.0)
    await run(db, q.on_order, _inbound(decode_order(m.body), m.message_id))
    assert (await round_row(db) or ())[0] == "collecting" and len(await outbox_rows(db)) == 3


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({**quote_doc("pedalo", 1), "price": None}).encode(), "lacks price"),
        (
            json.dumps(
                {**quote_doc("pedalo", 1), "price": {"amount_minor": "x", "currency": "GBP"}}
            ).encode(),
            "price",
        ),
        (json.dumps({**quote_doc("pedalo", 1), "type": "quote_maybe"}).encode(), "type"),
        (
            json.dumps({k: v for k, v in quote_doc("pedalo", 1).items() if k != "in_reply_to"}).encode(),
            "in_reply_to",
        ),
        (
            json.dumps({k: v for k, v in quote_doc("pedalo", 1).items() if k != "delivery_id"}).encode(),
            "delivery_id",
        ),
    ],
)
def test_the_answer_decoder_refuses_bad_bodies(body: bytes, match: str) -> None:
    with pytest.raises(CourierMessageInvalid, match=match):
        decode_answer(body)


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        b'{"type": "order.created", "message_id": "m", "delivery_id": "d", "order_reference": "r"}',
        b'{"type": "order.deleted", "message_id": "m", "delivery_id": "d", "order_reference": "r"}',
        b'{"type": "order.cancel_requested", "message_id": "m", "delivery_id": 7, "order_reference": "r"}',
    ],
)
def test_the_order_decoder_refuses_bad_bodies(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_order(body)


def test_rules_come_from_the_retailers_file_with_defaults_for_unknown_retailers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc = {"version": 1, "retailers": [{
        "id": "r01", "name": "Thistle", "channel": "rest", "category": "pharmacy", "currency": "GBP",
        "api_key": "sk_1", "shop_domain": "t.myshopify.com", "webhook_secret": "s3", "merchant_id": "M1",
        "stores": [{"id": "r01-s1", "lines": ["1 High St"], "city": "London", "postcode": "N1 4AB",
                    "lat": 51.57, "lon": -0.13}],
        "rules": {"priority_fleet": ["zoomly"], "allowed_vehicles": ["bike"]}}]}  # fmt: skip
    path = tmp_path / "retailers.json"
    path.write_text(json.dumps(doc))
    rules = RegistryRules(path)
    assert rules.rules_for("r01").allowed_vehicles == ("bike",)
    with caplog.at_level(logging.WARNING):
        assert rules.rules_for("r99") == RetailerRules()
    assert any(r.getMessage() == "unknown retailer: default rules" for r in caplog.records)
    with caplog.at_level(logging.WARNING):
        assert RegistryRules(tmp_path / "missing.json").rules_for("r01") == RetailerRules()
    assert any(r.getMessage() == "retailers file unusable: default rules" for r in caplog.records)


async def test_a_decider_holding_a_stale_round_does_not_decide_again(db: aiosqlite.Connection) -> None:
    """Two replicas that both read the round as collecting: the conditional update lets one decide."""
    clock = Clock()
    q = _service(clock)
    await run(db, q.on_order, created())
    stale = await store.get_round(db, "dlv_1")
    assert stale is not None
    clock.now += 10
    async with transaction(db):
        assert await q.decide_due(db) == 1
        assert not await q._decide(db, stale, clock.now)
    assert [mid for mid, _, _ in await outbox_rows(db) if not mid.startswith("qr-")] == [
        "dlv_1:no_courier:quoting"
    ]


async def test_a_cancel_after_the_decision_leaves_the_round_decided(db: aiosqlite.Connection) -> None:
    q = _service(Clock())
    await run(db, q.on_order, created())
    for doc in (quote_doc("zoomly", 900), quote_doc("dashly", 700), quote_doc("pedalo", 650)):
        await run(db, q.on_answer, answer(doc))
    await run(db, q.on_order, cancel())
    assert (await round_row(db) or ())[0] == "quoted"  # dispatch handles a cancel after the quote


async def test_a_round_in_which_every_courier_stayed_silent_is_asked_again_then_decided(
    db: aiosqlite.Connection,
) -> None:
    """Couriers still reconnecting after a broker outage answer nothing: ask again, not no_courier."""
    clock = Clock(1_000.0)
    q = _service(clock, deadline_s=1800.0)
    await run(db, q.on_order, created())
    clock.now = 1_003.0
    async with transaction(db):
        assert await q.decide_due(db) == 0  # not decided: asked again
    status, deadline, _, _ = await round_row(db) or ()
    assert (status, deadline) == ("collecting", 1_009.0)  # the second ask waits twice as long: 6 s
    asks = [mid for mid, _, _ in await outbox_rows(db) if mid.startswith("qr-")]
    assert asks == [f"qr-dlv_1-{c}" for c in ASKED] + [f"qr-dlv_1-{c}-2" for c in ASKED]
    # An answer to either ask counts: dashly answers the first, zoomly the second; pedalo stays silent.
    await run(db, q.on_answer, answer(quote_doc("dashly", 700)))
    await run(db, q.on_answer, answer({**quote_doc("zoomly", 900), "in_reply_to": "qr-dlv_1-zoomly-2"}))
    clock.now = 1_009.0
    async with transaction(db):
        assert await q.decide_due(db) == 1  # suitable quotes in hand: decided at this deadline, no third ask
    status, _, _, outcome = await round_row(db) or ()
    assert (status, outcome) == ("quoted", "zoomly,dashly")
    assert not any(mid.endswith("-3") for mid, _, _ in await outbox_rows(db))


async def test_a_round_silent_until_the_orders_deadline_ends_without_a_courier(
    db: aiosqlite.Connection,
) -> None:
    clock = Clock(1_000.0)
    q = _service(clock, deadline_s=9.0)
    await run(db, q.on_order, created())
    for now, decided in ((1_003.0, 0), (1_008.9, 0), (1_009.0, 1)):
        clock.now = now
        async with transaction(db):
            assert await q.decide_due(db) == decided
    status, _, _, outcome = await round_row(db) or ()
    assert (status, outcome) == (
        "no_courier",
        "the order's deadline passed; no suitable quote: asked 3, 3 silent",
    )
    with pytest.raises(MalformedMessage, match="not to our request"):
        await run(db, q.on_answer, answer({**quote_doc("zoomly", 900), "in_reply_to": "qr-dlv_1-zoomly-3"}))


async def test_each_ask_of_a_silent_round_waits_twice_as_long_up_to_the_cap(db: aiosqlite.Connection) -> None:
    """A 15-s partition outlasted three 3-s asks (a quarter of its orders ended without a courier): the
    asks go on until the order's deadline, each waiting twice as long up to the cap, and each ask's
    requests expire with it. The last ask ends at the order's deadline."""
    clock = Clock(1_000.0)
    settings = QuotingSettings(quote_deadline_s=3.0, booking_deadline_s=35.0, quote_wait_max_s=10.0)
    q = Quoting(settings, MARKET, Rules(), clock)
    await run(db, q.on_order, created())
    deadlines = []
    for _ in range(4):
        clock.now = (await round_row(db) or ())[1]
        async with transaction(db):
            assert await q.decide_due(db) == 0
        deadlines.append((await round_row(db) or ())[1])
    assert deadlines == [1_009.0, 1_019.0, 1_029.0, 1_035.0]  # +6, then capped at 10, then the deadline
    cursor = await db.execute(
        "SELECT message_id, expiration_ms FROM outbox WHERE message_id LIKE 'qr-dlv_1-dashly%'"
    )
    ttls = dict(await cursor.fetchall())
    await cursor.close()
    assert ttls == {
        "qr-dlv_1-dashly": 3000, "qr-dlv_1-dashly-2": 6000, "qr-dlv_1-dashly-3": 10000,
        "qr-dlv_1-dashly-4": 10000, "qr-dlv_1-dashly-5": 10000,
    }  # fmt: skip
    clock.now = 1_035.0
    async with transaction(db):
        assert await q.decide_due(db) == 1
    assert (await round_row(db) or ())[0] == "no_courier"


async def test_only_the_silent_couriers_are_asked_again(db: aiosqlite.Connection) -> None:
    """A decline is an answer (the courier refused); only silence is a transport problem."""
    clock = Clock(1_000.0)
    q = _service(clock, deadline_s=1800.0)
    await run(db, q.on_order, created())
    await run(db, q.on_answer, answer(declined_doc("pedalo")))
    clock.now = 1_003.0
    async with transaction(db):
        assert await q.decide_due(db) == 0
    again = [mid for mid, _, _ in await outbox_rows(db) if mid.endswith("-2")]
    assert again == ["qr-dlv_1-zoomly-2", "qr-dlv_1-dashly-2"]
    # Every asked courier has now refused: no_courier at once, with the counts.
    await run(db, q.on_answer, answer({**declined_doc("zoomly"), "in_reply_to": "qr-dlv_1-zoomly-2"}))
    await run(db, q.on_answer, answer(declined_doc("dashly")))
    status, _, _, outcome = await round_row(db) or ()
    assert (status, outcome) == ("no_courier", "no suitable quote: asked 3, 3 declined (out_of_area: 3)")


async def _quoted_round_1(db: aiosqlite.Connection, q: Quoting) -> None:
    await run(db, q.on_order, created())
    for doc in (quote_doc("zoomly", 900), quote_doc("dashly", 700), declined_doc("pedalo")):
        await run(db, q.on_answer, answer(doc))
    assert (await round_row(db) or ())[0] == "quoted"


async def test_a_requote_asks_the_couriers_again_except_those_that_refused(db: aiosqlite.Connection) -> None:
    """Dispatch's options ran out for transient reasons (quotes expired during an outage): round 2 asks
    every courier of round 1 again under new request ids, except pedalo (declined to quote) and zoomly
    (dispatch says it refused the booking); its DeliveryQuoted is round 2's, with no second lifecycle
    ``quoted`` (the delivery is still quoted)."""
    clock = Clock(1_000.0)
    q = _service(clock, deadline_s=1800.0)
    await _quoted_round_1(db, q)
    clock.now = 1_020.0
    await run(db, q.on_order, requote(1, refused=("zoomly",)))
    status, deadline, asked, _ = await round_row(db) or ()
    assert (status, deadline, json.loads(asked)) == ("collecting", 1_023.0, ["dashly"])
    assert [mid for mid, _, _ in await outbox_rows(db) if "-r2" in mid] == ["qr-dlv_1-dashly-r2"]
    # A late answer to round 1's request changes nothing (not malformed either).
    await run(db, q.on_answer, answer(quote_doc("zoomly", 100), message_id="zoomly:late"))
    await run(
        db, q.on_answer, answer({**quote_doc("dashly", 720), "in_reply_to": "qr-dlv_1-dashly-r2"}, "d2")
    )
    status, _, _, outcome = await round_row(db) or ()
    assert (status, outcome) == ("quoted", "dashly")
    rows = await outbox_rows(db)
    (quoted,) = [DeliveryQuoted.model_validate(b) for mid, _, b in rows if mid == "dlv_1:delivery.quoted:2"]
    assert (quoted.round, [o.price.amount_minor for o in quoted.options]) == (2, [720])
    assert quoted.book_by is not None and quoted.book_by.timestamp() == 2_800.0
    assert [mid for mid, _, _ in rows if mid.endswith(":quoting")] == ["dlv_1:quoted:quoting"]


async def test_a_repeated_or_stale_requote_changes_nothing(db: aiosqlite.Connection) -> None:
    clock = Clock(1_000.0)
    q = _service(clock, deadline_s=1800.0)
    await _quoted_round_1(db, q)
    await run(db, q.on_order, requote(1))
    before = await outbox_rows(db)
    await run(db, q.on_order, _inbound(requote(1).payload, "a-republish"))
    assert await outbox_rows(db) == before
    with pytest.raises(MalformedMessage, match="never quoted"):
        await run(db, q.on_order, requote(1, delivery_id="dlv_other"))


async def test_a_requote_with_nobody_left_ends_without_a_courier(db: aiosqlite.Connection) -> None:
    clock = Clock(1_000.0)
    q = _service(clock, deadline_s=1800.0)
    await _quoted_round_1(db, q)
    await run(db, q.on_order, requote(1, refused=("zoomly", "dashly")))
    status, _, _, outcome = await round_row(db) or ()
    assert (status, outcome) == ("no_courier", "every courier asked in earlier rounds refused the order")
    assert [mid for mid, _, _ in await outbox_rows(db) if mid.endswith(":quoting")] == [
        "dlv_1:quoted:quoting",
        "dlv_1:no_courier:quoting",
    ]


async def test_a_requote_after_the_orders_deadline_ends_without_a_courier(db: aiosqlite.Connection) -> None:
    clock = Clock(1_000.0)
    q = _service(clock, deadline_s=60.0)
    await _quoted_round_1(db, q)
    clock.now = 1_060.0
    await run(db, q.on_order, requote(1))
    status, _, _, outcome = await round_row(db) or ()
    assert (status, outcome) == (
        "no_courier",
        "the order's deadline passed; no suitable quote: asked 2, 2 silent",
    )
    assert not [mid for mid, _, _ in await outbox_rows(db) if "-r2" in mid]


def test_the_orders_deadline_is_its_pickup_window_end_or_the_default_after_acceptance() -> None:
    q = _service(Clock(), deadline_s=1800.0)
    order = created(at=1_000.0).payload
    assert isinstance(order, OrderCreated)
    assert q.book_by(order, now=5.0) == 2_800.0  # the window (2026) is later than acceptance + 30 min
    late = created(at=datetime(2026, 11, 18, 11, 40, tzinfo=UTC).timestamp()).payload
    assert isinstance(late, OrderCreated)
    assert q.book_by(late, now=5.0) == datetime(2026, 11, 18, 11, 47, 40, tzinfo=UTC).timestamp()


async def test_a_courier_silent_while_others_answer_is_unreachable_and_counts_as_a_refusal(
    db: aiosqlite.Connection,
) -> None:
    """A courier that is down for hours (in a drill: one of the marketplace's couriers nobody plays) must
    not hold an order back: once it has answered nothing for courier_down_after_s while others answered,
    its silence is a refusal."""
    clock = Clock(1_000.0)
    settings = QuotingSettings(quote_deadline_s=3.0, booking_deadline_s=1800.0, courier_down_after_s=30.0)
    q = Quoting(settings, MARKET, Rules(), clock)
    await run(db, q.on_order, created())  # zoomly, dashly and pedalo asked at 1000
    await run(db, q.on_answer, answer(declined_doc("dashly")))
    await run(db, q.on_answer, answer(declined_doc("pedalo")))
    # zoomly stays silent: reachable until an ask made 30 s after its first one is answered (or 30 s pass
    # on the clock with others answering, as it never answered anything).
    clock.now = 1_003.0
    async with transaction(db):
        assert await q.decide_due(db) == 0  # asked again: still reachable
    assert [mid for mid, _, _ in await outbox_rows(db) if mid.endswith("-2")] == ["qr-dlv_1-zoomly-2"]
    # Another order's answers keep arriving (couriers that work); zoomly's silence now means it is down.
    await run(db, q.on_order, created("dlv_2"))
    clock.now = 1_040.0
    await run(db, q.on_answer, answer(declined_doc("dashly", delivery_id="dlv_2")))
    async with transaction(db):
        assert await q.decide_due(db) >= 1
    status, _, _, outcome = await round_row(db) or ()
    assert (status, outcome) == (
        "no_courier",
        "no suitable quote: asked 3, 2 declined (out_of_area: 2), 1 silent (1 unreachable: zoomly)",
    )


async def test_a_broker_outage_that_silences_every_courier_makes_none_unreachable(
    db: aiosqlite.Connection,
) -> None:
    clock = Clock(1_000.0)
    settings = QuotingSettings(quote_deadline_s=3.0, booking_deadline_s=1800.0, courier_down_after_s=30.0)
    q = Quoting(settings, MARKET, Rules(), clock)
    await run(db, q.on_order, created())
    await run(db, q.on_answer, answer(declined_doc("pedalo")))  # the last answer anyone gave
    clock.now = 1_500.0  # everyone silent for minutes: the transport, not the couriers
    async with transaction(db):
        assert await q.decide_due(db) == 0
    assert (await round_row(db) or ())[0] == "collecting"
    assert await store.unreachable(db, ASKED, 30.0, clock.now) == set()


async def test_a_courier_that_never_answered_is_unreachable_when_no_other_order_is_quoted(
    db: aiosqlite.Connection,
) -> None:
    """The last order of a double-load run waited 150 s for a marketplace courier nobody plays: its
    quotes were all unsuitable, and with no other order being quoted the freshest answer stopped moving,
    so the relative rule alone never called the silent courier down."""
    clock = Clock(1_000.0)
    settings = QuotingSettings(quote_deadline_s=3.0, booking_deadline_s=1800.0, courier_down_after_s=30.0)
    q = Quoting(settings, MARKET, Rules(), clock)
    await run(db, q.on_order, created())  # zoomly, dashly and pedalo asked at 1000
    clock.now = 1_001.0
    await run(db, q.on_answer, answer(declined_doc("dashly")))
    await run(db, q.on_answer, answer(declined_doc("pedalo")))  # the last answer anyone gives
    clock.now = 1_003.0
    async with transaction(db):
        assert await q.decide_due(db) == 0  # zoomly asked again: 3 s is no proof it is down
    assert await store.unreachable(db, ASKED, 30.0, clock.now) == set()
    clock.now = 1_031.0  # 31 s since zoomly's first ask, others answered after it, nothing from zoomly
    assert await store.unreachable(db, ASKED, 30.0, clock.now) == {"zoomly"}
    async with transaction(db):
        assert await q.decide_due(db) >= 1
    status, _, _, outcome = await round_row(db) or ()
    assert status == "no_courier" and "1 unreachable: zoomly" in outcome


async def test_a_courier_that_answered_before_is_not_unreachable_on_the_clock_alone(
    db: aiosqlite.Connection,
) -> None:
    clock = Clock(1_000.0)
    settings = QuotingSettings(quote_deadline_s=3.0, booking_deadline_s=1800.0, courier_down_after_s=30.0)
    q = Quoting(settings, MARKET, Rules(), clock)
    await run(db, q.on_order, created())
    for courier in ("zoomly", "dashly", "pedalo"):
        await run(db, q.on_answer, answer(declined_doc(courier)))  # every courier has answered once
    await run(db, q.on_order, created("dlv_2"))
    clock.now = 1_001.0
    await run(db, q.on_answer, answer(declined_doc("pedalo", delivery_id="dlv_2")))
    clock.now = 1_500.0  # then a broker outage silences everyone: nobody is down
    assert await store.unreachable(db, ASKED, 30.0, clock.now) == set()


async def test_answers_coming_back_after_an_outage_in_any_order_make_nobody_unreachable(
    db: aiosqlite.Connection,
) -> None:
    """Demo run (fresh clone 5): vanguard answered, was asked again at the start of a full outage, and the
    answers queued during the outage came back after it, another order's first: measured between answers,
    vanguard had been silent 30 s while others answered, and its order ended no_courier one second before
    vanguard's answers arrived. Measured between asks, it is down only once someone answers an ask made
    30 s after vanguard's unanswered one."""
    clock = Clock(1_000.0)
    settings = QuotingSettings(quote_deadline_s=3.0, booking_deadline_s=1800.0, courier_down_after_s=30.0)
    q = Quoting(settings, MARKET, Rules(), clock)
    await run(db, q.on_order, created())  # zoomly, dashly and pedalo asked at 1000
    for courier in ("zoomly", "dashly", "pedalo"):
        await run(db, q.on_answer, answer(declined_doc(courier)))  # everyone answers at 1000
    clock.now = 1_010.0
    await run(db, q.on_order, created("dlv_2"))  # asked at 1010; then the brokers stop
    clock.now = 1_020.0
    await run(db, q.on_order, created("dlv_3"))  # accepted during the outage, asked at 1020
    clock.now = 1_045.0  # the outage ends: dlv_3's answers come back first
    await run(db, q.on_answer, answer(declined_doc("dashly", delivery_id="dlv_3")))
    await run(db, q.on_answer, answer(declined_doc("pedalo", delivery_id="dlv_3")))
    assert await store.unreachable(db, ASKED, 30.0, clock.now) == set()
    await run(db, q.on_answer, answer(declined_doc("zoomly", delivery_id="dlv_2")))  # its backlog, later
    assert await store.unreachable(db, ASKED, 30.0, clock.now) == set()
    # zoomly then goes quiet for good: once an ask made 30 s after its unanswered one is answered, it is down.
    clock.now = 1_050.0
    await run(db, q.on_order, created("dlv_4"))  # asked at 1050
    clock.now = 1_080.0
    await run(db, q.on_order, created("dlv_5"))  # asked at 1080
    await run(db, q.on_answer, answer(declined_doc("dashly", delivery_id="dlv_5")))
    assert await store.unreachable(db, ASKED, 30.0, clock.now) == {"zoomly", "pedalo"}


async def test_a_quoted_round_names_the_silent_reachable_couriers_as_pending(
    db: aiosqlite.Connection,
) -> None:
    clock = Clock(1_000.0)
    q = _service(clock, deadline_s=1800.0)
    await run(db, q.on_order, created())
    await run(db, q.on_answer, answer(quote_doc("dashly", 700)))
    clock.now = 1_003.0
    async with transaction(db):
        assert await q.decide_due(db) == 1
    (quoted,) = [
        DeliveryQuoted.model_validate(b)
        for mid, _, b in await outbox_rows(db)
        if mid == "dlv_1:delivery.quoted"
    ]
    assert quoted.pending == ("zoomly", "pedalo")
