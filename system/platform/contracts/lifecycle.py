"""Quoting, dispatch and the gateway → tracking on the ``lifecycle`` exchange: what happened to a
delivery, and where its driver is."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime

from system.domain.common import Frozen, LatLon, Vehicle
from system.domain.lifecycle import Event
from system.messaging.envelope import OutgoingMessage
from system.platform.topology import LIFECYCLE

from .headers import delivery_message

Source = Literal["quoting", "dispatch", "gateway", "intake"]


class Driver(Frozen):
    """The courier's driver on a job."""

    id: str
    vehicle: Vehicle | None = None


class LifecycleEvent(Frozen):
    """Something happened to a delivery; tracking applies it with ``lifecycle.transition``.

    ``seq`` is the courier job's sequence number (courier statuses only). ``courier``,
    ``courier_job_id`` and ``driver`` come with ``booked`` (dispatch) and with courier statuses.
    """

    type: Literal["lifecycle"] = "lifecycle"
    message_id: str
    delivery_id: str
    order_reference: str
    event: Event
    source: Source
    at: AwareDatetime
    seq: int | None = None
    courier: str | None = None
    courier_job_id: str | None = None
    driver: Driver | None = None
    eta: AwareDatetime | None = None
    location: LatLon | None = None
    reason: str | None = None


class LocationPing(Frozen):
    """Gateway → tracking: where the driver of a job is (not a lifecycle event)."""

    type: Literal["location"] = "location"
    message_id: str
    delivery_id: str
    order_reference: str
    courier: str
    courier_job_id: str
    seq: int
    at: AwareDatetime
    location: LatLon


def lifecycle_message(m: LifecycleEvent | LocationPing) -> OutgoingMessage:
    """``lifecycle`` (consistent hash on the delivery id); routing key = the event (or ``location``)."""
    key = m.event.value if isinstance(m, LifecycleEvent) else "location"
    return delivery_message(LIFECYCLE, key, m)


def lifecycle_event_id(delivery_id: str, event: Event, source: Source) -> str:
    """The id of the platform's own ``event`` for ``delivery_id`` (quoting's ``quoted``, dispatch's
    ``booked``, ``no_courier`` of either): one per delivery, event and source.

    >>> lifecycle_event_id("dlv_1", Event.NO_COURIER, "dispatch")
    'dlv_1:no_courier:dispatch'
    """
    return f"{delivery_id}:{event.value}:{source}"


def platform_event(
    delivery_id: str, order_reference: str, event: Event, source: Source, at: datetime, **fields: Any
) -> LifecycleEvent:
    """The platform's own ``event`` for a delivery (quoting's ``quoted``, dispatch's ``booked``,
    ``no_courier`` of either) with its id (:func:`lifecycle_event_id`); ``fields``: the rest of the
    event (``courier``, ``driver``, ``reason``, …)."""
    return LifecycleEvent(
        message_id=lifecycle_event_id(delivery_id, event, source),
        delivery_id=delivery_id,
        order_reference=order_reference,
        event=event,
        source=source,
        at=at,
        **fields,
    )


def gateway_message_id(courier_message_id: str) -> str:
    """The id of the canonical message made from the courier's message ``courier_message_id``: derived
    from it, so a redelivered courier message yields the same outbox row and the same downstream id."""
    return f"gw:{courier_message_id}"
