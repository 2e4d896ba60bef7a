"""Tracking's decoder (everything a shard queue carries) and its handler.

A shard queue gets, for the deliveries that hash to it and in the order they were published: intake's
:class:`~system.platform.contracts.OrderCreated` / ``OrderUpdated`` / ``CancelRequested`` (``orders`` is
bound to ``lifecycle``), the :class:`~system.platform.contracts.LifecycleEvent` of quoting, dispatch and the
gateway, and the gateway's :class:`~system.platform.contracts.LocationPing`. The decoder tells them
apart by ``type``; anything else is parked at once as malformed.

The handler runs :mod:`.decide` and carries out its instruction in the consumer's transaction;
:class:`NotYet` (a plain exception) sends the message through the retry tiers (1 s, 5 s, 25 s, then the
parking lot).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import aiosqlite
from pydantic import Field, TypeAdapter

from system.domain.lifecycle import Event
from system.logs import get_logger
from system.messaging.consumer import parse_or_park
from system.messaging.envelope import InboundMessage
from system.platform.contracts import (
    CancelRequested,
    Contact,
    Driver,
    LifecycleEvent,
    LocationPing,
    OrderCreated,
    OrderUpdated,
    state_message,
)

from . import store
from .decide import (
    Apply,
    Ignore,
    Reject,
    RetryLater,
    TrackedDelivery,
    advance,
    decide,
    decide_location,
    state_changed,
)

log = get_logger(__name__)


Inbound = OrderCreated | OrderUpdated | CancelRequested | LifecycleEvent | LocationPing

_INBOUND: TypeAdapter[Inbound] = TypeAdapter(Annotated[Inbound, Field(discriminator="type")])


def decode(body: bytes) -> Inbound:
    """A shard queue's message by its ``type``; :class:`MalformedMessage` (parked) for anything else."""
    return parse_or_park(_INBOUND.validate_json, body, "a tracking input")


class NotYet(Exception):
    """The message cannot apply yet (its delivery or its booking is not recorded): retry it later."""


# --- the handler -----------------------------------------------------------------------------------


async def handle(db: aiosqlite.Connection, message: InboundMessage[Inbound]) -> None:
    """Apply one shard message inside the consumer's open transaction (never commits)."""
    m = message.payload
    if isinstance(m, OrderCreated):
        await _created(db, m)
    elif isinstance(m, OrderUpdated):
        await _updated(db, m)
    elif isinstance(m, CancelRequested):
        await _event(
            db,
            message.message_id,
            delivery_id=m.delivery_id,
            event=Event.CANCELLED,
            at=m.requested_at,
            source="intake",
            reason=m.reason,
        )
    elif isinstance(m, LifecycleEvent):
        await _event(
            db,
            message.message_id,
            delivery_id=m.delivery_id,
            event=m.event,
            at=m.at,
            source=m.source,
            seq=m.seq,
            courier=m.courier,
            courier_job_id=m.courier_job_id,
            driver=m.driver,
            eta=m.eta,
            reason=m.reason,
        )
    else:
        await _location(db, message.message_id, m)


async def _created(db: aiosqlite.Connection, m: OrderCreated) -> None:
    recipient = m.request.recipient
    d = TrackedDelivery(
        id=m.delivery_id,
        order_reference=m.order_reference,
        retailer_id=m.retailer_id,
        recipient=Contact(name=recipient.name, phone=recipient.phone, email=recipient.email),
        # The store's own name is not in the order; its first address line is what a customer knows.
        store_name=m.request.pickup.lines[0],
    )
    if not await store.create(db, d):
        log.info("delivery already tracked", extra={"delivery_id": d.id, "message_id": m.message_id})
        return
    await store.add_history(
        db, d.id, d.state, None, at=m.accepted_at, seq=None, source="intake", message_id=m.message_id
    )
    await store.add_once(db, state_message(state_changed(d, None, m.accepted_at)))
    log.info("delivery tracked", extra={"delivery_id": d.id, "message_id": m.message_id})


async def _updated(db: aiosqlite.Connection, m: OrderUpdated) -> None:
    if await store.get(db, m.delivery_id) is None:
        raise NotYet(f"order.updated for {m.delivery_id}, whose order.created has not arrived")
    await store.note_order_version(db, m.delivery_id, m.version)
    log.info(
        "order updated; lifecycle unchanged",
        extra={"delivery_id": m.delivery_id, "message_id": m.message_id, "version": m.version},
    )


async def _event(
    db: aiosqlite.Connection,
    message_id: str,
    *,
    delivery_id: str,
    event: Event,
    at: datetime,
    source: str,
    seq: int | None = None,
    courier: str | None = None,
    courier_job_id: str | None = None,
    driver: Driver | None = None,
    eta: datetime | None = None,
    reason: str | None = None,
) -> None:
    current = await store.get(db, delivery_id)
    decision = decide(
        current, event, seq=seq, job=courier_job_id, courier_status=source == "gateway" or seq is not None
    )
    where = {"delivery_id": delivery_id, "message_id": message_id, "event": event.value, "seq": seq}
    if isinstance(decision, RetryLater):
        raise NotYet(f"{delivery_id}: {decision.detail}")
    assert current is not None  # only RetryLater comes without a delivery
    if isinstance(decision, Ignore):
        log.info("event ignored", extra={**where, "detail": decision.detail})
        return
    if isinstance(decision, Reject):
        await store.record_rejection(
            db,
            delivery_id,
            event=event.value,
            reason=decision.reason,
            detail=decision.detail,
            message_id=message_id,
            state=current.state,
            at=at,
            seq=seq,
            source=source,
            courier_job_id=courier_job_id,
        )
        log.warning(
            "transition rejected", extra={**where, "reason": decision.reason, "detail": decision.detail}
        )
        return
    assert isinstance(decision, Apply)
    after = advance(
        current, decision.track, courier=courier, courier_job_id=courier_job_id, driver=driver, eta=eta
    )
    await store.save(db, current, after)
    await store.add_history(
        db, delivery_id, after.state, decision.previous, at=at, seq=seq, source=source, message_id=message_id
    )
    await store.add_once(db, state_message(state_changed(after, decision.previous, at, reason)))
    log.info(
        "state changed",
        extra={**where, "state": after.state.value, "previous": decision.previous.value, "source": source},
    )


async def _location(db: aiosqlite.Connection, message_id: str, m: LocationPing) -> None:
    current = await store.get(db, m.delivery_id)
    decision = decide_location(current, job=m.courier_job_id, seq=m.seq)
    if isinstance(decision, RetryLater):
        raise NotYet(f"{m.delivery_id}: {decision.detail}")
    assert current is not None  # only RetryLater comes without a delivery
    if isinstance(decision, Ignore):
        log.debug("location ignored", extra={"message_id": message_id, "detail": decision.detail})
    elif isinstance(decision, Reject):
        await store.record_rejection(
            db,
            m.delivery_id,
            event="location",
            reason=decision.reason,
            detail=decision.detail,
            message_id=message_id,
            state=current.state,
            at=m.at,
            seq=m.seq,
            source="gateway",
            courier_job_id=m.courier_job_id,
        )
        log.warning(
            "location rejected",
            extra={"delivery_id": m.delivery_id, "message_id": message_id, "detail": decision.detail},
        )
    else:
        await store.move_position(db, m.delivery_id, m.location, seq=m.seq, at=m.at)
