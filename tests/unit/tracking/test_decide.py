"""Tracking's pure decisions: the lifecycle plus the booked job, as instructions for the handler."""

from __future__ import annotations

import doctest
from dataclasses import replace
from datetime import UTC, datetime

import pytest

import system.tracking.decide
from system.domain.lifecycle import Event, State, Track
from system.platform.contracts import Contact, Driver
from system.tracking.decide import (
    FOREIGN_JOB,
    Apply,
    Ignore,
    MovePosition,
    Reject,
    RetryLater,
    TrackedDelivery,
    advance,
    decide,
    decide_location,
    state_changed,
)

JOB = "zoomly-job-1"
NEW = TrackedDelivery(id="dlv_1", order_reference="s42-0000001")
BOOKED = replace(NEW, state=State.BOOKED, courier="zoomly", courier_job_id=JOB)


def courier(d: TrackedDelivery | None, event: Event, seq: int, job: str = JOB) -> object:
    return decide(d, event, seq=seq, job=job, courier_status=True)


def test_platform_events_walk_the_start_of_the_path() -> None:
    assert decide(NEW, Event.QUOTED) == Apply(Track(State.QUOTED, 0), State.REQUESTED)
    quoted = replace(NEW, state=State.QUOTED)
    assert decide(quoted, Event.BOOKED) == Apply(Track(State.BOOKED, 0), State.QUOTED)
    assert decide(quoted, Event.NO_COURIER) == Apply(Track(State.FAILED, 0), State.QUOTED)
    # dispatch's booked overtook quoting's quoted: wait for it (retry tiers), do not reject it for good
    assert isinstance(decide(NEW, Event.BOOKED), RetryLater)


def test_forward_skip_applies_the_new_state_only() -> None:
    assigned = replace(BOOKED, state=State.COURIER_ASSIGNED, seq=2)
    assert courier(assigned, Event.IN_TRANSIT, 6) == Apply(Track(State.IN_TRANSIT, 6), State.COURIER_ASSIGNED)


def test_a_lower_seq_is_out_of_order_and_rejected() -> None:
    in_transit = replace(BOOKED, state=State.IN_TRANSIT, seq=6)
    out = courier(in_transit, Event.PICKED_UP, 4)
    assert isinstance(out, Reject) and out.reason == "out_of_order"
    assert "seq 4" in out.detail


def test_nothing_leaves_a_terminal_state() -> None:
    delivered = replace(BOOKED, state=State.DELIVERED, seq=8)
    out = courier(delivered, Event.FAILED, 9)
    assert isinstance(out, Reject) and out.reason == "terminal"


def test_an_illegal_transition_is_rejected() -> None:
    assigned = replace(BOOKED, state=State.COURIER_ASSIGNED, seq=2)
    out = courier(assigned, Event.RETURNED, 3)
    assert isinstance(out, Reject) and out.reason == "illegal"


def test_cancel_after_pickup_is_too_late() -> None:
    picked = replace(BOOKED, state=State.PICKED_UP, seq=4)
    assert decide(picked, Event.CANCELLED) == Reject("illegal", "too late to cancel: picked_up")
    assert decide(BOOKED, Event.CANCELLED) == Apply(Track(State.CANCELLED, 0), State.BOOKED)


def test_duplicates_are_ignored() -> None:
    assert isinstance(decide(BOOKED, Event.BOOKED), Ignore)  # dispatch republished
    assert isinstance(courier(BOOKED, Event.BOOKED, 1), Ignore)  # the courier's "pending" after ours
    cancelled = replace(BOOKED, state=State.CANCELLED)
    assert isinstance(courier(cancelled, Event.CANCELLED, 999), Ignore)  # the courier confirms our cancel


def test_a_status_of_another_job_is_a_foreign_job() -> None:
    out = courier(BOOKED, Event.COURIER_ASSIGNED, 2, job="zoomly-job-2")
    assert isinstance(out, Reject) and out.reason == FOREIGN_JOB and "zoomly-job-2" in out.detail
    # Cancelled before any booking was recorded, then a late-accepted job reports: foreign too.
    cancelled = replace(NEW, state=State.CANCELLED)
    out = courier(cancelled, Event.BOOKED, 1, job="zoomly-job-3")
    assert isinstance(out, Reject) and out.reason == FOREIGN_JOB


@pytest.mark.parametrize("state", [State.REQUESTED, State.QUOTED])
def test_a_courier_status_before_the_booking_is_retried(state: State) -> None:
    d = replace(NEW, state=state)
    assert isinstance(courier(d, Event.COURIER_ASSIGNED, 2), RetryLater)
    assert isinstance(courier(d, Event.BOOKED, 1), RetryLater)


def test_anything_about_a_delivery_not_created_yet_is_retried() -> None:
    assert isinstance(decide(None, Event.QUOTED), RetryLater)
    assert isinstance(courier(None, Event.DELIVERED, 9), RetryLater)
    assert isinstance(decide_location(None, job=JOB, seq=3), RetryLater)


def test_location_pings_are_ordered_among_themselves_and_checked_against_the_job() -> None:
    moving = replace(BOOKED, state=State.IN_TRANSIT, seq=6, location_seq=7)
    assert decide_location(moving, job=JOB, seq=8) == MovePosition()
    assert isinstance(decide_location(moving, job=JOB, seq=7), Ignore)
    assert isinstance(decide_location(moving, job=JOB, seq=3), Ignore)
    assert decide_location(replace(moving, location_seq=None), job=JOB, seq=1) == MovePosition()
    foreign = decide_location(moving, job="other-job", seq=9)
    assert isinstance(foreign, Reject) and foreign.reason == FOREIGN_JOB
    assert isinstance(decide_location(replace(NEW, state=State.QUOTED), job=JOB, seq=2), RetryLater)


def test_advance_keeps_what_the_event_does_not_tell() -> None:
    driver = Driver(id="drv-1", vehicle="bike")
    eta = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
    booked = advance(replace(NEW, state=State.QUOTED), Track(State.BOOKED), courier="zoomly",
                     courier_job_id=JOB, driver=driver, eta=eta)  # fmt: skip
    assert (booked.courier, booked.courier_job_id, booked.driver, booked.eta) == ("zoomly", JOB, driver, eta)
    picked = advance(booked, Track(State.PICKED_UP, 4))
    assert (picked.state, picked.seq, picked.driver, picked.eta) == (State.PICKED_UP, 4, driver, eta)


def test_the_announcement_carries_what_notifications_need() -> None:
    d = replace(
        BOOKED,
        state=State.PICKED_UP,
        retailer_id="r01",
        driver=Driver(id="drv-1", vehicle="bike"),
        recipient=Contact(name="Ben", phone="+447700900786"),
        store_name="229 Richmond Road",
    )
    at = datetime(2026, 11, 18, 11, 30, tzinfo=UTC)
    m = state_changed(d, State.COURIER_ASSIGNED, at, "why")
    assert m.message_id == "dlv_1:state:picked_up"
    assert (m.state, m.previous, m.at, m.reason) == (State.PICKED_UP, State.COURIER_ASSIGNED, at, "why")
    assert (m.courier, m.courier_job_id, m.retailer_id, m.store_name) == (
        "zoomly",
        JOB,
        "r01",
        "229 Richmond Road",
    )
    assert m.recipient.phone == "+447700900786" and m.driver == Driver(id="drv-1", vehicle="bike")


def test_docstring_examples() -> None:
    assert doctest.testmod(system.tracking.decide).failed == 0
