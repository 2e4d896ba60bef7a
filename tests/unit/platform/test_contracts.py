"""The contracts between services: one model per message, written and read by the same definition."""

from __future__ import annotations

import doctest
import importlib
import json
import pkgutil

import pytest

import system.platform.contracts
from system.domain.intake import DeliveryRequest
from system.platform import contracts

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(system.platform.contracts.__path__, "system.platform.contracts.")
)

REQUEST = DeliveryRequest.model_validate(
    {
        "retailer_id": "r01",
        "channel": "rest",
        "reference": "s42-0000001",
        "pickup": {"lines": ["1 A St"], "city": "London", "postcode": "N1 4AB", "lat": 51.51, "lon": -0.12},
        "dropoff": {"lines": ["2 B St"], "city": "London", "postcode": "N1 4AC", "lat": 51.52, "lon": -0.11},
        "pickup_window": {"start": "2026-11-18T11:00:00Z", "end": "2026-11-18T11:30:00Z"},
        "dropoff_window": {"start": "2026-11-18T11:10:00Z", "end": "2026-11-18T12:00:00Z"},
        "recipient": {"name": "Ben", "phone": "+447700900786"},
        "parcel": {"weight_g": 900, "size": "S"},
        "basket": {"amount_minor": 2247, "currency": "GBP"},
    }
)
AT = 1795000000.1234


@pytest.mark.parametrize("name", ["system.platform.contracts", *MODULES])
def test_docstring_examples(name: str) -> None:
    assert doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS).failed == 0


def test_order_created_is_read_as_it_was_written() -> None:
    m = contracts.order_created("dlv_1", REQUEST, AT)
    assert (m.exchange, m.routing_key, m.message_id, m.message_type) == (
        "orders",
        "order.created",
        "dlv_1:order.created",
        "order.created",
    )
    assert dict(m.headers) == {"x-delivery-id": "dlv_1", "x-order-reference": "s42-0000001"}
    body = json.loads(m.body)
    # The body's shape on the wire: its keys in this order, instants in the contract's format.
    assert list(body) == [
        "type", "message_id", "delivery_id", "order_reference", "retailer_id", "channel", "accepted_at", "request"
    ]  # fmt: skip
    assert body["accepted_at"] == contracts.iso(AT) == "2026-11-18T11:06:40.123Z"
    assert body["request"] == REQUEST.model_dump(mode="json")
    read = contracts.decode_order(m.body)
    assert isinstance(read, contracts.OrderCreated) and read.request == REQUEST
    assert contracts.decode_quoting_input(m.body) == read


def test_order_updated_and_cancel_requested_keep_their_wire_shape() -> None:
    up = contracts.order_updated("dlv_1", REQUEST.model_copy(update={"source_version": 3}), AT)
    assert up.message_id == "dlv_1:order.updated:v3" and up.routing_key == "order.updated"
    assert list(json.loads(up.body)) == [
        "type", "message_id", "delivery_id", "order_reference", "retailer_id", "version", "updated_at", "request"
    ]  # fmt: skip
    assert isinstance(contracts.decode_order(up.body), contracts.OrderUpdated)
    cx = contracts.cancel_requested("dlv_1", "s42-0000001", "r01", "customer_request", AT)
    assert (cx.routing_key, cx.message_type, cx.message_id) == (
        "order.updated",
        "order.cancel_requested",
        "dlv_1:order.cancel_requested",
    )
    body = json.loads(cx.body)
    assert body["state"] == "cancelled" and body["requested_at"] == "2026-11-18T11:06:40.123Z"
    read = contracts.decode_order(cx.body)
    assert isinstance(read, contracts.CancelRequested) and read.reason == "customer_request"


def test_the_platform_s_lifecycle_ids() -> None:
    ev = contracts.Event
    assert contracts.lifecycle_event_id("dlv_1", ev.BOOKED, "dispatch") == "dlv_1:booked:dispatch"
    assert contracts.lifecycle_event_id("dlv_1", ev.QUOTED, "quoting") == "dlv_1:quoted:quoting"
    assert contracts.gateway_message_id("m-7") == "gw:m-7"
