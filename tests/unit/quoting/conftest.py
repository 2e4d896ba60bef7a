"""Helpers of the quoting unit tests: an order that three couriers can serve, a quoting DB, answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from system.domain.intake import DeliveryRequest
from system.domain.retailers import RetailerRules
from system.messaging import inbox, outbox
from system.messaging.db import open_db
from system.quoting.store import SCHEMA

#: North London, ~19 km by road: with bikes only, exactly zoomly, dashly and pedalo serve it.
ORDER: dict[str, Any] = {
    "retailer_id": "r01",
    "channel": "rest",
    "reference": "s42-0000001",
    "store_id": "r01-s1",
    "pickup": {"lines": ["1 High St"], "city": "London", "postcode": "N1 4AB", "lat": 51.57, "lon": -0.13},
    "dropoff": {
        "lines": ["Flat 4", "63 York Rd"],
        "city": "London",
        "postcode": "EN5 1AA",
        "lat": 51.70,
        "lon": -0.10,
    },
    "pickup_window": {"start": "2026-11-18T11:17:40Z", "end": "2026-11-18T11:47:40Z"},
    "dropoff_window": {"start": "2026-11-18T11:27:40Z", "end": "2026-11-18T12:27:40Z"},
    "recipient": {"name": "Ben Nguyen", "phone": "+447700900786"},
    "parcel": {"weight_g": 900, "size": "S"},
    "basket": {"amount_minor": 2247, "currency": "GBP"},
}
BIKES = RetailerRules(priority_fleet=("zoomly",), allowed_vehicles=("bike",), max_price_minor=2500)
ASKED = ("zoomly", "dashly", "pedalo")
T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)


def request(**changes: Any) -> DeliveryRequest:
    """The test order, with top-level fields replaced."""
    return DeliveryRequest.model_validate({**ORDER, **changes})


def quote_doc(courier: str, price: int, *, delivery_id: str = "dlv_1", vehicle: str = "bike",
              expires: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """A courier's ``quote`` answer (docs/intake-api.md §3.2)."""
    return {
        "type": "quote", "courier": courier, "dialect": "uber", "delivery_id": delivery_id,
        "order_reference": "s42-0000001", "in_reply_to": f"qr-{delivery_id}-{courier}",
        "message_id": f"{courier}:s42-0000001:quote:0", "quote_id": f"q-{courier}-{delivery_id}",
        "price": {"amount_minor": price, "currency": "GBP"}, "vehicle": vehicle,
        "pickup_eta": "2026-11-18T11:29:18Z", "dropoff_eta": "2026-11-18T11:45:55Z",
        "expires_at": (expires or T0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }  # fmt: skip


def declined_doc(courier: str, reason: str = "out_of_area", *, delivery_id: str = "dlv_1") -> dict[str, Any]:
    """A courier's ``quote_declined``."""
    return {
        "type": "quote_declined", "courier": courier, "dialect": "doordash", "delivery_id": delivery_id,
        "order_reference": "s42-0000001", "in_reply_to": f"qr-{delivery_id}-{courier}",
        "message_id": f"{courier}:s42-0000001:quote_declined:0", "reason": reason,
    }  # fmt: skip


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """A quoting DB (outbox, inbox and quoting tables), closed after the test."""
    conn = await open_db(tmp_path / "quoting.db")
    await conn.executescript(outbox.SCHEMA + inbox.SCHEMA + SCHEMA)
    try:
        yield conn
    finally:
        await conn.close()
