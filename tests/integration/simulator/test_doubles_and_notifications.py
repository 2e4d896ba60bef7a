"""The "one new client doubles the load" scenario doubles the offered rate, in progress and ledger; the
notification receiver records what the platform tells customers and drivers."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from simulator.config import load_scenario
from simulator.ledger import read_ledger
from simulator.runner import Runner


async def test_doubles_scenario_doubles_offered_rate(platform: Any, tmp_path: Path) -> None:
    sc = load_scenario("doubles").with_rate(100.0)
    # Same shape as the bundled file, shrunk in time: the step at 60 s moved to 1.5 s.
    step = sc.arrivals.steps[0].model_copy(update={"at": 1.5})
    sc = sc.model_copy(update={"arrivals": sc.arrivals.model_copy(update={"steps": [step]})})
    lines: list[str] = []
    await Runner(
        sc, 11, platform.url, tmp_path, duration_s=3.0, progress=lines.append, progress_every_s=0.5
    ).run()
    offered = [float(m.group(1)) for line in lines if (m := re.search(r"offered=\s*([\d.]+)/s", line))]
    assert offered[0] == 100.0 and offered[-1] == 200.0, lines
    recs = list(read_ledger(tmp_path / "simulator" / "ledger.jsonl"))
    sent = [r for r in recs if r["kind"] == "order_sent" and r["attempt"] == 1]
    before = [r for r in sent if r["at"] < 1.5]
    after = [r for r in sent if r["at"] >= 1.5]
    ratio = len(after) / len(before)
    print(f"orders before the step: {len(before)}, after: {len(after)}, ratio {ratio:.2f}")
    assert 1.6 < ratio < 2.5
    assert {r["offered_rate"] for r in before} == {100.0} and {r["offered_rate"] for r in after} == {200.0}
    # The extra load comes from the new client, about half of the orders after the step.
    new_client = [r for r in after if r["retailer"].startswith("n")]
    assert 0.35 < len(new_client) / len(after) < 0.65
    assert not any(r["retailer"].startswith("n") for r in before)
    progress = [r for r in recs if r["kind"] == "progress"]
    assert progress[0]["offered_rate"] == 100.0 and progress[-1]["offered_rate"] == 200.0


async def test_notifications_are_recorded_and_count_deliveries(
    platform: Any, tmp_path: Path, unused_port: Callable[[], int]
) -> None:
    port = unused_port()
    sc = load_scenario("steady").with_rate(5.0)
    runner = Runner(sc, 2, platform.url, tmp_path, duration_s=1.0, notify_listen=("127.0.0.1", port))

    async def notify() -> None:
        # Wait for the receiver with a deadline rather than a fixed sleep.
        from simulator.sender import wait_for_port

        assert await wait_for_port("127.0.0.1", port, 3.0)
        async with aiohttp.ClientSession() as s:
            for state in ("picked_up", "delivered", "delivered"):
                body: dict[str, Any] = {
                    "order_reference": "s2-0000001",
                    "audience": "customer",
                    "channel": "sms",
                    "state": state,
                    "to": "+447700900001",
                    "delivery_id": "dlv_1",
                }
                async with s.post(f"http://127.0.0.1:{port}/v1/notifications", json=body) as r:
                    assert r.status == 202

    import asyncio

    summary, _ = await asyncio.gather(runner.run(), notify())
    recs = [
        r
        for r in read_ledger(tmp_path / "simulator" / "ledger.jsonl")
        if r["kind"] == "notification_received"
    ]
    assert [r["state"] for r in recs] == ["picked_up", "delivered", "delivered"]
    assert summary.counts["delivered"] == 1  # the same order delivered twice counts once
