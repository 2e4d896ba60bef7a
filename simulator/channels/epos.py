"""The ePOS (Square-style) webhook channel: ``POST /v1/integrations/epos/orders`` (see docs/intake-api.md).

Events ``order.created`` and ``order.updated`` carry the whole order with one fulfillment of type
``DELIVERY``; the body is signed: ``X-Epos-Signature`` = base64 HMAC-SHA256 of the raw body with the
merchant's webhook secret, and ``X-Epos-Merchant-Id`` names the merchant.
"""

from __future__ import annotations

from simulator.channels.base import WireRequest, dumps, hmac_b64, stable_uuid
from simulator.clock import SimClock
from simulator.orders import OrderSpec
from simulator.world import Retailer

PATH = "/v1/integrations/epos/orders"


class EposEncoder:
    """Encodes orders as Square-style order events."""

    name = "epos"

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock

    def order_doc(
        self, o: OrderSpec, version: int, order_state: str, fulfillment_state: str
    ) -> dict[str, object]:
        """The order object at ``version`` with the given order and fulfillment states."""
        iso = self.clock.iso
        cur = o.currency
        a = o.dropoff
        return {
            "id": "EP" + o.ref.upper().replace("-", ""),
            "reference_id": o.ref,
            "location_id": o.store_id,
            "state": order_state,
            "version": version,
            "created_at": iso(o.sim_at),
            "line_items": [{"uid": f"{o.ref}-{k}", "catalog_object_id": i.sku, "name": i.title,
                            "quantity": str(i.quantity),
                            "base_price_money": {"amount": i.unit_price_minor, "currency": cur}}
                           for k, i in enumerate(o.items)],
            "total_money": {"amount": o.basket_minor, "currency": cur},
            "fulfillments": [{
                "uid": f"{o.ref}-f1",
                "type": "DELIVERY",
                "state": fulfillment_state,
                "delivery_details": {
                    "recipient": {
                        "display_name": o.recipient.name, "phone_number": o.recipient.phone,
                        "email_address": o.recipient.email,
                        "address": {"address_line_1": a.lines[-1],
                                    "address_line_2": a.lines[0] if len(a.lines) > 1 else None,
                                    "locality": a.city, "postal_code": a.postcode, "country": "GB",
                                    "latitude": a.point.lat, "longitude": a.point.lon},
                    },
                    "pickup_window": {"start_at": iso(o.pickup_window[0]), "end_at": iso(o.pickup_window[1])},
                    "dropoff_window": {"start_at": iso(o.dropoff_window[0]), "end_at": iso(o.dropoff_window[1])},
                    "parcel": {"weight_g": o.weight_g, "size": o.size},
                },
            }],
        }  # fmt: skip

    def _event(self, o: OrderSpec, r: Retailer, kind: str, event_type: str, tag: str, order: dict[str, object],
               at_sim: float) -> WireRequest:  # fmt: skip
        event_id = stable_uuid("epos", tag, o.ref)
        body = dumps({
            "merchant_id": r.credentials.merchant_id, "type": event_type, "event_id": event_id,
            "created_at": self.clock.iso(at_sim),
            "data": {"type": "order", "id": order["id"], "object": {"order": order}},
        })  # fmt: skip
        headers = {
            "Content-Type": "application/json",
            "X-Epos-Merchant-Id": r.credentials.merchant_id,
            "X-Epos-Signature": hmac_b64(r.credentials.webhook_secret, body),
        }
        k = "order" if kind == "order" else ("update" if kind == "update" else "cancel")
        return WireRequest(k, "POST", PATH, headers, body, event_id)  # type: ignore[arg-type]

    def encode_order(self, order: OrderSpec, retailer: Retailer) -> list[WireRequest]:
        """``order.created`` (PROPOSED), then maybe ``order.updated`` (RESERVED), swapped when out of order."""
        created = self._event(order, retailer, "order", "order.created", "created",
                              self.order_doc(order, 1, "OPEN", "PROPOSED"), order.sim_at)  # fmt: skip
        if not order.update:
            return [created]
        updated = self._event(order, retailer, "update", "order.updated", "reserved",
                              self.order_doc(order, 2, "OPEN", "RESERVED"), order.sim_at + 30.0)  # fmt: skip
        return [updated, created] if order.out_of_order else [created, updated]

    def encode_cancel(
        self, order: OrderSpec, retailer: Retailer, delivery_id: str | None
    ) -> WireRequest | None:
        """``order.updated`` with the order and its fulfillment CANCELED."""
        at = order.sim_at + (order.cancel_after_s or 0.0)
        doc = self.order_doc(order, 3, "CANCELED", "CANCELED")
        return self._event(order, retailer, "cancel", "order.updated", "canceled", doc, at)
