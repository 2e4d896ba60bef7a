"""Courier dialects against the simulator's own couriers (tests may import simulator; system may not)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from simulator.clock import SimClock
from simulator.config import Scenario, default_couriers
from simulator.courier_desk import CourierDesk, Outgoing, dialect_payload
from simulator.couriers import DIALECT_BOOKED, DIALECTS, TimelineEvent
from system.domain.common import Dialect
from system.domain.dialects import (
    DIALECT_STATUS,
    CourierMessageInvalid,
    UnknownCourierStatus,
    canonical_state,
    parse_booking_answer,
    parse_cancel_answer,
    parse_location,
    parse_status,
)
from system.domain.lifecycle import Accepted, Reason, State, Track, transition
from system.domain.marketplace import load_marketplace
from system.domain.quoting import Quote, parse_quote_answer


@pytest.mark.parametrize("dialect", ["uber", "doordash", "stuart"])
def test_tables_match_the_simulators_dialects_exactly(dialect: Dialect) -> None:
    sim: dict[str, str] = {name: canonical for canonical, name in DIALECTS[dialect].items()}
    sim[DIALECT_BOOKED[dialect]] = "booked"
    assert {k: v.value for k, v in DIALECT_STATUS[dialect].items()} == sim


def envelope(dialect: str, status: str, payload: dict[str, Any] | None, seq: int = 3) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "status", "courier": "c1", "dialect": dialect, "delivery_id": "dlv_1",
                           "order_reference": "s1-0000001", "courier_job_id": "c1-job-1", "seq": seq,
                           "at": "2026-11-18T11:09:38Z", "message_id": f"c1-job-1:{seq}", "status": status}  # fmt: skip
    if payload is not None:
        doc["payload"] = payload
    return doc


@pytest.mark.parametrize("dialect", ["uber", "doordash", "stuart"])
def test_every_status_payload_the_simulator_builds_parses(dialect: Dialect) -> None:
    pairs: list[tuple[str, str]] = [*DIALECTS[dialect].items(), ("booked", DIALECT_BOOKED[dialect])]
    for canonical, status in pairs:
        ev = TimelineEvent(10.0, "status", None, status, 51.51, -0.11)
        payload = dialect_payload(
            dialect, status, ev, "c1-job-1", "s1-0000001", "2026-11-18T11:09:38Z", "drv-9", "bike"
        )
        out = parse_status(json.dumps(envelope(dialect, status, payload)).encode(), expected_dialect=dialect)
        assert out.state.value == canonical and out.status == status and out.seq == 3
        assert out.location is not None and (out.location.lat, out.location.lon) == (51.51, -0.11)
        assert out.driver_id == "drv-9" and out.courier_job_id == "c1-job-1"
        assert out.event.value == canonical


def desk() -> CourierDesk:
    sc = Scenario.model_validate(
        {"arrivals": {"rate": 1.0}, "clock": {"mode": "compressed", "compression": 6.0}}
    )
    return CourierDesk(4, sc, SimClock(6.0, 10.0, epoch=1_800_000_000.0))


def quote_request(courier: str, ref: str) -> dict[str, Any]:
    return {"type": "quote_request", "message_id": f"qr-{ref}-{courier}", "delivery_id": f"dlv-{ref}",
            "order_reference": ref, "courier": courier, "pickup": {"lat": 51.52, "lon": -0.10},
            "dropoff": {"lat": 51.50, "lon": -0.12}, "parcel": {"weight_g": 900, "size": "S"}}  # fmt: skip


def book(d: CourierDesk, courier: str, ref: str) -> tuple[Quote, list[Outgoing]]:
    d.handle(quote_request(courier, ref), 0.0)
    (answer,) = d.pop_due(5.0)
    quote = parse_quote_answer(json.dumps(answer.body))
    assert isinstance(quote, Quote) and quote.courier == courier
    d.handle({"type": "booking_request", "message_id": f"bk-{ref}", "courier": courier, "order_reference": ref,
              "delivery_id": f"dlv-{ref}", "quote_id": quote.quote_id}, 5.0)  # fmt: skip
    return quote, d.pop_due(100_000.0)


@pytest.mark.parametrize("courier", [c.name for c in default_couriers()])
def test_a_whole_simulated_journey_maps_onto_a_legal_lifecycle(courier: str) -> None:
    dialect = load_marketplace().courier(courier).dialect
    for n in range(1, 6):
        ref = f"s4-{n:07d}"
        _, msgs = book(desk(), courier, ref)
        answer = parse_booking_answer(msgs[0].body)
        if not answer.accepted:
            assert answer.reason
            continue
        track, rejected, pings = Track(State.BOOKED), [], 0
        for m in msgs[1:]:
            if m.body["type"] == "location":
                loc = parse_location(json.dumps(m.body))
                assert loc.courier_job_id == answer.courier_job_id
                pings += 1
                continue
            ev = parse_status(m.body, expected_dialect=dialect)
            out = transition(track, ev.event, ev.seq)
            if isinstance(out, Accepted):
                track = out.track
            else:
                rejected.append(out)
        assert track.state in {State.DELIVERED, State.FAILED, State.RETURNED}
        # Only the courier's "pending" (booked) repeats our own booking.
        assert [r.reason for r in rejected] == [Reason.DUPLICATE]
        assert pings > 0


def test_the_couriers_cancel_confirmation_has_no_payload_and_parses() -> None:
    for n in range(1, 10):
        ref, d = f"s4-{n:07d}", desk()
        d.handle(quote_request("pedalo", ref), 0.0)
        (q,) = d.pop_due(5.0)
        d.handle({"type": "booking_request", "message_id": "bk", "courier": "pedalo", "order_reference": ref,
                  "delivery_id": f"dlv-{ref}", "quote_id": q.body["quote_id"]}, 5.0)  # fmt: skip
        answer = parse_booking_answer(d.pop_due(7.0)[0].body)
        if answer.accepted:
            break
    else:
        pytest.fail("no booking accepted")
    d.handle({"type": "cancel_request", "message_id": "cx1", "courier": "pedalo", "delivery_id": f"dlv-{ref}",
              "order_reference": ref, "courier_job_id": answer.courier_job_id}, 7.0)  # fmt: skip
    by_type = {m.body["type"]: m.body for m in d.pop_due(8.0)}
    assert parse_cancel_answer(by_type["cancel_accepted"]).courier_job_id == answer.courier_job_id
    ev = parse_status(by_type["status"], expected_dialect="stuart")
    assert "payload" not in by_type["status"]
    assert ev.state is State.CANCELLED and ev.seq == 999 and ev.location is None
    out = transition(Track(State.COURIER_ASSIGNED, 2), ev.event, ev.seq)
    assert isinstance(out, Accepted) and out.state is State.CANCELLED


def test_unknown_status_is_an_error_carrying_the_reason() -> None:
    with pytest.raises(UnknownCourierStatus) as err:
        parse_status(envelope("doordash", "DASHER_TELEPORTED", None))
    e = err.value
    assert (e.courier, e.dialect, e.status) == ("c1", "doordash", "DASHER_TELEPORTED")
    assert "DASHER_TELEPORTED" in e.reason and "DASHER_DROPPED_OFF" in e.reason
    with pytest.raises(UnknownCourierStatus):
        canonical_state("uber", "Delivered")  # case matters: never guessed


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "object"),
        ({"type": "status"}, "courier"),
        ({**envelope("uber", "pickup", None), "seq": "three"}, "seq"),
        ({**envelope("uber", "pickup", None), "seq": -1}, "seq"),
        ({**envelope("uber", "pickup", None), "at": "yesterday"}, "at"),
        ({**envelope("uber", "pickup", None), "at": "2026-11-18T11:09:38"}, "at"),  # no time zone
        ({**envelope("uber", "pickup", None), "dialect": "fedex"}, "dialect"),
        (envelope("uber", "pickup", {"kind": "event.delivery_status", "status": "pickup"}), "payload.delivery_id"),
        (envelope("stuart", "picking", {"event": "delivery", "type": "update", "data": {"status": "picking"}}),
         "payload.data.clientReference"),
        (envelope("doordash", "DASHER_CONFIRMED", {"event_name": "DASHER_PICKED_UP", "external_delivery_id": "s1-0000001",
                                                   "created_at": "2026-11-18T11:09:38Z"}), "contradicts"),
        (envelope("doordash", "DASHER_CONFIRMED", {"event_name": "DASHER_CONFIRMED", "external_delivery_id": "other",
                                                   "created_at": "2026-11-18T11:09:38Z"}), "order_reference"),
    ],
)  # fmt: skip
def test_malformed_status_messages_are_refused_with_the_field(doc: Any, needle: str) -> None:
    with pytest.raises(CourierMessageInvalid) as err:
        parse_status(doc)
    assert needle in err.value.reason


def test_a_message_in_another_dialect_than_registered_is_refused() -> None:
    with pytest.raises(CourierMessageInvalid, match="registered with the stuart dialect"):
        parse_status(envelope("uber", "pickup", None), expected_dialect="stuart")


def test_booking_accepted_without_a_job_is_invalid() -> None:
    with pytest.raises(CourierMessageInvalid, match="courier_job_id"):
        parse_booking_answer({"type": "booking_accepted", "courier": "dashly", "order_reference": "r",
                              "quote_id": "q", "message_id": "m"})  # fmt: skip
