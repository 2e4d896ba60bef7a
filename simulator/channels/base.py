"""What every intake channel encoder produces: the exact HTTP requests to send.

Encoders are pure: (order, retailer, clock) → bytes and headers. They never touch the network, so the
generator benchmark measures them and the tests can check signatures offline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

from simulator.geo import Address
from simulator.orders import OrderSpec
from simulator.world import Retailer

RequestKind = Literal["order", "update", "cancel"]


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One HTTP request to the platform.

    ``kind``: ``order`` creates the delivery, ``update`` is a provider's follow-up event (ePOS
    ``order.updated``), ``cancel`` is the customer's cancellation. ``key`` is the request's idempotency
    identity (``Idempotency-Key``, Shopify webhook id, ePOS event id): a duplicate reuses it.
    """

    kind: RequestKind
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    key: str


class ChannelEncoder(Protocol):
    """Encodes an order for one intake channel."""

    name: str

    def encode_order(self, order: OrderSpec, retailer: Retailer) -> list[WireRequest]:
        """The requests that submit ``order``, in the order to send them (the create, maybe an update)."""
        ...

    def encode_cancel(
        self, order: OrderSpec, retailer: Retailer, delivery_id: str | None
    ) -> WireRequest | None:
        """The request that cancels ``order`` (None when the channel needs a delivery id it lacks)."""
        ...


def dumps(doc: object) -> bytes:
    """Compact JSON bytes (what is signed is exactly what is sent)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def hmac_b64(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, body)), Shopify's ``X-Shopify-Hmac-Sha256`` scheme."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def stable_uuid(*parts: str) -> str:
    """A UUID derived from ``parts`` (deterministic idempotency keys and webhook ids)."""
    h = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=h, version=4))


def money_str(minor: int) -> str:
    """Minor units as a decimal string with two places (``4630`` → ``"46.30"``), Shopify-style."""
    return f"{minor // 100}.{minor % 100:02d}"


def address_doc(a: Address) -> dict[str, object]:
    """The REST API's address object."""
    return {
        "lines": list(a.lines),
        "city": a.city,
        "postcode": a.postcode,
        "lat": a.point.lat,
        "lon": a.point.lon,
    }
