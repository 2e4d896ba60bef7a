"""Intake's mirror of the delivery state tracking decides (queue ``intake.deliveries``, bound to
``tracking`` ``delivery.state.*``), consumed in the relay process with ``intake.db`` as its inbox DB.

``GET /v1/deliveries/{id}`` shows state, courier, driver, ETA and history from intake's own rows, and
the cancel endpoint answers 409 "too late" from intake's state: both need what tracking decided. Each
:class:`~system.platform.contracts.StateChanged` is applied in the consumer's transaction (with its
inbox row), and only forward (:func:`moves_forward`, the lifecycle's ``progress``): a late or repeated
announcement, or a state intake already holds — ``cancelled`` set by intake itself — changes nothing.

One exception: a cancellation intake accepted (202) that tracking refused as too late (the courier had
the parcel by the time tracking saw it). Tracking announces nothing for a refusal, but it goes on to
announce states no cancellation can follow (:func:`refuses_cancel`); tracking owns the delivery's state,
so intake moves from its own ``cancelled`` to that state, with "cancellation refused" in its history,
instead of showing ``cancelled`` for a parcel that is delivered.

Example:
    >>> moves_forward(State.REQUESTED, State.BOOKED), moves_forward(State.PICKED_UP, State.COURIER_ASSIGNED)
    (True, False)
    >>> moves_forward(State.CANCELLED, State.CANCELLED), moves_forward(State.FAILED, State.RETURNED)
    (False, True)
    >>> refuses_cancel(State.BOOKED), refuses_cancel(State.PICKED_UP), refuses_cancel(State.DELIVERED)
    (False, True, True)
"""

from __future__ import annotations

import aiosqlite

from system.domain.lifecycle import CANCELLABLE, State, progress
from system.logs import get_logger
from system.messaging.consumer import MalformedMessage, parse_or_park
from system.messaging.envelope import InboundMessage
from system.platform.contracts import StateChanged, iso

from . import store

log = get_logger(__name__)


def moves_forward(current: State, announced: State) -> bool:
    """Whether ``announced`` is further along than ``current`` (the lifecycle never goes back)."""
    return progress(announced) > progress(current)


def refuses_cancel(announced: State) -> bool:
    """Whether tracking announcing ``announced`` means a cancellation it had not applied was refused:
    tracking's state machine only moves forward, and no cancellation follows a state outside
    ``CANCELLABLE`` (a state it may still cancel from means it has not seen the cancellation yet)."""
    return announced is not State.CANCELLED and announced not in CANCELLABLE


def decode_state_changed(body: bytes) -> StateChanged:
    """A :class:`StateChanged` body; :class:`MalformedMessage` (parked) when it is not one."""
    return parse_or_park(StateChanged.model_validate_json, body, "a state change")


class StaleRow(Exception):
    """The delivery row moved between the read and the conditional write (the handler retries)."""


async def handle_state_changed(db: aiosqlite.Connection, message: InboundMessage[StateChanged]) -> None:
    """Apply one state change to intake's delivery row and history (inside the consumer's transaction).

    A delivery intake does not know cannot come from this platform's tracking (intake commits the row
    before its ``order.created`` is published): :class:`MalformedMessage`, never a silent drop.
    """
    m = message.payload
    where = {"delivery_id": m.delivery_id, "message_id": message.message_id, "state": m.state.value}
    d = await store.get_delivery(db, m.delivery_id)
    if d is None:
        raise MalformedMessage(f"state change for unknown delivery {m.delivery_id!r}")
    refused = d.state is State.CANCELLED and refuses_cancel(m.state)
    if not refused and not moves_forward(d.state, m.state):
        log.info("state change not forward; intake unchanged", extra={**where, "current": d.state.value})
        return
    if refused:
        log.warning("cancellation refused by tracking: too late", extra=where)
    moved = await store.mirror_state(
        db,
        d,
        m.state,
        at=m.at.timestamp(),
        detail=f"cancellation refused: too late ({m.state.value})" if refused else m.reason,
        courier=m.courier,
        courier_job_id=m.courier_job_id,
        driver_id=m.driver.id if m.driver else None,
        driver_vehicle=m.driver.vehicle if m.driver else None,
        eta=iso(m.eta.timestamp()) if m.eta else None,
    )
    if not moved:
        raise StaleRow(f"delivery {d.id} left {d.state} while the state change was applied")
    log.info("state mirrored", extra={**where, "previous": d.state.value})
