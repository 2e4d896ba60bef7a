"""What a StateChanged owes, the retry backoff, and the settings' guards."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from system.domain.lifecycle import State
from system.notifications.decide import owed, retry_delay, target_of
from system.notifications.settings import NotificationsSettings

from .conftest import change


def test_target_carries_contacts_driver_and_store() -> None:
    t = target_of(change(State.COURIER_ASSIGNED, State.BOOKED, driver="zoomly-drv-00007"))
    assert (t.delivery_id, t.order_reference) == ("dlv_1", "s42-0000001")
    assert (t.phone, t.email, t.driver_id, t.store_name) == (
        "+447700900786",
        "ben@example.com",
        "zoomly-drv-00007",
        "229 Richmond Road",
    )
    assert target_of(change(State.PICKED_UP, State.COURIER_ASSIGNED)).driver_id is None


@pytest.mark.parametrize(
    ("state", "previous", "driver", "expected"),
    [
        (State.REQUESTED, None, None, [("customer", "email")]),
        (State.QUOTED, State.REQUESTED, None, []),
        (State.BOOKED, State.QUOTED, "d1", [("driver", "push")]),
        (State.BOOKED, State.QUOTED, None, []),  # no driver id yet: nothing to push to
        (State.COURIER_ASSIGNED, State.BOOKED, "d1", [("customer", "sms"), ("driver", "push")]),
        (State.PICKED_UP, State.COURIER_ASSIGNED, "d1", [("customer", "sms")]),
        (State.IN_TRANSIT, State.COURIER_ASSIGNED, "d1", [("customer", "sms")]),  # a forward skip
        (State.DELIVERED, State.IN_TRANSIT, "d1", [("customer", "sms"), ("customer", "email")]),
        (
            State.CANCELLED,
            State.BOOKED,
            "d1",
            [("customer", "sms"), ("customer", "email"), ("driver", "push")],
        ),
        (State.DELIVERED, State.DELIVERED, "d1", []),  # no change, nothing owed
    ],
)
def test_owed_per_state(
    state: State, previous: State | None, driver: str | None, expected: list[tuple[str, str]]
) -> None:
    got = owed(change(state, previous, driver=driver))
    assert [(n.audience, n.channel) for n in got] == expected
    assert all(n.state is state and n.delivery_id == "dlv_1" for n in got)


def test_missing_address_skips_that_channel_only() -> None:
    got = owed(change(State.DELIVERED, State.IN_TRANSIT, email=None))
    assert [(n.channel, n.to) for n in got] == [("sms", "+447700900786")]


def test_the_same_state_change_always_has_the_same_ids() -> None:
    first = owed(change(State.DELIVERED, State.IN_TRANSIT))
    again = owed(change(State.DELIVERED, State.PICKED_UP))  # another path to the same state change
    assert [n.notification_id for n in first] == [n.notification_id for n in again]
    assert len({n.notification_id for n in first}) == 2
    other = owed(change(State.DELIVERED, State.IN_TRANSIT, delivery="dlv_2"))
    assert not {n.notification_id for n in first} & {n.notification_id for n in other}


def test_retry_delay_doubles_to_the_cap_and_honours_retry_after() -> None:
    assert [retry_delay(a, 0.5, 4.0) for a in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert retry_delay(0, 0.5, 4.0) == 0.5
    assert retry_delay(1, 0.5, 4.0, retry_after_s=3.0) == 3.0
    assert retry_delay(1, 0.5, 4.0, retry_after_s=600.0) == 4.0  # capped
    assert retry_delay(3, 0.5, 4.0, retry_after_s=0.1) == 2.0  # never shorter than our own backoff
    assert retry_delay(10_000, 0.5, 30.0) == 30.0  # no overflow


def test_settings_from_env_and_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRILL_NOTIFICATIONS_NOTIFY_URL", "http://127.0.0.1:9100/")
    monkeypatch.setenv("DRILL_NOTIFICATIONS_TEST_ACK_BEFORE_COMMIT", "true")
    monkeypatch.setenv("DRILL_NOTIFICATIONS_BATCH_SIZE", "7")
    s = NotificationsSettings()
    assert (s.notify_url, s.test_ack_before_commit, s.batch_size) == ("http://127.0.0.1:9100", True, 7)
    assert "TEST ONLY" in (NotificationsSettings.model_fields["test_ack_before_commit"].description or "")
    with pytest.raises(ValidationError, match="claim_s"):
        NotificationsSettings(http_timeout_s=5, claim_s=5)
    with pytest.raises(ValidationError, match="http"):
        NotificationsSettings(notify_url="ftp://example.com")
    assert NotificationsSettings(notify_url="  ").notify_url is None
