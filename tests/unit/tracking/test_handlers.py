"""Tracking's handler on a real SQLite file, fed the bodies other services really publish (intake's
order messages, LifecycleEvent, LocationPing), each in its own transaction as the consumer runs it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from system.domain.common import LatLon
from system.domain.intake import DeliveryRequest
from system.domain.lifecycle import Event, State
from system.messaging import outbox
from system.messaging.consumer import MalformedMessage
from system.messaging.db import open_db
from system.messaging.envelope import InboundMessage, OutgoingMessage
from system.platform import contracts
from system.platform.contracts import (
    Driver,
    LifecycleEvent,
    LocationPing,
    StateChanged,
    lifecycle_message,
)
from system.platform.topology import TRACKING
from system.tracking.handlers import NotYet, decode, handle
from system.tracking.settings import TrackingSettings
from system.tracking.store import SCHEMA

DLV = "dlv_0123456789abcdef0123"
REF = "s42-0000001"
JOB = "zoomly-job-1"
T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)


def request() -> DeliveryRequest:
    window = {"start": "2026-11-18T11:17:40Z", "end": "2026-11-18T11:47:40Z"}
    return DeliveryRequest.model_validate(
        {
            "retailer_id": "r01",
            "channel": "rest",
            "reference": REF,
            "store_id": "r01-s1",
            "pickup": {"lines": ["229 Richmond Road"], "city": "London", "postcode": "NW10 6GR",
                       "lat": 51.528535, "lon": -0.259383},
            "dropoff": {"lines": ["Flat 4", "63 York Road"], "city": "London", "postcode": "NW10 3YB",
                        "lat": 51.535433, "lon": -0.270405},
            "pickup_window": window,
            "dropoff_window": {"start": "2026-11-18T11:27:40Z", "end": "2026-11-18T12:27:40Z"},
            "recipient": {"name": "Ben Nguyen", "phone": "+447700900786", "email": "ben@example.com"},
            "parcel": {"weight_g": 940, "size": "S"},
            "basket": {"amount_minor": 2247, "currency": "GBP"},
        }
    )  # fmt: skip


def platform(event: Event, source: str = "quoting", **fields: Any) -> OutgoingMessage:
    return lifecycle_message(
        LifecycleEvent(
            message_id=f"{DLV}:{event.value}:{source}", delivery_id=DLV, order_reference=REF, event=event,
            source=source, at=T0, **fields,  # type: ignore[arg-type]
        )
    )  # fmt: skip


def booked(job: str = JOB) -> OutgoingMessage:
    return platform(
        Event.BOOKED, "dispatch", courier="zoomly", courier_job_id=job,
        driver=Driver(id="zoomly-drv-7", vehicle="bike"), eta=T0 + timedelta(minutes=40),
    )  # fmt: skip


def status(event: Event, seq: int, job: str = JOB) -> OutgoingMessage:
    return lifecycle_message(
        LifecycleEvent(
            message_id=f"gw:{job}:{seq}", delivery_id=DLV, order_reference=REF, event=event, source="gateway",
            at=T0 + timedelta(minutes=seq), seq=seq, courier="zoomly", courier_job_id=job,
            driver=Driver(id="zoomly-drv-7", vehicle="bike"), location=LatLon(lat=51.52, lon=-0.26),
        )
    )  # fmt: skip


def ping(seq: int, job: str = JOB, lat: float = 51.53) -> OutgoingMessage:
    return lifecycle_message(
        LocationPing(
            message_id=f"gw:{job}:{seq}", delivery_id=DLV, order_reference=REF, courier="zoomly",
            courier_job_id=job, seq=seq, at=T0, location=LatLon(lat=lat, lon=-0.26),
        )
    )  # fmt: skip


def created() -> OutgoingMessage:
    return contracts.order_created(DLV, request(), T0.timestamp())


class Tracking:
    """The handler over one DB, one transaction per message, as the inbox consumer runs it."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def feed(self, m: OutgoingMessage) -> None:
        inbound = InboundMessage(m.message_id, decode(m.body), dict(m.headers), m.exchange, m.routing_key,
                                 False, 0, m.body)  # fmt: skip
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await handle(self.db, inbound)
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        await self.db.execute("COMMIT")

    async def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        cursor = await self.db.execute(sql, args)
        rows = [tuple(r) for r in await cursor.fetchall()]
        await cursor.close()
        return rows

    async def state(self) -> tuple[str, int]:
        (row,) = await self.rows("SELECT state, seq FROM deliveries WHERE id = ?", DLV)
        return row[0], row[1]

    async def announced(self) -> list[StateChanged]:
        rows = await self.rows("SELECT exchange, routing_key, body FROM outbox ORDER BY id")
        out = []
        for exchange, key, body in rows:
            m = StateChanged.model_validate_json(body)
            assert exchange == TRACKING and key == f"delivery.state.{m.state.value}"
            out.append(m)
        return out

    async def rejected(self) -> list[tuple[Any, ...]]:
        return await self.rows(
            "SELECT event, reason, detail, message_id, state, seq FROM rejected ORDER BY id"
        )


@pytest.fixture
async def tracking(tmp_path: Path) -> AsyncIterator[Tracking]:
    db = await open_db(tmp_path / "tracking.db")
    await db.executescript(outbox.SCHEMA + SCHEMA)
    try:
        yield Tracking(db)
    finally:
        await db.close()


async def booked_delivery(t: Tracking) -> None:
    for m in (created(), platform(Event.QUOTED), booked()):
        await t.feed(m)


async def test_a_delivery_walks_the_lifecycle_and_a_forward_skip_announces_only_the_new_state(
    tracking: Tracking,
) -> None:
    await booked_delivery(tracking)
    await tracking.feed(status(Event.COURIER_ASSIGNED, 2))
    await tracking.feed(status(Event.IN_TRANSIT, 6))  # picked_up never reached us
    await tracking.feed(status(Event.DELIVERED, 8))
    assert await tracking.state() == ("delivered", 8)
    announced = await tracking.announced()
    assert [m.state.value for m in announced] == [
        "requested", "quoted", "booked", "courier_assigned", "in_transit", "delivered",
    ]  # fmt: skip
    assert [m.message_id for m in announced][-1] == f"{DLV}:state:delivered"
    in_transit = announced[4]
    assert in_transit.previous is State.COURIER_ASSIGNED
    assert (in_transit.courier, in_transit.courier_job_id, in_transit.retailer_id) == ("zoomly", JOB, "r01")
    assert in_transit.driver == Driver(id="zoomly-drv-7", vehicle="bike")
    assert in_transit.eta == T0 + timedelta(minutes=40)
    assert in_transit.recipient.phone == "+447700900786" and in_transit.recipient.name == "Ben Nguyen"
    assert in_transit.store_name == "229 Richmond Road"
    assert in_transit.at == T0 + timedelta(minutes=6)
    history = await tracking.rows("SELECT state, previous, seq, source FROM history ORDER BY id")
    assert history == [
        ("requested", None, None, "intake"), ("quoted", "requested", None, "quoting"),
        ("booked", "quoted", None, "dispatch"), ("courier_assigned", "booked", 2, "gateway"),
        ("in_transit", "courier_assigned", 6, "gateway"), ("delivered", "in_transit", 8, "gateway"),
    ]  # fmt: skip
    assert await tracking.rejected() == []


async def test_rejections_are_recorded_and_change_nothing(tracking: Tracking) -> None:
    await booked_delivery(tracking)
    await tracking.feed(status(Event.COURIER_ASSIGNED, 2))
    await tracking.feed(status(Event.RETURNED, 3))  # illegal from courier_assigned
    await tracking.feed(status(Event.PICKED_UP, 4, job="zoomly-job-2"))  # a late-accepted job
    await tracking.feed(status(Event.PICKED_UP, 5))
    await tracking.feed(contracts.cancel_requested(DLV, REF, "r01", "customer_request", time.time()))
    await tracking.feed(status(Event.IN_TRANSIT, 7))
    await tracking.feed(status(Event.COURIER_ASSIGNED, 6))  # late: lower seq
    await tracking.feed(status(Event.DELIVERED, 9))
    await tracking.feed(status(Event.FAILED, 10))  # after a terminal state
    assert await tracking.state() == ("delivered", 9)
    rejected = await tracking.rejected()
    assert [(r[0], r[1], r[3], r[4]) for r in rejected] == [
        ("returned", "illegal", f"gw:{JOB}:3", "courier_assigned"),
        ("picked_up", "foreign_job", "gw:zoomly-job-2:4", "courier_assigned"),
        ("cancelled", "illegal", f"{DLV}:order.cancel_requested", "picked_up"),
        ("courier_assigned", "out_of_order", f"gw:{JOB}:6", "in_transit"),
        ("failed", "terminal", f"gw:{JOB}:10", "delivered"),
    ]
    assert rejected[2][2] == "too late to cancel: picked_up"
    assert "zoomly-job-2" in rejected[1][2]
    states = [m.state.value for m in await tracking.announced()]
    assert states == [
        "requested",
        "quoted",
        "booked",
        "courier_assigned",
        "picked_up",
        "in_transit",
        "delivered",
    ]


async def test_a_status_before_the_booking_is_retried_then_applied(tracking: Tracking) -> None:
    await tracking.feed(created())
    await tracking.feed(platform(Event.QUOTED))
    early = status(Event.COURIER_ASSIGNED, 2)
    with pytest.raises(NotYet, match="before the booking"):
        await tracking.feed(early)
    assert await tracking.state() == ("quoted", 0)
    assert await tracking.rejected() == []
    await tracking.feed(booked())
    await tracking.feed(early)  # back from the retry tier
    assert await tracking.state() == ("courier_assigned", 2)


async def test_anything_about_an_unknown_delivery_is_retried(tracking: Tracking) -> None:
    for m in (platform(Event.QUOTED), status(Event.DELIVERED, 9), ping(3),
              contracts.order_updated(DLV, request(), time.time())):  # fmt: skip
        with pytest.raises(NotYet):
            await tracking.feed(m)
    assert await tracking.rows("SELECT COUNT(*) FROM deliveries") == [(0,)]


async def test_duplicates_change_nothing_and_are_not_anomalies(tracking: Tracking) -> None:
    await booked_delivery(tracking)
    again = booked()
    await tracking.feed(OutgoingMessage(again.exchange, again.routing_key, again.body, "another-id"))
    await tracking.feed(status(Event.BOOKED, 1))  # the courier's own "pending"
    await tracking.feed(created())  # intake's order.created republished
    assert await tracking.state() == ("booked", 0)
    assert len(await tracking.announced()) == 3
    assert await tracking.rejected() == []
    assert len(await tracking.rows("SELECT * FROM history")) == 3


async def test_a_cancel_before_pickup_is_applied_and_the_courier_confirmation_is_a_duplicate(
    tracking: Tracking,
) -> None:
    await booked_delivery(tracking)
    await tracking.feed(contracts.cancel_requested(DLV, REF, "r01", "customer_request", time.time()))
    await tracking.feed(status(Event.CANCELLED, 999))
    assert await tracking.state() == ("cancelled", 0)
    last = (await tracking.announced())[-1]
    assert (last.state, last.previous, last.reason) == (State.CANCELLED, State.BOOKED, "customer_request")
    assert await tracking.rejected() == []


async def test_the_latest_position_is_kept_and_older_pings_ignored(tracking: Tracking) -> None:
    await booked_delivery(tracking)
    await tracking.feed(ping(5, lat=51.50))
    await tracking.feed(ping(3, lat=51.40))  # older
    await tracking.feed(ping(6, job="zoomly-job-2", lat=51.30))  # another job's driver
    rows = await tracking.rows("SELECT location_lat, location_seq FROM deliveries")
    assert rows == [(51.50, 5)]
    assert [(r[0], r[1]) for r in await tracking.rejected()] == [("location", "foreign_job")]
    await tracking.feed(ping(7, lat=51.51))
    assert await tracking.rows("SELECT location_lat, location_seq FROM deliveries") == [(51.51, 7)]
    assert await tracking.state() == ("booked", 0)  # pings are not lifecycle events


async def test_an_order_update_changes_no_state(tracking: Tracking) -> None:
    await booked_delivery(tracking)
    updated = request().model_copy(update={"source_version": 2})
    await tracking.feed(contracts.order_updated(DLV, updated, time.time()))
    assert await tracking.state() == ("booked", 0)
    assert await tracking.rows("SELECT order_version FROM deliveries") == [(2,)]
    assert len(await tracking.announced()) == 3


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "(body)"),
        (json.dumps({"type": "delivery.state", "message_id": "x"}).encode(), "type"),
        (json.dumps({"type": "order.created", "message_id": "x"}).encode(), "delivery_id"),
        (json.dumps({"message_id": "x"}).encode(), "type"),
        (status(Event.DELIVERED, 3).body.replace(b'"delivered"', b'"teleported"'), "event"),
    ],
)
def test_what_is_not_a_tracking_input_is_malformed(body: bytes, why: str) -> None:
    with pytest.raises(MalformedMessage, match="not a tracking input") as caught:
        decode(body)
    assert why in str(caught.value)


def test_the_shard_count_must_agree_with_the_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRILL_TRACKING_SHARDS", raising=False)
    assert TrackingSettings().shards == 4
    monkeypatch.setenv("DRILL_TRACKING_SHARDS", "6")
    with pytest.raises(ValueError, match="disagrees with the platform topology"):
        TrackingSettings()
