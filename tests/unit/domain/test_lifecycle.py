"""The canonical state machine: legal moves, each kind of rejection, and properties over any sequence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from system.domain.lifecycle import (
    CANCELLABLE,
    LEGAL_FROM,
    TERMINAL,
    Accepted,
    Event,
    Reason,
    Rejected,
    State,
    Track,
    can_cancel,
    progress,
    replay,
    transition,
)

HAPPY = [
    (Event.QUOTED, None),
    (Event.BOOKED, None),
    (Event.BOOKED, 1),  # the courier's "pending": a duplicate of our own booking
    (Event.COURIER_ASSIGNED, 2),
    (Event.PICKED_UP, 9),
    (Event.IN_TRANSIT, 10),
    (Event.DELIVERED, 20),
]


def test_happy_path_reaches_delivered_with_the_pending_duplicate_only() -> None:
    track, rejected = replay(HAPPY)
    assert track == Track(State.DELIVERED, 20)
    assert [(r.reason, r.is_error) for r in rejected] == [(Reason.DUPLICATE, False)]


@pytest.mark.parametrize("state", sorted(CANCELLABLE))
def test_cancel_allowed_before_pickup(state: State) -> None:
    out = transition(Track(state, 3), Event.CANCELLED)
    assert isinstance(out, Accepted) and out.state is State.CANCELLED and out.track.seq == 3


@pytest.mark.parametrize("state", [State.PICKED_UP, State.IN_TRANSIT, State.FAILED])
def test_cancel_after_pickup_is_illegal_too_late(state: State) -> None:
    out = transition(Track(state, 5), Event.CANCELLED)
    assert isinstance(out, Rejected) and out.reason is Reason.ILLEGAL and "too late" in out.detail
    assert not can_cancel(state)


def test_courier_cancel_confirmation_after_our_cancel_is_a_duplicate() -> None:
    out = transition(Track(State.CANCELLED, 0), Event.CANCELLED, seq=999)
    assert isinstance(out, Rejected) and out.reason is Reason.DUPLICATE and not out.is_error


def test_failed_then_returned_and_nothing_after() -> None:
    track, rejected = replay([(Event.FAILED, 14), (Event.RETURNED, 20), (Event.DELIVERED, 21)],
                             Track(State.IN_TRANSIT, 12))  # fmt: skip
    assert track.state is State.RETURNED
    assert [r.reason for r in rejected] == [Reason.TERMINAL]


def test_no_courier_fails_before_booking_only() -> None:
    assert isinstance(transition(State.QUOTED, Event.NO_COURIER), Accepted)
    out = transition(State.BOOKED, Event.NO_COURIER)
    assert isinstance(out, Rejected) and out.reason is Reason.ILLEGAL


@pytest.mark.parametrize(
    ("state", "event", "seq", "reason"),
    [
        (State.REQUESTED, Event.BOOKED, None, Reason.ILLEGAL),  # booked overtook its quoted (retry_later)
        (State.BOOKED, Event.RETURNED, 14, Reason.ILLEGAL),  # returned before collection
        (State.BOOKED, Event.FAILED, 14, Reason.ILLEGAL),  # customer absent before the driver even came
        # A newer seq but an older state: a courier contradicting itself.
        (State.IN_TRANSIT, Event.PICKED_UP, 12, Reason.ILLEGAL),
        (State.IN_TRANSIT, Event.PICKED_UP, 3, Reason.OUT_OF_ORDER),  # late redelivery
        (State.IN_TRANSIT, Event.DELIVERED, 10, Reason.OUT_OF_ORDER),  # same seq as the applied one
        (State.BOOKED, Event.QUOTED, None, Reason.OUT_OF_ORDER),  # a stale platform event
        (State.DELIVERED, Event.FAILED, 30, Reason.TERMINAL),
        (State.CANCELLED, Event.PICKED_UP, 30, Reason.TERMINAL),
        (State.PICKED_UP, Event.PICKED_UP, 10, Reason.DUPLICATE),
    ],
)
def test_rejections(state: State, event: Event, seq: int | None, reason: Reason) -> None:
    out = transition(Track(state, 10), event, seq)
    assert isinstance(out, Rejected), out
    assert out.reason is reason and out.current is state and out.event is event and out.detail


def test_booked_that_overtook_its_quoted_is_marked_retry_later() -> None:
    """Quoting's "quoted" and dispatch's "booked" travel different routes (seen in the soak drill)."""
    out = transition(State.REQUESTED, Event.BOOKED)
    assert isinstance(out, Rejected) and out.retry_later and "quoted" in out.detail
    late = transition(State.QUOTED, Event.QUOTED)
    assert isinstance(late, Rejected) and not late.retry_later  # the other way round: a duplicate
    assert isinstance(transition(State.QUOTED, Event.BOOKED), Accepted)


def test_courier_event_before_booking_is_marked_retry_later() -> None:
    out = transition(State.QUOTED, Event.COURIER_ASSIGNED, seq=2)
    assert isinstance(out, Rejected) and out.reason is Reason.ILLEGAL and out.retry_later


def test_forward_skip_then_late_status_is_out_of_order() -> None:
    track, rejected = replay([(Event.IN_TRANSIT, 10), (Event.PICKED_UP, 8)], Track(State.COURIER_ASSIGNED, 2))
    assert track == Track(State.IN_TRANSIT, 10)
    assert [r.reason for r in rejected] == [Reason.OUT_OF_ORDER]


def test_transition_table_is_total_and_consistent() -> None:
    assert set(LEGAL_FROM) == set(Event)
    for event, sources in LEGAL_FROM.items():
        assert not sources & TERMINAL, event  # nothing leaves a terminal state


events = st.lists(st.tuples(st.sampled_from(list(Event)), st.none() | st.integers(0, 40)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(events)
def test_any_sequence_never_goes_backwards_nor_leaves_a_terminal_state(
    seq_events: list[tuple[Event, int | None]],
) -> None:
    track = Track()
    for event, seq in seq_events:
        out = transition(track, event, seq)
        if isinstance(out, Accepted):
            assert track.state not in TERMINAL
            assert progress(out.state) > progress(track.state)  # strictly forward
            assert out.track.seq >= track.seq  # the applied seq never decreases
            if seq is not None:
                assert seq > track.seq
            track = out.track
        else:
            assert out.current is track.state


@settings(max_examples=200, deadline=None)
@given(events)
def test_replay_is_deterministic_and_rejections_change_nothing(
    seq_events: list[tuple[Event, int | None]],
) -> None:
    assert replay(seq_events) == replay(seq_events)
    track = Track()
    for event, seq in seq_events:
        out = transition(track, event, seq)
        again = transition(track, event, seq)
        assert out == again  # pure: same input, same answer
        if isinstance(out, Accepted):
            track = out.track


@pytest.mark.parametrize("event", [Event.BOOKED, Event.CANCELLED, Event.DELIVERED])
def test_any_courier_status_before_our_booking_waits(event: Event) -> None:
    out = transition(State.QUOTED, event, seq=1)
    assert isinstance(out, Rejected) and out.reason is Reason.ILLEGAL and out.retry_later
    # The same events without a seq are platform events: booking and cancelling are ours to make.
    assert isinstance(transition(State.QUOTED, Event.BOOKED), Accepted)
    assert isinstance(transition(State.QUOTED, Event.CANCELLED), Accepted)
