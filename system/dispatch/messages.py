"""What dispatch publishes: booking and cancel requests to couriers (docs/intake-api.md §3.3, §3.4),
requests to quote again for quoting, and lifecycle events for tracking. Ids are deterministic, so a re-run decision writes the same outbox rows.

Example:
    >>> import json
    >>> m = cancel_request("dlv_1", "s42-0000001", "dashly", "dashly-job-7")
    >>> m.routing_key, m.message_id, json.loads(m.body)["courier_job_id"]
    ('dashly.cancel_request', 'cx-dlv_1-dashly-job-7', 'dashly-job-7')
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from system.domain.lifecycle import Event
from system.messaging.envelope import OutgoingMessage
from system.platform.contracts import (
    RequoteRequested,
    lifecycle_message,
    platform_event,
    requote_message,
    requote_message_id,
)
from system.platform.topology import COURIER_REQUESTS, DELIVERY_HEADER

from .decide import (
    Book,
    Booked,
    CancelJob,
    Effect,
    Job,
    NoCourier,
    Requote,
    booking_request_id,
    cancel_request_id,
)


def _courier_request(courier: str, kind: str, body: dict[str, Any]) -> OutgoingMessage:
    return OutgoingMessage.json(
        COURIER_REQUESTS,
        f"{courier}.{kind}",
        body,
        message_id=body["message_id"],
        headers={"x-courier": courier, DELIVERY_HEADER: body["delivery_id"]},
        message_type=kind,
    )


def booking_request(delivery_id: str, order_reference: str, book: Book) -> OutgoingMessage:
    """``<courier>.booking_request`` for the attempt's quote, with the id of the attempt's latest ask."""
    return _courier_request(
        book.attempt.courier,
        "booking_request",
        {
            "type": "booking_request",
            "message_id": booking_request_id(delivery_id, book.attempt.number, book.attempt.asks),
            "courier": book.attempt.courier,
            "delivery_id": delivery_id,
            "order_reference": order_reference,
            "quote_id": book.quote.quote_id,
        },
    )


def cancel_request(
    delivery_id: str, order_reference: str, courier: str, courier_job_id: str
) -> OutgoingMessage:
    """``<courier>.cancel_request`` for one courier job."""
    return _courier_request(
        courier,
        "cancel_request",
        {
            "type": "cancel_request",
            "message_id": cancel_request_id(delivery_id, courier_job_id),
            "courier": courier,
            "delivery_id": delivery_id,
            "order_reference": order_reference,
            "courier_job_id": courier_job_id,
        },
    )


def effect_message(job: Job, effect: Effect, now: datetime) -> OutgoingMessage:
    """The message an effect sends."""
    d, ref = job.delivery_id, job.order_reference
    if isinstance(effect, Book):
        return booking_request(d, ref, effect)
    if isinstance(effect, CancelJob):
        return cancel_request(d, ref, effect.courier, effect.courier_job_id)
    if isinstance(effect, Requote):
        return requote_message(
            RequoteRequested(
                message_id=requote_message_id(d, effect.round),
                delivery_id=d,
                order_reference=ref,
                round=effect.round,
                reason=effect.reason,
                refused=effect.refused,
            )
        )
    if isinstance(effect, Booked):
        booked = platform_event(
            d, ref, Event.BOOKED, "dispatch", now,
            courier=effect.courier, courier_job_id=effect.courier_job_id, driver=effect.driver,
        )  # fmt: skip
        return lifecycle_message(booked)
    assert isinstance(effect, NoCourier)
    return lifecycle_message(platform_event(d, ref, Event.NO_COURIER, "dispatch", now, reason=effect.reason))
