"""Notifications: what each state change owes, and the dedup key that makes it exactly once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from system.domain.lifecycle import Accepted, Event, State, Track, transition
from system.domain.notifications import NotificationTarget, notifications_for

D = NotificationTarget("dlv_1", "s42-0000001", phone="+447700900786", email="ben@example.com",
                       driver_id="zoomly-drv-00007", store_name="Thistle Emporium")  # fmt: skip


def test_wire_body_matches_the_contract() -> None:
    (n,) = notifications_for(D, State.COURIER_ASSIGNED, State.PICKED_UP)
    body = n.wire()
    assert set(body) == {
        "notification_id",
        "delivery_id",
        "order_reference",
        "audience",
        "channel",
        "to",
        "state",
        "text",
    }
    assert body["audience"] == "customer" and body["channel"] == "sms" and body["to"] == "+447700900786"
    assert body["state"] == "picked_up" and body["text"] == "Your order is on its way"
    assert body["notification_id"].startswith("ntf_")


def test_driver_instructions_use_booked_and_courier_assigned() -> None:
    driver_states = {n.state for s in State for n in notifications_for(D, None, s) if n.audience == "driver"}
    assert driver_states - {State.CANCELLED} == {State.BOOKED, State.COURIER_ASSIGNED}
    (job,) = notifications_for(D, State.QUOTED, State.BOOKED)
    assert job.to == "zoomly-drv-00007" and "Thistle Emporium" in job.text


def test_missing_addresses_are_skipped_not_sent_empty() -> None:
    bare = NotificationTarget("dlv_2", "s42-0000002", phone="+447700900001")
    assert [(n.audience, n.channel) for n in notifications_for(bare, State.IN_TRANSIT, State.DELIVERED)] == [
        ("customer", "sms")
    ]
    assert notifications_for(bare, State.QUOTED, State.BOOKED) == []  # no driver yet
    assert notifications_for(bare, State.REQUESTED, State.REQUESTED) == []


def test_every_terminal_state_tells_the_customer() -> None:
    for s in (State.DELIVERED, State.FAILED, State.RETURNED, State.CANCELLED):
        assert any(n.audience == "customer" for n in notifications_for(D, State.IN_TRANSIT, s)), s


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Event)), st.none() | st.integers(0, 30)), max_size=30))
def test_any_history_owes_exactly_one_per_state_change_and_recipient(
    events: list[tuple[Event, int | None]],
) -> None:
    track, sent = Track(), list(notifications_for(D, None, State.REQUESTED))
    for event, seq in events:
        out = transition(track, event, seq)
        if isinstance(out, Accepted):
            sent += notifications_for(D, track.state, out.state)
            track = out.track
    keys = [n.dedup_key for n in sent]
    assert len(keys) == len(set(keys))  # states never repeat, so the keys never do
    assert len({n.notification_id for n in sent}) == len(sent)
    # Recomputing (a redelivered transition) yields the same identities: the unique index drops it.
    again = notifications_for(D, State.IN_TRANSIT, State.DELIVERED)
    assert [n.notification_id for n in again] == [
        n.notification_id for n in notifications_for(D, State.IN_TRANSIT, State.DELIVERED)
    ]
