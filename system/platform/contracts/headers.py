"""The AMQP headers every message about one delivery carries (``x-delivery-id`` routes it to its
tracking shard through the consistent-hash ``lifecycle`` exchange)."""

from __future__ import annotations

from system.platform.topology import DELIVERY_HEADER

#: The retailer's reference of the order, for people reading a queue or the parking lot.
REFERENCE_HEADER = "x-order-reference"


def delivery_headers(delivery_id: str, reference: str) -> dict[str, str]:
    """The headers of a message about ``delivery_id`` (its order ``reference``)."""
    return {DELIVERY_HEADER: delivery_id, REFERENCE_HEADER: reference}
