"""What every message about one delivery carries: the AMQP headers (``x-delivery-id`` routes it to its
tracking shard through the consistent-hash ``lifecycle`` exchange) and its envelope."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from system.messaging.envelope import OutgoingMessage
from system.platform.topology import DELIVERY_HEADER

#: The retailer's reference of the order, for people reading a queue or the parking lot.
REFERENCE_HEADER = "x-order-reference"


class AboutDelivery(Protocol):
    """A message about one delivery: its id, kind and subject."""

    @property
    def message_id(self) -> str: ...
    @property
    def delivery_id(self) -> str: ...
    @property
    def order_reference(self) -> str: ...
    @property
    def type(self) -> str: ...


def delivery_headers(delivery_id: str, reference: str) -> dict[str, str]:
    """The headers of a message about ``delivery_id`` (its order ``reference``)."""
    return {DELIVERY_HEADER: delivery_id, REFERENCE_HEADER: reference}


def delivery_message(exchange: str, routing_key: str, m: AboutDelivery) -> OutgoingMessage:
    """``m`` (a contract's model) as JSON on ``exchange`` with ``routing_key``: its own id and type, the
    delivery's headers."""
    assert isinstance(m, BaseModel), "a contract's message is a pydantic model"
    return OutgoingMessage.json(
        exchange,
        routing_key,
        m,
        message_id=m.message_id,
        headers=delivery_headers(m.delivery_id, m.order_reference),
        message_type=m.type,
    )
