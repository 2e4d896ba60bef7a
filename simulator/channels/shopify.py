"""The Shopify-style webhook channel: ``POST /v1/integrations/shopify/orders`` (see docs/intake-api.md).

Topics ``orders/create`` and ``orders/cancelled``; the body is signed with the shop's secret
(``X-Shopify-Hmac-Sha256`` = base64 HMAC-SHA256 of the raw body).
"""

from __future__ import annotations

from simulator.channels.base import WireRequest, dumps, hmac_b64, money_str, stable_uuid
from simulator.clock import SimClock
from simulator.orders import OrderSpec
from simulator.world import Retailer

PATH = "/v1/integrations/shopify/orders"
# Shopify order ids are large integers; offset the sequence so they look like one.
_ID_BASE = 5_000_000_000_000


class ShopifyEncoder:
    """Encodes orders as Shopify ``orders/create`` webhooks (and cancellations as ``orders/cancelled``)."""

    name = "shopify"

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock

    def body(self, o: OrderSpec, seed_prefix: int) -> dict[str, object]:
        """The Shopify order object."""
        iso = self.clock.iso
        first, _, last = o.recipient.name.partition(" ")
        a = o.dropoff
        return {
            "id": _ID_BASE + seed_prefix * 10_000_000 + o.seq,
            "name": o.ref,
            "order_number": o.seq,
            "email": o.recipient.email,
            "created_at": iso(o.sim_at),
            "currency": o.currency,
            "total_price": money_str(o.basket_minor),
            "total_weight": o.weight_g,
            "location_id": o.store_id,
            "line_items": [{"sku": i.sku, "title": i.title, "quantity": i.quantity,
                            "price": money_str(i.unit_price_minor)} for i in o.items],
            "shipping_address": {
                "first_name": first, "last_name": last, "name": o.recipient.name,
                "address1": a.lines[-1], "address2": a.lines[0] if len(a.lines) > 1 else None,
                "city": a.city, "zip": a.postcode, "country_code": "GB", "phone": o.recipient.phone,
                "latitude": a.point.lat, "longitude": a.point.lon,
            },
            "note_attributes": [
                {"name": "pickup_window_start", "value": iso(o.pickup_window[0])},
                {"name": "pickup_window_end", "value": iso(o.pickup_window[1])},
                {"name": "dropoff_window_start", "value": iso(o.dropoff_window[0])},
                {"name": "dropoff_window_end", "value": iso(o.dropoff_window[1])},
                {"name": "parcel_size", "value": o.size},
            ],
        }  # fmt: skip

    def _request(
        self, kind: str, topic: str, body: bytes, retailer: Retailer, webhook_id: str
    ) -> WireRequest:
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": retailer.credentials.shop_domain,
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Hmac-Sha256": hmac_b64(retailer.credentials.webhook_secret, body),
            "X-Shopify-API-Version": "2024-07",
        }
        return WireRequest("order" if kind == "order" else "cancel", "POST", PATH, headers, body, webhook_id)

    def encode_order(self, order: OrderSpec, retailer: Retailer) -> list[WireRequest]:
        """One signed ``orders/create`` webhook."""
        body = dumps(self.body(order, _seed_of(order)))
        return [self._request("order", "orders/create", body, retailer, stable_uuid("shopify", order.ref))]

    def encode_cancel(
        self, order: OrderSpec, retailer: Retailer, delivery_id: str | None
    ) -> WireRequest | None:
        """A signed ``orders/cancelled`` webhook carrying the same order with ``cancelled_at``."""
        doc = self.body(order, _seed_of(order))
        doc["cancelled_at"] = self.clock.iso(order.sim_at + (order.cancel_after_s or 0.0))
        doc["cancel_reason"] = "customer"
        body = dumps(doc)
        return self._request(
            "cancel", "orders/cancelled", body, retailer, stable_uuid("shopify-cancel", order.ref)
        )


def _seed_of(order: OrderSpec) -> int:
    # "s<seed>-<n>": keep ids of different seeds apart (modulo keeps them within Shopify-like magnitudes).
    return int(order.ref[1:].split("-", 1)[0]) % 100_000
