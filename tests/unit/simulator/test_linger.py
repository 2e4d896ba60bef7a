"""The simulator's linger: after the traffic, couriers and the notification receiver stay up until the
run is quiet, or the cap; at the cap, what couriers still deliver is in flight, and the receiver stays
up until notifications are quiet, so a status sent just before the cut still reaches the customer."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

from simulator.config import load_scenario
from simulator.ledger import Ledger
from simulator.runner import Runner


class BusyDesk:
    """Couriers that never go idle: something is always scheduled."""

    handled = 0

    def next_due(self) -> float:
        return 0.0

    def idle(self) -> bool:
        return False

    def pending_orders(self) -> set[str]:
        return {"o-still-driving"}


async def test_at_the_cap_the_receiver_waits_for_the_notifications_already_on_their_way(
    tmp_path: Path,
) -> None:
    runner = Runner(
        load_scenario("steady-quick"), 1, "http://127.0.0.1:9", tmp_path, linger_s=0.5, settle_s=0.3
    )
    runner.desk = BusyDesk()  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    runner._loop, runner._t0 = loop, loop.time()
    out = io.StringIO()
    led = Ledger(out)
    received_at: list[float] = []

    async def platform_sends_late() -> None:
        # "delivered" sent by the courier just before the cut: its notifications arrive just after it.
        for delay in (0.6, 0.8):
            await asyncio.sleep(delay - runner.run_s())
            runner._on_notification({"state": "delivered", "order_reference": "o-delivered"})
            received_at.append(runner.run_s())

    sender = asyncio.create_task(platform_sends_late())
    await runner._linger(led)
    finished_at = runner.run_s()
    await sender
    records: list[dict[str, Any]] = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = [(r["kind"], r["order_ref"]) for r in records]
    assert kinds == [("linger_started", None), ("inflight", "o-still-driving"), ("linger_finished", None)]
    assert records[-1]["idle"] is False
    assert len(received_at) == 2 and finished_at >= received_at[-1] + 0.3, (received_at, finished_at)
    assert finished_at < 0.5 + 3 * 0.3 + 0.5, "bounded: at most 3 x settle past the cap"
    assert runner.counters.delivered == 1


async def test_a_message_still_being_published_keeps_the_couriers_busy(tmp_path: Path) -> None:
    """A publish stuck behind a frozen broker node leaves nothing scheduled, but the message is not out:
    the linger must not call that idle, and at the cap its order is in flight (explained, not lost)."""
    from simulator.clock import SimClock
    from simulator.courier_desk import CourierDesk

    sc = load_scenario("steady-quick")
    runner = Runner(sc, 1, "http://127.0.0.1:9", tmp_path, linger_s=0.6, settle_s=0.2)
    desk = runner.desk = CourierDesk(1, sc, SimClock(epoch=0.0))
    desk.handle({"type": "quote_request", "message_id": "qr-1", "courier": "pedalo", "order_reference": "o-stuck",
                 "pickup": {"lat": 51.52, "lon": -0.1}, "dropoff": {"lat": 51.5, "lon": -0.12},
                 "parcel": {"weight_g": 500, "size": "S"}}, 0.0)  # fmt: skip
    (stuck,) = desk.pop_due(100.0)  # popped by the pump, never confirmed
    assert desk.next_due() is None, "nothing scheduled any more"
    loop = asyncio.get_running_loop()
    runner._loop, runner._t0 = loop, loop.time()
    out = io.StringIO()
    await runner._linger(Ledger(out))
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["kind"], r["order_ref"]) for r in records] == [
        ("linger_started", None), ("inflight", "o-stuck"), ("linger_finished", None)
    ]  # fmt: skip
    assert records[-1]["idle"] is False
    desk.settle(stuck)
    assert desk.idle()


async def test_a_held_receiver_takes_notifications_after_the_run_until_sigint(tmp_path: Path) -> None:
    """``--hold-receiver`` (drills): once the run is over the customers' phones stay on, so what the
    platform still owes them (a last status that waited in a retry tier) reaches them; SIGINT stops it."""
    import os
    import signal
    import socket

    import aiohttp

    from simulator.notify import NOTIFY_PATH
    from simulator.runner import HOLDING_MARKER

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = Runner(
        load_scenario("steady-quick"), 1, "http://127.0.0.1:9", tmp_path, duration_s=0.2,
        notify_listen=("127.0.0.1", port), hold_receiver=True,
    )  # fmt: skip
    run = asyncio.create_task(runner.run())
    marker = runner.dir / HOLDING_MARKER
    for _ in range(200):  # the run (0.2 s of orders to an address that refuses them) ends by itself
        if marker.exists() or run.done():
            break
        await asyncio.sleep(0.05)
    assert marker.exists() and not run.done()
    assert marker.read_text().strip() == str(os.getpid())
    body = {"notification_id": "n-1", "order_reference": "s1-0000001", "state": "returned",
            "audience": "customer", "channel": "sms", "to": "+447700900001", "delivery_id": "dlv_1"}  # fmt: skip
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}{NOTIFY_PATH}", json=body) as resp,
    ):
        assert resp.status == 202
    os.kill(os.getpid(), signal.SIGINT)  # what the drill sends once it has drained the platform
    summary = await asyncio.wait_for(run, 10)
    assert summary.orders >= 1
    kinds = [json.loads(line)["kind"] for line in (runner.dir / "ledger.jsonl").read_text().splitlines()]
    tail = kinds[kinds.index("run_finished") :]
    assert tail == ["run_finished", "receiver_holding", "notification_received", "receiver_stopped"], tail
