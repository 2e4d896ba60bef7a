"""Intake's mirror of tracking's state changes: applied to intake's row and history, forward only; and
the relay's broker credentials and declarations with and without a platform secrets file."""

from __future__ import annotations

import doctest
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import system.intake.mirror
from system.domain.intake import DeliveryRequest
from system.domain.lifecycle import State
from system.intake.mirror import decode_state_changed, handle_state_changed
from system.intake.relay import mirror_enabled
from system.intake.settings import IntakeSettings, messaging_settings
from system.intake.store import Delivery, IntakeStore
from system.messaging.consumer import MalformedMessage
from system.messaging.db import open_db
from system.messaging.envelope import InboundMessage
from system.platform.contracts import Driver, StateChanged, state_message, state_message_id

T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)


def request() -> DeliveryRequest:
    return DeliveryRequest.model_validate(
        {
            "retailer_id": "r01", "channel": "rest", "reference": "s42-0000009", "store_id": "r01-s1",
            "pickup": {"lines": ["229 Richmond Road"], "city": "London", "postcode": "NW10 6GR",
                       "lat": 51.528535, "lon": -0.259383},
            "dropoff": {"lines": ["63 York Road"], "city": "London", "postcode": "NW10 3YB",
                        "lat": 51.535433, "lon": -0.270405},
            "pickup_window": {"start": "2026-11-18T11:17:40Z", "end": "2026-11-18T11:47:40Z"},
            "dropoff_window": {"start": "2026-11-18T11:27:40Z", "end": "2026-11-18T12:27:40Z"},
            "recipient": {"name": "Ben Nguyen", "phone": "+447700900786"},
            "parcel": {"weight_g": 940, "size": "S"},
            "basket": {"amount_minor": 2247, "currency": "GBP"},
        }
    )  # fmt: skip


class Mirror:
    def __init__(self, store: IntakeStore, delivery_id: str) -> None:
        self.store = store
        self.id = delivery_id

    async def apply(self, state: State, delivery_id: str | None = None, **fields: object) -> None:
        dlv = delivery_id or self.id
        m = state_message(
            StateChanged(message_id=state_message_id(dlv, state), delivery_id=dlv, order_reference="s42-0000009",
                         state=state, at=T0 + timedelta(minutes=len(state.value)), **fields)  # type: ignore[arg-type]
        )  # fmt: skip
        inbound = InboundMessage(m.message_id, decode_state_changed(m.body), dict(m.headers), m.exchange,
                                 m.routing_key, False, 0, m.body)  # fmt: skip
        db = await open_db(self.store.path)
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await handle_state_changed(db, inbound)
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")
        finally:
            await db.close()

    async def view(self) -> tuple[Delivery, list[str]]:
        found = await self.store.view(self.id)
        assert found is not None
        return found[0], [h["state"] for h in found[1]]


@pytest.fixture
async def mirror(tmp_path: Path) -> AsyncIterator[Mirror]:
    store = IntakeStore(tmp_path / "intake.db", synchronous="NORMAL")
    await store.open()
    try:
        answer = await store.submit_rest(request(), "key-1", "fp-1")
        assert answer.status == 202
        yield Mirror(store, answer.body["id"])
    finally:
        await store.close()


async def test_state_changes_move_intake_forward_with_courier_driver_and_eta(mirror: Mirror) -> None:
    await mirror.apply(State.REQUESTED)  # intake's own first state: nothing new
    await mirror.apply(State.QUOTED)
    await mirror.apply(
        State.BOOKED, courier="zoomly", courier_job_id="zoomly-job-1",
        driver=Driver(id="zoomly-drv-7", vehicle="bike"), eta=T0 + timedelta(minutes=45),
    )  # fmt: skip
    await mirror.apply(State.IN_TRANSIT, courier="zoomly", courier_job_id="zoomly-job-1")
    d, history = await mirror.view()
    assert d.state is State.IN_TRANSIT
    assert history == ["requested", "quoted", "booked", "in_transit"]
    assert (d.courier, d.courier_job_id, d.driver_id, d.driver_vehicle) == (
        "zoomly", "zoomly-job-1", "zoomly-drv-7", "bike",
    )  # fmt: skip
    assert d.eta == "2026-11-18T11:45:00.000Z"


async def test_an_older_state_after_a_newer_one_changes_nothing(mirror: Mirror) -> None:
    await mirror.apply(State.PICKED_UP)
    await mirror.apply(State.COURIER_ASSIGNED, courier="late-courier")
    await mirror.apply(State.PICKED_UP)
    d, history = await mirror.view()
    assert d.state is State.PICKED_UP and d.courier is None
    assert history == ["requested", "picked_up"]


async def test_a_state_intake_already_has_is_a_no_op(mirror: Mirror) -> None:
    answer = await mirror.store.cancel_rest("r01", mirror.id, "cancel-1", "fp-c", "customer_request")
    assert answer.status == 202
    await mirror.apply(State.CANCELLED)
    await mirror.apply(State.BOOKED)
    d, history = await mirror.view()
    assert d.state is State.CANCELLED and history == ["requested", "cancelled"]


async def test_a_cancel_tracking_refused_as_too_late_gives_way_to_what_tracking_says(mirror: Mirror) -> None:
    """Intake answered 202 and showed ``cancelled``; the courier had the parcel when tracking saw the cancel."""
    await mirror.apply(State.BOOKED)
    answer = await mirror.store.cancel_rest("r01", mirror.id, "cancel-3", "fp-c", "customer_request")
    assert answer.status == 202
    await mirror.apply(State.COURIER_ASSIGNED)  # tracking may still cancel from here: not a refusal yet
    d, _ = await mirror.view()
    assert d.state is State.CANCELLED
    await mirror.apply(State.PICKED_UP)  # no cancellation can follow: it was refused
    await mirror.apply(State.DELIVERED)
    d, history = await mirror.view()
    assert d.state is State.DELIVERED
    assert history == ["requested", "booked", "cancelled", "picked_up", "delivered"]
    found = await mirror.store.view(mirror.id)
    assert found is not None and found[1][3]["detail"] == "cancellation refused: too late (picked_up)"
    again = await mirror.store.cancel_rest("r01", mirror.id, "cancel-4", "fp-c2", "customer_request")
    assert again.status == 409 and again.body["state"] == "delivered"


async def test_failed_then_returned_both_apply(mirror: Mirror) -> None:
    await mirror.apply(State.IN_TRANSIT)
    await mirror.apply(State.FAILED, reason="customer absent")
    await mirror.apply(State.RETURNED)
    d, history = await mirror.view()
    assert d.state is State.RETURNED and history[-2:] == ["failed", "returned"]
    found = await mirror.store.view(mirror.id)
    assert found is not None and found[1][-2]["detail"] == "customer absent"


async def test_the_cancel_endpoint_sees_the_mirrored_state(mirror: Mirror) -> None:
    await mirror.apply(State.PICKED_UP)
    answer = await mirror.store.cancel_rest("r01", mirror.id, "cancel-2", "fp-c", "customer_request")
    assert answer.status == 409 and answer.body["state"] == "picked_up"


async def test_a_state_change_for_an_unknown_delivery_is_malformed_not_dropped(mirror: Mirror) -> None:
    with pytest.raises(MalformedMessage, match="unknown delivery 'dlv_nobody'"):
        await mirror.apply(State.QUOTED, delivery_id="dlv_nobody")


@pytest.mark.parametrize(
    "body",
    [b"{not json", json.dumps({"type": "delivery.state", "message_id": "x"}).encode(),
     json.dumps({"type": "lifecycle", "message_id": "x", "delivery_id": "d", "order_reference": "r",
                 "state": "teleported", "at": "2026-11-18T11:00:00Z"}).encode()],
)  # fmt: skip
def test_what_is_not_a_state_change_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessage, match="not a state change"):
        decode_state_changed(body)


def test_with_a_secrets_file_the_relay_is_the_intake_user_and_declares_only_its_queues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DRILL_PLATFORM_SECRETS", "DRILL_INTAKE_PLATFORM_SECRETS", "DRILL_MSG_AMQP_URLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRILL_AMQP_URLS", "amqp://admin:pw@127.0.0.1:1/")
    settings = IntakeSettings(run_dir=tmp_path)
    assert not settings.uses_platform_secrets
    assert messaging_settings(settings).amqp_urls == ["amqp://admin:pw@127.0.0.1:1/"]
    assert mirror_enabled(settings)
    assert not mirror_enabled(IntakeSettings(run_dir=tmp_path, declare_platform_topology=False))

    secrets = tmp_path / "secrets" / "platform.json"
    secrets.parent.mkdir()
    secrets.write_text(json.dumps({"vhost": "drill", "nodes": ["127.0.0.1:5672", "127.0.0.2:5672"],
                                   "users": {"intake": {"username": "drill-intake", "password": "p/w"}}}))  # fmt: skip
    settings = IntakeSettings(run_dir=tmp_path, declare_platform_topology=False)
    assert settings.uses_platform_secrets
    assert messaging_settings(settings).amqp_urls == [
        "amqp://drill-intake:p%2Fw@127.0.0.1:5672/drill",
        "amqp://drill-intake:p%2Fw@127.0.0.2:5672/drill",
    ]
    assert mirror_enabled(settings)  # its own queues are declared whatever declare_platform_topology says
    assert not mirror_enabled(IntakeSettings(run_dir=tmp_path, mirror_states=False))

    moved = tmp_path / "elsewhere.json"
    secrets.rename(moved)
    monkeypatch.setenv("DRILL_PLATFORM_SECRETS", str(moved))
    monkeypatch.setenv("DRILL_REPLICA", "1")
    settings = IntakeSettings(run_dir=tmp_path)
    assert settings.secrets_path == moved and settings.uses_platform_secrets
    assert settings.ready_marker == tmp_path / "ready" / "intake.1"


def test_docstring_examples() -> None:
    assert doctest.testmod(system.intake.mirror).failed == 0
