"""Decoding StateChanged (bad input is parked with the reason), the handler, and the TEST ONLY
ack-before-commit consumer's broken order of operations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from system.domain.lifecycle import State
from system.messaging import InboundMessage, MalformedMessage
from system.messaging.db import begin_immediate
from system.notifications.ack_first import AckFirst
from system.notifications.handlers import decode_state_changed, handle_state_changed

from .conftest import change, open_store, rows


def test_decodes_a_state_change() -> None:
    sc = change(State.DELIVERED, State.IN_TRANSIT, driver="d1")
    assert decode_state_changed(sc.model_dump_json().encode()) == sc


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[1, 2]", "body is not a JSON object but list"),
        (b'{"type": "delivery.state"}', "not a StateChanged: message_id: Field required"),
    ],
)
def test_malformed_bodies_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match="^" + reason.replace("[", r"\[")):
        decode_state_changed(body)


def test_unknown_state_and_wrong_type_are_malformed() -> None:
    doc = json.loads(change(State.DELIVERED, State.IN_TRANSIT).model_dump_json())
    with pytest.raises(MalformedMessage, match="state: Input should be"):
        decode_state_changed(json.dumps({**doc, "state": "teleported"}).encode())
    with pytest.raises(MalformedMessage, match=r"type: Input should be 'delivery\.state'"):
        decode_state_changed(json.dumps({**doc, "type": "lifecycle"}).encode())
    with pytest.raises(MalformedMessage, match="delivery_id"):
        decode_state_changed(json.dumps({**doc, "delivery_id": 12}).encode())


def _inbound(body: bytes, message_id: str) -> InboundMessage:  # type: ignore[type-arg]
    return InboundMessage(
        message_id=message_id,
        payload=decode_state_changed(body),
        headers={},
        exchange="tracking",
        routing_key="delivery.state.delivered",
        redelivered=False,
        attempt=0,
        body=body,
    )


async def test_handler_writes_pending_rows_in_the_open_transaction(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    try:
        body = change(State.DELIVERED, State.IN_TRANSIT).model_dump_json().encode()
        await begin_immediate(db)
        await handle_state_changed(db, _inbound(body, "dlv_1:state:delivered"))
        await handle_state_changed(db, _inbound(body, "dlv_1:state:delivered"))
        assert db.in_transaction  # the handler never commits: the consumer does, with the inbox row
        await db.execute("COMMIT")
        found = await rows(db)
        assert sorted((r["channel"], r["status"]) for r in found.values()) == [
            ("email", "pending"),
            ("sms", "pending"),
        ]
    finally:
        await db.close()


class FakeDelivery:
    def __init__(self, body: bytes, message_id: str) -> None:
        self.body = body
        self.message_id = message_id
        self.acked = False

    async def ack(self, multiple: bool = False) -> None:
        self.acked = True


async def test_ack_first_acks_before_anything_is_committed(tmp_path: Path) -> None:
    db = await open_store(tmp_path / "n.db")
    try:
        consumer = AckFirst()
        good = FakeDelivery(change(State.DELIVERED, State.IN_TRANSIT).model_dump_json().encode(), "m1")
        bad = FakeDelivery(b"garbage", "m2")
        await consumer.on_delivery(good)
        await consumer.on_delivery(bad)
        # the broker has been told "done" for both while nothing is stored: a kill now loses them
        assert good.acked and bad.acked and await rows(db) == {}
        await consumer.process_next(db)
        assert len(await rows(db)) == 2
        await consumer.process_next(db)  # the malformed one is dropped (acked, logged), not parked
        assert len(await rows(db)) == 2 and consumer.received.empty()
    finally:
        await db.close()
