"""The REST intake channel: ``POST /v1/deliveries`` (see docs/intake-api.md)."""

from __future__ import annotations

from simulator.channels.base import WireRequest, address_doc, dumps, stable_uuid
from simulator.clock import SimClock
from simulator.orders import OrderSpec
from simulator.world import Retailer

PATH = "/v1/deliveries"


class RestEncoder:
    """Encodes orders as REST delivery requests authenticated by the retailer's API key."""

    name = "rest"

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock

    def body(self, o: OrderSpec) -> dict[str, object]:
        """The JSON body of the delivery request."""
        iso = self.clock.iso
        return {
            "reference": o.ref,
            "pickup": {"store_id": o.store_id, "address": address_doc(o.pickup),
                       "window": {"start": iso(o.pickup_window[0]), "end": iso(o.pickup_window[1])}},
            "dropoff": {"address": address_doc(o.dropoff),
                        "window": {"start": iso(o.dropoff_window[0]), "end": iso(o.dropoff_window[1])}},
            "recipient": {"name": o.recipient.name, "phone": o.recipient.phone, "email": o.recipient.email},
            "parcel": {"weight_g": o.weight_g, "size": o.size},
            "basket": {"amount_minor": o.basket_minor, "currency": o.currency},
            "items": [{"sku": i.sku, "title": i.title, "quantity": i.quantity, "unit_price_minor": i.unit_price_minor}
                      for i in o.items],
        }  # fmt: skip

    def encode_order(self, order: OrderSpec, retailer: Retailer) -> list[WireRequest]:
        """One ``POST /v1/deliveries`` with ``Idempotency-Key`` derived from the order reference."""
        key = stable_uuid("rest", order.ref)
        headers = {
            "Authorization": f"Bearer {retailer.credentials.api_key}",
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        }
        return [WireRequest("order", "POST", PATH, headers, dumps(self.body(order)), key)]

    def encode_cancel(
        self, order: OrderSpec, retailer: Retailer, delivery_id: str | None
    ) -> WireRequest | None:
        """``POST /v1/deliveries/{id}/cancel``; needs the id the platform gave (None without it)."""
        if delivery_id is None:
            return None
        key = stable_uuid("rest-cancel", order.ref)
        headers = {
            "Authorization": f"Bearer {retailer.credentials.api_key}",
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        }
        body = dumps({"reason": "customer_request", "reference": order.ref})
        return WireRequest("cancel", "POST", f"{PATH}/{delivery_id}/cancel", headers, body, key)
