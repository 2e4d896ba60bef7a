"""The quoting service on a real broker, as a real process: an ``order.created`` published as intake's
relay publishes it becomes quote requests to every eligible courier, and one ``DeliveryQuoted`` (ranked)
at the deadline when a courier stays silent — also when the process is SIGKILLed in between. Bad answers
are parked with their reason."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from system.domain.intake import DeliveryRequest
from system.platform.contracts import DeliveryQuoted, order_created
from system.platform.topology import DELIVERY_QUOTED, QUOTES, QUOTING_ANSWERS

from .conftest import PlatformVhost
from .fake_courier import (
    FakeCourier,
    LifecycleReader,
    Plan,
    QueueReader,
    ServiceProcess,
    parked,
    publish,
    rows,
    wait_until,
)

pytestmark = pytest.mark.integration

# North London, ~19 km by road: with r01's rules (bikes only) exactly zoomly, dashly and pedalo serve it.
ORDER: dict[str, Any] = {
    "retailer_id": "r01",
    "channel": "rest",
    "reference": "s42-0000001",
    "store_id": "r01-s1",
    "pickup": {"lines": ["1 High St"], "city": "London", "postcode": "N1 4AB", "lat": 51.57, "lon": -0.13},
    "dropoff": {"lines": ["63 York Rd"], "city": "London", "postcode": "EN5 1AA", "lat": 51.70, "lon": -0.10},
    "pickup_window": {"start": "2026-11-18T11:17:40Z", "end": "2026-11-18T11:47:40Z"},
    "dropoff_window": {"start": "2026-11-18T11:27:40Z", "end": "2026-11-18T12:27:40Z"},
    "recipient": {"name": "Ben Nguyen", "phone": "+447700900786"},
    "parcel": {"weight_g": 900, "size": "S"},
    "basket": {"amount_minor": 2247, "currency": "GBP"},
}
ASKED = ["zoomly", "dashly", "pedalo"]


def write_retailers(run_dir: Path) -> Path:
    """r01: bikes only, zoomly its priority fleet."""
    doc = {"version": 1, "retailers": [{
        "id": "r01", "name": "Thistle", "channel": "rest", "category": "pharmacy", "currency": "GBP",
        "api_key": "sk_test", "shop_domain": "t.myshopify.com", "webhook_secret": "s3", "merchant_id": "M1",
        "stores": [{"id": "r01-s1", "lines": ["1 High St"], "city": "London", "postcode": "N1 4AB",
                    "lat": 51.57, "lon": -0.13}],
        "rules": {"priority_fleet": ["zoomly"], "allowed_vehicles": ["bike"], "max_price_minor": 2500}}]}  # fmt: skip
    path = run_dir / "retailers.json"
    path.write_text(json.dumps(doc))
    return path


def quoting(pv: PlatformVhost, deadline_s: float) -> ServiceProcess:
    return ServiceProcess(
        "quoting",
        pv.run_dir,
        pv.secrets,
        {
            "DRILL_QUOTING_QUOTE_DEADLINE_S": str(deadline_s),
            "DRILL_QUOTING_RETAILERS": str(write_retailers(pv.run_dir)),
        },
    )


async def test_quote_requests_reach_each_courier_and_the_deadline_decides_without_the_silent_one(
    platform_vhost: PlatformVhost,
) -> None:
    pv = platform_vhost
    url = pv.admin_urls[0]
    plans = {"zoomly": Plan(quote=900), "dashly": Plan(quote="silent"), "pedalo": Plan(quote=650)}
    async with (
        FakeCourier(url, plans) as couriers,
        QueueReader(url, QUOTES, DELIVERY_QUOTED) as quotes,
        LifecycleReader(url) as lifecycle,
    ):
        with quoting(pv, deadline_s=2.0) as service:
            await service.wait_ready()
            request = DeliveryRequest.model_validate(ORDER)
            await publish(pv.admin_urls, order_created("dlv_q1", request, time.time()))

            await wait_until(lambda: len(couriers.requests("quote_request")) == 3, "three quote requests")
            for courier in ASKED:
                (body,) = couriers.requests("quote_request", courier)
                assert body == {
                    "type": "quote_request", "message_id": f"qr-dlv_q1-{courier}", "courier": courier,
                    "delivery_id": "dlv_q1", "order_reference": "s42-0000001",
                    "pickup": {"lat": 51.57, "lon": -0.13, "postcode": "N1 4AB"},
                    "dropoff": {"lat": 51.70, "lon": -0.10, "postcode": "EN5 1AA"},
                    "parcel": {"weight_g": 900, "size": "S"},
                    "pickup_window": {"start": "2026-11-18T11:17:40Z", "end": "2026-11-18T11:47:40Z"},
                    "dropoff_window": {"start": "2026-11-18T11:27:40Z", "end": "2026-11-18T12:27:40Z"},
                }  # fmt: skip
            assert {r.routing_key for r in couriers.received} == {f"{c}.quote_request" for c in ASKED}

            await wait_until(lambda: quotes.messages, "the DeliveryQuoted")
            (message,) = quotes.messages
            assert message.message_id == "dlv_q1:delivery.quoted"
            quoted = DeliveryQuoted.model_validate_json(message.body)
            assert [(o.courier, o.price.amount_minor) for o in quoted.options] == [
                ("zoomly", 900),
                ("pedalo", 650),
            ]
            # Decided by the deadline (dashly never answered), not before it.
            ((created, deadline, decided, status),) = rows(
                service.db, "SELECT created_at, deadline_at, decided_at, status FROM quote_rounds"
            )
            assert status == "quoted" and deadline == pytest.approx(created + 2.0)
            assert deadline <= decided < deadline + 2.0  # the sweep (every 0.2 s) ended the wait

            await wait_until(lambda: lifecycle.of("dlv_q1"), "the quoted lifecycle event")
            assert lifecycle.of("dlv_q1") == [("quoted", "quoting")]

            # A malformed answer and an answer for a delivery quoting never saw: both parked, with why.
            bad = {"type": "quote", "courier": "pedalo", "delivery_id": "dlv_q1", "in_reply_to": "qr-dlv_q1-pedalo",
                   "order_reference": "s42-0000001", "quote_id": "q-x", "vehicle": "bike"}  # fmt: skip
            await couriers.publish_raw("pedalo.quote", bad, "bad-answer-1")
            stray = {**bad, "delivery_id": "dlv_nobody", "in_reply_to": "qr-dlv_nobody-pedalo", "price":
                     {"amount_minor": 500, "currency": "GBP"}, "pickup_eta": "2026-11-18T11:29:18Z",
                     "dropoff_eta": "2026-11-18T11:45:55Z", "expires_at": "2026-11-18T11:59:00Z"}  # fmt: skip
            await couriers.publish_raw("pedalo.quote", stray, "stray-answer-1")

            async def both_parked() -> dict[str, str]:
                found = {m.message_id: m.reason for m in await parked(pv.admin_urls, QUOTING_ANSWERS)}
                return found if {"bad-answer-1", "stray-answer-1"} <= set(found) else {}

            reasons = await wait_until(both_parked, "both answers parked", within=10)
            assert "lacks price, pickup_eta, dropoff_eta, expires_at" in reasons["bad-answer-1"]
            assert "answer for unknown delivery 'dlv_nobody'" in reasons["stray-answer-1"]
            # Neither was recorded; the decision stands alone.
            assert rows(service.db, "SELECT courier FROM quote_answers ORDER BY courier") == [
                ("pedalo",),
                ("zoomly",),
            ]
            assert len(quotes.messages) == 1


async def test_a_sigkill_between_the_order_and_the_decision_still_decides_once(
    platform_vhost: PlatformVhost,
) -> None:
    pv = platform_vhost
    url = pv.admin_urls[0]
    plans = {"zoomly": Plan(quote=900), "dashly": Plan(quote="silent"), "pedalo": Plan(quote="silent")}
    async with FakeCourier(url, plans) as couriers, QueueReader(url, QUOTES, DELIVERY_QUOTED) as quotes:
        service = quoting(pv, deadline_s=5.0)
        service.start()
        try:
            await service.wait_ready()
            request = DeliveryRequest.model_validate(ORDER)
            await publish(pv.admin_urls, order_created("dlv_q2", request, time.time()))
            # The round is stored and zoomly's answer recorded; the deadline is still ahead: kill now.
            await wait_until(
                lambda: rows(service.db, "SELECT courier FROM quote_answers WHERE delivery_id = 'dlv_q2'"),
                "zoomly's answer recorded",
            )
            ((status, deadline),) = rows(service.db, "SELECT status, deadline_at FROM quote_rounds")
            assert status == "collecting" and time.time() < deadline
            service.kill()
            assert quotes.messages == []

            service.start()
            await service.wait_ready()
            await wait_until(lambda: quotes.messages, "the DeliveryQuoted after the restart", within=20)
            await wait_until(
                lambda: rows(service.db, "SELECT COUNT(*) FROM outbox WHERE status = 'pending'") == [(0,)],
                "the outbox drained",
            )
        finally:
            service.stop()
        # Every outbox row confirmed and the process stopped: nothing more can arrive.
        assert [m.message_id for m in quotes.messages] == ["dlv_q2:delivery.quoted"]
        quoted = DeliveryQuoted.model_validate_json(quotes.messages[0].body)
        assert [o.courier for o in quoted.options] == ["zoomly"]
        assert rows(service.db, "SELECT status FROM quote_rounds") == [("quoted",)]
        # Each courier was asked (a republish after the kill would keep the request's id).
        assert {b["message_id"] for b in couriers.requests("quote_request")} == {
            f"qr-dlv_q2-{c}" for c in ASKED
        }
