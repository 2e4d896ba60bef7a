"""The pure part of the gateway: a courier's message in its dialect → the platform's canonical message.

Parsing is :mod:`system.domain.dialects` (statuses mapped by each dialect's table, never guessed); this
module adds what the gateway's queue knows (which dialect it serves) and what tracking needs (the
delivery id the ``lifecycle`` exchange hashes on). Anything that cannot be translated raises
:class:`~system.domain.dialects.CourierMessageError` with a one-line reason: the caller parks the
message with it.

Example:
    >>> body = (b'{"type": "status", "courier": "zoomly", "dialect": "uber", "delivery_id": "dlv_1",'
    ...     b' "order_reference": "s42-0000001", "courier_job_id": "zoomly-job-1", "seq": 3,'
    ...     b' "at": "2026-11-18T11:20:00Z", "message_id": "zoomly-job-1:3", "status": "pickup_complete"}')
    >>> ev = translate(parse_courier_message(body, "uber"))
    >>> ev.message_id, ev.event.value, ev.seq, ev.source
    ('gw:zoomly-job-1:3', 'picked_up', 3, 'gateway')
"""

from __future__ import annotations

import json
from typing import get_args

from system.domain.common import VEHICLES, Dialect, Vehicle
from system.domain.dialects import (
    CourierLocation,
    CourierMessageInvalid,
    CourierStatusEvent,
    parse_location,
    parse_status,
)
from system.platform.contracts import Driver, LifecycleEvent, LocationPing, gateway_message_id

CourierMessage = CourierStatusEvent | CourierLocation

_DIALECTS: frozenset[str] = frozenset(get_args(Dialect))


def parse_courier_message(body: bytes, dialect: Dialect) -> CourierMessage:
    """Validate a message from ``gateway.<dialect>``: a ``status`` or a ``location`` of that dialect.

    Raises :class:`~system.domain.dialects.CourierMessageInvalid` (bad JSON, wrong shape, another
    dialect) or :class:`~system.domain.dialects.UnknownCourierStatus`.
    """
    if dialect not in _DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    try:
        doc = json.loads(body)
    except ValueError as exc:  # also invalid UTF-8 (UnicodeDecodeError is a ValueError)
        raise CourierMessageInvalid(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CourierMessageInvalid("message must be a JSON object")
    kind = doc.get("type")
    if kind == "status":
        return parse_status(doc, expected_dialect=dialect)
    if kind == "location":
        location = parse_location(doc)
        # A location names its dialect too: one from another family means a misrouted or
        # misconfigured courier, not something to store under this adapter.
        if doc.get("dialect") != dialect:
            raise CourierMessageInvalid(
                f"courier {location.courier!r} sent a {doc.get('dialect')} location to the {dialect} adapter"
            )
        return location
    raise CourierMessageInvalid(f"type {kind!r} is neither 'status' nor 'location'")


def _vehicle(value: str | None) -> Vehicle | None:
    # Providers name vehicles their own way; only the platform's names are carried over.
    for vehicle in VEHICLES:
        if value == vehicle:
            return vehicle
    return None


def translate(message: CourierMessage) -> LifecycleEvent | LocationPing:
    """The canonical message: a :class:`LifecycleEvent` (source ``gateway``) for a status, a
    :class:`LocationPing` for a location. Without a delivery id nothing can route it to tracking:
    :class:`~system.domain.dialects.CourierMessageInvalid`."""
    if message.delivery_id is None:
        raise CourierMessageInvalid(
            f"{message.courier} message {message.message_id!r} has no delivery_id: it cannot be routed"
        )
    if isinstance(message, CourierLocation):
        return LocationPing(
            message_id=gateway_message_id(message.message_id),
            delivery_id=message.delivery_id,
            order_reference=message.order_reference,
            courier=message.courier,
            courier_job_id=message.courier_job_id,
            seq=message.seq,
            at=message.at,
            location=message.location,
        )
    driver = (
        Driver(id=message.driver_id, vehicle=_vehicle(message.vehicle))
        if message.driver_id is not None
        else None
    )
    return LifecycleEvent(
        message_id=gateway_message_id(message.message_id),
        delivery_id=message.delivery_id,
        order_reference=message.order_reference,
        event=message.event,
        source="gateway",
        at=message.at,
        seq=message.seq,
        courier=message.courier,
        courier_job_id=message.courier_job_id,
        driver=driver,
        location=message.location,
    )
