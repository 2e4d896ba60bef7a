"""The AMQP shell around the courier desk, with fake aio-pika objects (no broker here)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aio_pika
from pamqp.commands import Basic

from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.courier_amqp import CourierAmqpAdapter
from simulator.courier_desk import CourierDesk, Outgoing
from simulator.ledger import Ledger


class FakeExchange:
    """Fails the first ``fail`` publishes (like a nack or a return), then records them."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.published: list[tuple[str, aio_pika.Message]] = []
        self.got_one = asyncio.Event()

    async def publish(self, message: aio_pika.Message, routing_key: str, *, mandatory: bool = True) -> None:
        assert mandatory
        if self.fail > 0:
            self.fail -= 1
            raise aio_pika.exceptions.DeliveryError(None, Basic.Nack())
        self.published.append((routing_key, message))
        self.got_one.set()


class FakeIncoming:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = json.dumps(body).encode()
        self.message_id = "amqp-mid-1"
        self.acked = False

    async def ack(self) -> None:
        self.acked = True

    async def reject(self, requeue: bool = False) -> None:
        raise AssertionError("valid requests are acked")


async def test_request_in_answer_out_with_republish_of_the_same_id() -> None:
    buf = io.StringIO()
    led = Ledger(buf, lambda: 0.0)
    sc = Scenario.model_validate({"arrivals": {"rate": 1.0}})
    desk = CourierDesk(1, sc, SimClock(epoch=1_800_000_000.0), led)
    now = {"t": 0.0}
    adapter = CourierAmqpAdapter("amqp://unused/", desk, led, lambda: now["t"])
    exchange = FakeExchange(fail=1)
    adapter._events = exchange  # type: ignore[assignment]
    msg = FakeIncoming({"type": "quote_request", "courier": "pedalo", "order_reference": "s1-0000001",
                        "delivery_id": "dlv_1", "pickup": {"lat": 51.52, "lon": -0.1},
                        "dropoff": {"lat": 51.5, "lon": -0.12}, "parcel": {"weight_g": 500, "size": "S"}})  # fmt: skip
    await adapter._on_request("pedalo", msg)  # type: ignore[arg-type]
    assert msg.acked
    now["t"] = 10.0
    pump = asyncio.create_task(adapter._pump_loop())
    await asyncio.wait_for(exchange.got_one.wait(), 3.0)
    pump.cancel()
    await asyncio.gather(pump, return_exceptions=True)
    ((key, published),) = exchange.published
    assert key == "pedalo.quote"
    body = json.loads(published.body)
    assert body["type"] == "quote" and body["in_reply_to"] == "amqp-mid-1"
    assert (
        published.message_id == body["message_id"]
        and published.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    )
    kinds = [json.loads(line) for line in buf.getvalue().splitlines()]
    retry = next(r for r in kinds if r["kind"] == "courier_publish_retry")
    assert retry["message_id"] == body["message_id"]  # republished under the same id
    sent = next(r for r in kinds if r["kind"] == "quote_sent")
    assert sent["price_minor"] == body["price"]["amount_minor"] and sent["courier"] == "pedalo"


class FakeConnection:
    def __init__(self) -> None:
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


async def test_a_channel_that_keeps_nacking_is_dropped_so_the_adapter_reconnects() -> None:
    """Seen in CI: after its queue's leader was killed, a courier's channel nacked every publish for
    13 s; its booking answer came 15 s late and the platform had booked a second courier meanwhile."""
    from simulator.courier_amqp import NACKS_BEFORE_RECONNECT

    led = Ledger(io.StringIO(), lambda: 0.0)
    sc = Scenario.model_validate({"arrivals": {"rate": 1.0}})
    desk = CourierDesk(1, sc, SimClock(epoch=1_800_000_000.0), led)
    adapter = CourierAmqpAdapter("amqp://unused/", desk, led, lambda: 0.0)
    exchange = FakeExchange(fail=100)
    conn = FakeConnection()
    adapter._events, adapter._conn = exchange, conn  # type: ignore[assignment]
    out = type("Out", (), {"body": {"message_id": "m-1"}, "routing_key": "pedalo.quote", "order_ref": "s1"})()
    publishing = asyncio.create_task(adapter._publish(out))  # type: ignore[arg-type]
    for _ in range(100):
        await asyncio.sleep(0.05)
        if conn.closed:
            break
    assert conn.closed == 1 and adapter._events is None, "dropped once, after the nack streak"
    assert exchange.fail == 100 - NACKS_BEFORE_RECONNECT
    adapter._stopping = True
    adapter._connected.set()
    assert await asyncio.wait_for(publishing, 5.0) is False


class HangingExchange:
    """A frozen broker node: publishes are taken and never confirmed."""

    def __init__(self) -> None:
        self.attempts = 0
        self.tried = asyncio.Event()
        self.published: list[tuple[str, aio_pika.Message]] = []

    async def publish(self, message: aio_pika.Message, routing_key: str, *, mandatory: bool = True) -> None:
        self.attempts += 1
        self.tried.set()
        await asyncio.Event().wait()


QUOTE_REQUEST = {"type": "quote_request", "courier": "pedalo", "order_reference": "s1-0000001",
                 "delivery_id": "dlv_1", "pickup": {"lat": 51.52, "lon": -0.1},
                 "dropoff": {"lat": 51.5, "lon": -0.12}, "parcel": {"weight_g": 500, "size": "S"}}  # fmt: skip


def rig(now: dict[str, float]) -> tuple[CourierAmqpAdapter, CourierDesk, io.StringIO]:
    buf = io.StringIO()
    led = Ledger(buf, lambda: 0.0)
    sc = Scenario.model_validate({"arrivals": {"rate": 1.0}})
    desk = CourierDesk(1, sc, SimClock(epoch=1_800_000_000.0), led)
    return CourierAmqpAdapter("amqp://unused/", desk, led, lambda: now["t"]), desk, buf


def records(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


async def test_stopping_mid_publish_records_the_unconfirmed_message_and_no_fault() -> None:
    now = {"t": 0.0}
    adapter, desk, buf = rig(now)
    exchange = HangingExchange()
    adapter._events = exchange  # type: ignore[assignment]
    # Three orders' answers: one stuck in a publish, one due later but never reached by the stalled pump,
    # one not yet due when the run stops.
    desk.handle(dict(QUOTE_REQUEST, message_id="qr-1", order_reference="s1-0000001"), 0.0)
    desk.handle(dict(QUOTE_REQUEST, message_id="qr-2", order_reference="s1-0000002"), 5.0)
    desk.handle(dict(QUOTE_REQUEST, message_id="qr-3", order_reference="s1-0000003"), 50.0)
    (first,) = desk.pop_due(5.0)  # what the pump took before it stalled
    now["t"] = 10.0
    pump = asyncio.create_task(adapter._publish_in_order([first]))
    await asyncio.wait_for(exchange.tried.wait(), 3.0)
    adapter._pump = pump
    await adapter.stop()
    recs = records(buf)
    failed = [r for r in recs if r["kind"] == "courier_publish_failed"]
    assert sorted(r["order_ref"] for r in failed) == ["s1-0000001", "s1-0000002"]
    assert all(r["failure"] == "run stopped before the broker confirmed it" for r in failed)
    assert failed[0]["quote_id"] and failed[0]["expires_run_s"] == 900.0  # compression 1
    (stopped,) = [r for r in recs if r["kind"] == "courier_stopped"]
    assert stopped["undue"] == 1 and stopped["publish_failed"] == 2
    assert not any(r["kind"] == "harness_fault" for r in recs)
    assert desk.idle()


async def test_a_pump_error_is_a_harness_fault() -> None:
    now = {"t": 0.0}
    adapter, desk, buf = rig(now)

    raised = asyncio.Event()

    def broken(run_s: float) -> list[Any]:
        raised.set()
        raise RuntimeError("boom")

    desk.pop_due = broken  # type: ignore[method-assign]
    pump = asyncio.create_task(adapter._pump_loop())
    await asyncio.wait_for(raised.wait(), 3.0)  # the pump records the error before it pauses 0.2 s
    pump.cancel()
    await asyncio.gather(pump, return_exceptions=True)
    recs = records(buf)
    assert recs[0]["kind"] == "courier_pump_error"
    fault = recs[1]
    assert fault["kind"] == "harness_fault" and fault["source"] == "simulator"
    assert fault["what"] == "courier_pump_error" and "boom" in fault["detail"]
    assert fault["order_ref"] is None and "message_id" in fault


async def test_a_message_that_cannot_be_published_is_a_harness_fault_and_the_next_still_goes() -> None:
    now = {"t": 10.0}
    adapter, desk, buf = rig(now)
    exchange = FakeExchange(fail=0)
    adapter._events = exchange  # type: ignore[assignment]
    desk.handle(dict(QUOTE_REQUEST, message_id="qr-1"), 0.0)
    desk.handle(dict(QUOTE_REQUEST, message_id="qr-2"), 0.0)  # a new request: the same quote again
    bad, good = desk.pop_due(10.0)
    bad.body["price"] = object()  # not JSON: the publish itself raises, not the broker
    await adapter._publish_in_order([bad, good])
    recs = records(buf)
    (fault,) = [r for r in recs if r["kind"] == "harness_fault"]
    assert fault["what"] == "courier_message_dropped" and fault["message_id"] == bad.body["message_id"]
    assert fault["order_ref"] == "s1-0000001"
    ((_, published),) = exchange.published
    assert published.message_id == good.body["message_id"]
    assert desk.idle(), "both settled"


async def test_a_request_the_desk_chokes_on_is_acked_and_a_harness_fault() -> None:
    adapter, desk, buf = rig({"t": 0.0})

    def choke(msg: dict[str, Any], run_s: float) -> None:
        raise KeyError("x")

    desk.handle = choke  # type: ignore[method-assign]
    msg = FakeIncoming(QUOTE_REQUEST)
    await adapter._on_request("pedalo", msg)  # type: ignore[arg-type]
    assert msg.acked
    (fault,) = records(buf)
    assert fault["kind"] == "harness_fault" and fault["what"] == "courier_request_error"
    assert fault["order_ref"] == "s1-0000001" and fault["message_id"] == "amqp-mid-1"


async def test_the_ledger_tells_per_order_and_courier_how_each_ask_ended() -> None:
    """The audit's "served" check classifies every accepted order's end from these records alone: who was
    asked, who declined or was down, which quote was valid until when, and why a booking was refused."""
    now = {"t": 0.0}
    buf = io.StringIO()
    led = Ledger(buf, lambda: 0.0)
    sc = Scenario.model_validate({"arrivals": {"rate": 1.0}, "clock": {"mode": "compressed", "compression": 60.0},
                                  "outages": [{"courier": "dashly", "at": 0.0, "duration": 100.0}]})  # fmt: skip
    desk = CourierDesk(1, sc, SimClock(60.0, 10.0, epoch=1_800_000_000.0), led)
    adapter = CourierAmqpAdapter("amqp://unused/", desk, led, lambda: now["t"])
    adapter._events = FakeExchange(fail=0)  # type: ignore[assignment]

    async def publish_due(t: float) -> None:
        now["t"] = t
        await adapter._publish_in_order(desk.pop_due(t))

    for courier in ("pedalo", "dashly"):
        desk.handle(dict(QUOTE_REQUEST, courier=courier, message_id=f"qr-{courier}"), 0.0)
    # A dropoff in Birmingham: out of area.
    desk.handle(dict(QUOTE_REQUEST, courier="vanguard", message_id="qr-v", parcel={"weight_g": 1, "size": "XL"},
                     dropoff={"lat": 52.5, "lon": -1.9}), 0.0)  # fmt: skip
    await publish_due(2.0)
    desk.handle({"type": "booking_request", "message_id": "bk-d", "courier": "dashly", "delivery_id": "dlv_1",
                 "order_reference": "s1-0000001", "quote_id": "q-dashly-whatever"}, 3.0)  # fmt: skip
    quote = next(json.loads(line) for line in buf.getvalue().splitlines() if '"quote_sent"' in line)
    desk.handle({"type": "booking_request", "message_id": "bk-p", "courier": "pedalo", "delivery_id": "dlv_1",
                 "order_reference": "s1-0000001", "quote_id": quote["quote_id"]}, 20.0)  # fmt: skip
    await publish_due(21.0)
    recs = records(buf)
    by = {(r["kind"], r.get("courier")): r for r in recs}
    seen = by[("quote_request_seen", "pedalo")]
    assert seen["message_id"] == "qr-pedalo" and seen["delivery_id"] == "dlv_1" and seen["run_s"] == 0.0
    assert by[("quote_unanswered", "dashly")] | {"t": 0} == {
        "t": 0, "kind": "quote_unanswered", "order_ref": "s1-0000001", "courier": "dashly", "reason": "outage",
        "message_id": "qr-dashly", "delivery_id": "dlv_1"}  # fmt: skip
    assert by[("booking_unanswered", "dashly")]["reason"] == "outage"
    declined = by[("quote_sent", "vanguard")]
    assert declined["type"] == "quote_declined" and declined["reason"] == "out_of_area"
    q = by[("quote_sent", "pedalo")]
    assert q["type"] == "quote" and q["in_reply_to"] == "qr-pedalo" and q["delivery_id"] == "dlv_1"
    assert q["price_minor"] > 0 and q["vehicle"] and q["expires_at"].endswith("Z")
    assert (q["issued_run_s"], q["expires_run_s"], q["quote_serial"], q["reply"]) == (0.0, 15.0, 1, "fresh")
    assert q["due_run_s"] > 0.0 and q["sent_run_s"] == 2.0
    b = by[("booking_answer_sent", "pedalo")]
    assert (b["type"], b["reason"], b["quote_id"]) == ("booking_rejected", "quote_expired", q["quote_id"])
    assert b["booked_run_s"] == 20.0 > b["quote_expires_run_s"] == 15.0, "the platform was too slow"
    assert b["in_reply_to"] == "bk-p" and b["delivery_id"] == "dlv_1"


def test_an_unconfirmed_booking_rejection_is_recorded_with_its_own_reason_kept() -> None:
    """A booking_rejected carries a ``reason`` of its own; recording it as unconfirmed at the stop once
    raised TypeError (two ``reason`` fields) and crashed the simulator at the end of a freeze drill."""
    adapter, _, buf = rig({"t": 0.0})
    adapter._stopping = True
    body = {"type": "booking_rejected", "courier": "pedalo", "reason": "no_driver_available",
            "message_id": "pedalo:s1:booking_rejected:1", "quote_id": "q-1"}  # fmt: skip
    adapter._failed(
        Outgoing(1.0, 1, "pedalo.booking_rejected", body, "booking_answer_sent", "s1"), "run stopped"
    )
    (rec,) = records(buf)
    assert (rec["kind"], rec["reason"], rec["failure"]) == (
        "courier_publish_failed",
        "no_driver_available",
        "run stopped",
    )


class FakeDeclared:
    def __init__(self, ready: int) -> None:
        self.declaration_result = type("Ok", (), {"message_count": ready})()


class FakeWatchChannel:
    def __init__(self, ready: dict[str, int]) -> None:
        self.ready, self.closed, self.asked = ready, False, []

    async def declare_queue(self, name: str, passive: bool = False) -> FakeDeclared:
        assert passive, "the watchdog only asks, never declares"
        self.asked.append(name)
        return FakeDeclared(self.ready.get(name, 0))

    async def close(self) -> None:
        self.closed = True


class FakeConn:
    def __init__(self, ready: dict[str, int]) -> None:
        self.ch = FakeWatchChannel(ready)

    async def channel(self) -> FakeWatchChannel:
        return self.ch


async def test_a_courier_queue_with_ready_requests_and_no_delivery_for_us_is_stalled() -> None:
    """After a full outage, a quorum queue's member can keep what the leader checked out to us and never
    send it: one courier hears nothing while its queue fills. Only a quiet queue WITH ready requests is
    stalled (an idle courier is not), and it is asked on a channel of its own."""
    adapter, desk, _ = rig({"t": 0.0})
    now = asyncio.get_running_loop().time()
    names = list(desk.models)
    quiet_idle, quiet_full, busy = names[0], names[1], names[2]
    adapter._last_delivery = {quiet_idle: now - 60, quiet_full: now - 60, busy: now}
    conn = FakeConn({f"courier.{quiet_full}.requests": 7, f"courier.{busy}.requests": 50})
    assert await adapter._stalled_queue(conn) == (quiet_full, 7)  # type: ignore[arg-type]
    assert f"courier.{busy}.requests" not in conn.ch.asked  # delivering: not asked
    assert conn.ch.closed
    adapter._last_delivery[quiet_full] = now  # it delivered again
    assert await adapter._stalled_queue(FakeConn({f"courier.{quiet_full}.requests": 7})) is None  # type: ignore[arg-type]
