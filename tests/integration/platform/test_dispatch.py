"""The dispatch service on a real broker, as a real process, against a scripted courier: a rejection
books the next option, a silent courier times out and the next is booked, an acceptance that comes
after the timeout is cancelled (no delivery keeps two couriers), a silent courier is asked again and an
acceptance during that second ask is kept, a cancelled order cancels its courier
job or books nothing at all, and answers to requests dispatch never sent are parked with the reason."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from system.domain.common import Money
from system.domain.quoting import Quote
from system.messaging import OutgoingMessage
from system.platform.contracts import DeliveryQuoted, cancel_requested, quoted_message
from system.platform.topology import DISPATCH_ANSWERS

from .conftest import PlatformVhost
from .fake_courier import (
    FakeCourier,
    LifecycleReader,
    Plan,
    ServiceProcess,
    parked,
    publish,
    rows,
    wait_until,
)

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0


def dispatch(pv: PlatformVhost) -> ServiceProcess:
    # One ask per courier: the silent and late-acceptance cases below test moving on after one timeout.
    env = {"DRILL_DISPATCH_BOOKING_TIMEOUT_S": str(TIMEOUT_S), "DRILL_DISPATCH_BOOKING_ASKS": "1"}
    return ServiceProcess("dispatch", pv.run_dir, pv.secrets, env)


def quoted(delivery_id: str, *couriers: str) -> OutgoingMessage:
    """Quoting's ``DeliveryQuoted`` with one live quote per courier, in the order given."""
    now = datetime.now(UTC)
    options = tuple(
        Quote(
            courier=c,
            quote_id=f"q-{c}-{delivery_id}",
            price=Money(amount_minor=700 + 10 * i, currency="GBP"),
            vehicle="bike",
            pickup_eta=now + timedelta(minutes=10),
            dropoff_eta=now + timedelta(minutes=30),
            expires_at=now + timedelta(minutes=15),
            delivery_id=delivery_id,
            order_reference=f"ref-{delivery_id}",
        )
        for i, c in enumerate(couriers)
    )
    return quoted_message(
        DeliveryQuoted(
            message_id=f"{delivery_id}:delivery.quoted",
            delivery_id=delivery_id,
            order_reference=f"ref-{delivery_id}",
            retailer_id="r01",
            options=options,
            decided_at=now,
        )
    )


def cancel(delivery_id: str) -> OutgoingMessage:
    """The cancel as intake's relay publishes it (``orders`` → ``order.updated``)."""
    return cancel_requested(delivery_id, f"ref-{delivery_id}", "r01", "customer_request", time.time())


async def test_rejection_timeout_and_late_acceptance_each_end_with_one_courier(
    platform_vhost: PlatformVhost,
) -> None:
    pv = platform_vhost
    url = pv.admin_urls[0]
    accept = Plan(booking="accept")
    plans = {"zoomly": accept, "dashly": accept, "pedalo": accept}
    script = {
        ("zoomly", "dlv_a"): Plan(booking="reject"),
        ("zoomly", "dlv_b"): Plan(booking="silent"),
        ("dashly", "dlv_c"): Plan(booking="accept", booking_delay_s=TIMEOUT_S + 2.5),  # after the timeout
    }
    async with FakeCourier(url, plans, script) as couriers, LifecycleReader(url) as lifecycle:
        with dispatch(pv) as service:
            await service.wait_ready()
            await publish(
                pv.admin_urls,
                quoted("dlv_a", "zoomly", "dashly"),
                quoted("dlv_b", "zoomly", "pedalo"),
                quoted("dlv_c", "dashly", "pedalo"),
            )

            def booked() -> list[tuple[str, str, str]]:
                found = rows(service.db, "SELECT delivery_id, courier, courier_job_id FROM jobs WHERE status = 'booked'"
                             " ORDER BY delivery_id")  # fmt: skip
                return found if len(found) == 3 else []

            assert await wait_until(booked, "three deliveries booked", within=20) == [
                ("dlv_a", "dashly", "dashly-job-dlv_a"),
                ("dlv_b", "pedalo", "pedalo-job-dlv_b"),
                ("dlv_c", "pedalo", "pedalo-job-dlv_c"),
            ]
            # dashly's late acceptance of dlv_c gets a cancel request, which dashly accepts.
            await wait_until(
                lambda: rows(service.db, "SELECT courier_job_id, why FROM cancels WHERE status = 'accepted'"),
                "the late acceptance cancelled",
                within=20,
            )
            await wait_until(
                lambda: all(lifecycle.of(d) for d in ("dlv_a", "dlv_b", "dlv_c")), "booked events"
            )

        attempts = rows(service.db, "SELECT delivery_id, number, courier, status FROM attempts ORDER BY 1, 2")
        assert attempts == [
            ("dlv_a", 1, "zoomly", "rejected"),
            ("dlv_a", 2, "dashly", "booked"),
            ("dlv_b", 1, "zoomly", "timed_out"),
            ("dlv_b", 2, "pedalo", "booked"),
            ("dlv_c", 1, "dashly", "released"),
            ("dlv_c", 2, "pedalo", "booked"),
        ]
        assert rows(service.db, "SELECT delivery_id, courier, courier_job_id, why, status FROM cancels") == [
            ("dlv_c", "dashly", "dashly-job-dlv_c", "late acceptance (timed_out)", "accepted")
        ]
        (cancel_body,) = couriers.requests("cancel_request")
        assert cancel_body == {
            "type": "cancel_request", "message_id": "cx-dlv_c-dashly-job-dlv_c", "courier": "dashly",
            "delivery_id": "dlv_c", "order_reference": "ref-dlv_c", "courier_job_id": "dashly-job-dlv_c",
        }  # fmt: skip
        assert couriers.requests("booking_request", "zoomly", "dlv_a") == [
            {"type": "booking_request", "message_id": "bk-dlv_a-1", "courier": "zoomly", "delivery_id": "dlv_a",
             "order_reference": "ref-dlv_a", "quote_id": "q-zoomly-dlv_a"}
        ]  # fmt: skip
        # The silent courier was waited for the booking timeout, not less, before the next was asked.
        sent_at = {(r.body["delivery_id"], r.body["courier"]): r.at for r in couriers.received}
        assert sent_at["dlv_b", "pedalo"] - sent_at["dlv_b", "zoomly"] >= TIMEOUT_S - 0.3
        # Exactly one booked event per delivery, naming the courier that kept the job.
        for d, courier in (("dlv_a", "dashly"), ("dlv_b", "pedalo"), ("dlv_c", "pedalo")):
            (event,) = lifecycle.bodies(d, "booked")
            assert (event["source"], event["courier"], event["courier_job_id"]) == (
                "dispatch",
                courier,
                f"{courier}-job-{d}",
            )
            assert event["driver"] == {"id": f"{courier}-drv-1", "vehicle": "bike"}
            assert lifecycle.of(d) == [("booked", "dispatch")]


async def test_cancels_and_answers_to_requests_never_sent(platform_vhost: PlatformVhost) -> None:
    pv = platform_vhost
    url = pv.admin_urls[0]
    plans = {"dashly": Plan(booking="accept"), "zoomly": Plan(booking="accept")}
    async with FakeCourier(url, plans) as couriers:
        with dispatch(pv) as service:
            await service.wait_ready()

            # A cancel after the booking: the courier job gets a cancel request.
            await publish(pv.admin_urls, quoted("dlv_d", "dashly"))
            await wait_until(
                lambda: rows(
                    service.db, "SELECT 1 FROM jobs WHERE delivery_id = 'dlv_d' AND status = 'booked'"
                ),
                "dlv_d booked",
            )
            await publish(pv.admin_urls, cancel("dlv_d"))
            await wait_until(
                lambda: rows(
                    service.db, "SELECT 1 FROM cancels WHERE delivery_id = 'dlv_d' AND status = 'accepted'"
                ),
                "dlv_d's courier job cancelled",
            )
            (body,) = couriers.requests("cancel_request", "dashly", "dlv_d")
            assert (body["courier_job_id"], body["message_id"]) == (
                "dashly-job-dlv_d",
                "cx-dlv_d-dashly-job-dlv_d",
            )
            assert rows(service.db, "SELECT status FROM jobs WHERE delivery_id = 'dlv_d'") == [("cancelled",)]

            # A cancel before the quote: the quote that follows books nothing.
            await publish(pv.admin_urls, cancel("dlv_e"))
            await wait_until(
                lambda: rows(service.db, "SELECT 1 FROM jobs WHERE delivery_id = 'dlv_e'"), "dlv_e's cancel"
            )
            await publish(pv.admin_urls, quoted("dlv_e", "zoomly"))
            await wait_until(
                lambda: rows(service.db, "SELECT 1 FROM jobs WHERE delivery_id = 'dlv_e' AND quoted = 1"),
                "dlv_e's quote handled",
            )
            # Handled = committed with whatever it sends: nothing for dlv_e is or will be in the outbox.
            assert rows(service.db, "SELECT message_id FROM outbox WHERE message_id LIKE '%dlv_e%'") == []
            assert rows(service.db, "SELECT status FROM jobs WHERE delivery_id = 'dlv_e'") == [("cancelled",)]

            # Answers replying to nothing dispatch sent, and a body that is not JSON: parked with why.
            stray = {"type": "booking_accepted", "courier": "zoomly", "delivery_id": "dlv_zz",
                     "order_reference": "ref-zz", "in_reply_to": "bk-dlv_zz-1", "quote_id": "q-zz",
                     "message_id": "stray-1", "courier_job_id": "zoomly-job-zz",
                     "driver": {"id": "zoomly-drv-1", "vehicle": "bike"}}  # fmt: skip
            await couriers.publish_raw("zoomly.booking_accepted", stray, "stray-1")
            await couriers.publish_raw("zoomly.booking_rejected", b"{oops", "garbled-1")

            async def both_parked() -> dict[str, str]:
                found = {m.message_id: m.reason for m in await parked(pv.admin_urls, DISPATCH_ANSWERS)}
                return found if {"stray-1", "garbled-1"} <= set(found) else {}

            reasons = await wait_until(both_parked, "both answers parked", within=10)
            assert "replies to 'bk-dlv_zz-1', a booking request dispatch did not send" in reasons["stray-1"]
            assert reasons["garbled-1"].startswith("malformed:") and "not JSON" in reasons["garbled-1"]
        # Nothing was booked or cancelled because of them.
        assert rows(service.db, "SELECT COUNT(*) FROM cancels") == [(1,)]
        assert [json.loads(b)["delivery_id"] for (b,) in rows(service.db, "SELECT body FROM outbox")] == [
            "dlv_d",
            "dlv_d",
            "dlv_d",
        ]


async def test_a_silent_courier_is_asked_again_and_its_late_acceptance_kept(
    platform_vhost: PlatformVhost,
) -> None:
    """With two asks (the default): an acceptance that comes after the first deadline, during the second
    ask, books that courier and nobody else; a courier silent through both asks is left for the next."""
    pv = platform_vhost
    url = pv.admin_urls[0]
    accept = Plan(booking="accept")
    plans = {"dashly": accept, "pedalo": accept, "zoomly": accept}
    script = {
        ("dashly", "dlv_f"): Plan(booking="accept", booking_delay_s=TIMEOUT_S + 1.5),  # during ask 2
        ("zoomly", "dlv_g"): Plan(booking="silent"),
    }
    env = {"DRILL_DISPATCH_BOOKING_TIMEOUT_S": str(TIMEOUT_S), "DRILL_DISPATCH_BOOKING_ASKS": "2"}
    async with FakeCourier(url, plans, script) as couriers:
        with ServiceProcess("dispatch", pv.run_dir, pv.secrets, env) as service:
            await service.wait_ready()
            await publish(
                pv.admin_urls, quoted("dlv_f", "dashly", "pedalo"), quoted("dlv_g", "zoomly", "pedalo")
            )

            def booked() -> list[tuple[str, str]]:
                found = rows(
                    service.db, "SELECT delivery_id, courier FROM jobs WHERE status = 'booked' ORDER BY 1"
                )
                return found if len(found) == 2 else []

            assert await wait_until(booked, "both deliveries booked", within=30) == [
                ("dlv_f", "dashly"),
                ("dlv_g", "pedalo"),
            ]
            # dashly answers ask 2 as well (the same job): a repeat, which changes nothing.
            await wait_until(
                lambda: len(couriers.requests("booking_request", "dashly", "dlv_f")) == 2,
                "dashly asked twice",
            )
        attempts = rows(
            service.db, "SELECT delivery_id, number, courier, status, asks FROM attempts ORDER BY 1, 2"
        )
        assert attempts == [
            ("dlv_f", 1, "dashly", "booked", 2),
            ("dlv_g", 1, "zoomly", "timed_out", 2),
            ("dlv_g", 2, "pedalo", "booked", 1),
        ]
        assert rows(service.db, "SELECT * FROM cancels") == [], "no courier was released: none booked twice"
        asks = [b["message_id"] for b in couriers.requests("booking_request", "zoomly", "dlv_g")]
        assert asks == ["bk-dlv_g-1", "bk-dlv_g-1-2"]
        # zoomly was waited for both asks (2 s, then 4 s) before pedalo was asked.
        sent_at = {(r.body["message_id"], r.body["courier"]): r.at for r in couriers.received}
        assert sent_at["bk-dlv_g-2", "pedalo"] - sent_at["bk-dlv_g-1", "zoomly"] >= 3 * TIMEOUT_S - 0.3
