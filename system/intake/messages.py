"""The messages intake puts in its outbox, on the platform's ``orders`` exchange.

Message ids are derived from the delivery id (and the ePOS version), never random: two replicas racing
on the same order, or a request retried after an unknown outcome, produce the same id, so the outbox's
unique ``message_id`` keeps one row and consumers deduplicate any republish.

Routing keys are ones the platform topology binds (``system/platform/topology.py``): a mandatory
publish to an unbound key would come back unroutable and wait in the outbox. A cancellation therefore
travels as ``order.updated`` with ``type`` (and AMQP type) ``order.cancel_requested``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from system.domain.intake import DeliveryRequest
from system.messaging.envelope import OutgoingMessage
from system.platform.topology import ORDERS

ORDER_CREATED = "order.created"
ORDER_UPDATED = "order.updated"
CANCEL_REQUESTED = "order.cancel_requested"


def iso(at: float) -> str:
    """Unix time as ISO-8601 UTC with a ``Z`` (the contract's instant format), millisecond precision."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _headers(delivery_id: str, reference: str) -> dict[str, Any]:
    return {"x-delivery-id": delivery_id, "x-order-reference": reference}


def order_created(delivery_id: str, request: DeliveryRequest, at: float) -> OutgoingMessage:
    """``order.created``: the whole normalised request; quoting starts from it."""
    message_id = f"{delivery_id}:{ORDER_CREATED}"
    payload = {
        "type": ORDER_CREATED,
        "message_id": message_id,
        "delivery_id": delivery_id,
        "order_reference": request.reference,
        "retailer_id": request.retailer_id,
        "channel": request.channel,
        "accepted_at": iso(at),
        "request": request.model_dump(mode="json"),
    }
    return OutgoingMessage.json(
        ORDERS,
        ORDER_CREATED,
        payload,
        message_id=message_id,
        headers=_headers(delivery_id, request.reference),
        message_type=ORDER_CREATED,
    )


def order_updated(delivery_id: str, request: DeliveryRequest, at: float) -> OutgoingMessage:
    """``order.updated``: a newer version of a provider's order (ePOS ``version``)."""
    version = request.source_version or 0
    message_id = f"{delivery_id}:{ORDER_UPDATED}:v{version}"
    payload = {
        "type": ORDER_UPDATED,
        "message_id": message_id,
        "delivery_id": delivery_id,
        "order_reference": request.reference,
        "retailer_id": request.retailer_id,
        "version": version,
        "updated_at": iso(at),
        "request": request.model_dump(mode="json"),
    }
    return OutgoingMessage.json(
        ORDERS,
        ORDER_UPDATED,
        payload,
        message_id=message_id,
        headers=_headers(delivery_id, request.reference),
        message_type=ORDER_UPDATED,
    )


def cancel_requested(
    delivery_id: str, reference: str, retailer_id: str, reason: str, at: float
) -> OutgoingMessage:
    """The retailer or customer cancelled: downstream stops quoting or cancels the courier job."""
    message_id = f"{delivery_id}:{CANCEL_REQUESTED}"
    payload = {
        "type": CANCEL_REQUESTED,
        "message_id": message_id,
        "delivery_id": delivery_id,
        "order_reference": reference,
        "retailer_id": retailer_id,
        "reason": reason,
        "state": "cancelled",
        "requested_at": iso(at),
    }
    return OutgoingMessage.json(
        ORDERS,
        ORDER_UPDATED,
        payload,
        message_id=message_id,
        headers=_headers(delivery_id, reference),
        message_type=CANCEL_REQUESTED,
    )
