"""The runner and the HTTP sender against a fake platform: accepting, rejecting, slow, erroring, absent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simulator.channels.base import WireRequest
from simulator.config import Scenario
from simulator.ledger import order_outcomes, read_ledger
from simulator.plan import plan_digest
from simulator.runner import Runner
from simulator.sender import HttpSender


def scenario(rate: float = 50.0, **extra: Any) -> Scenario:
    doc: dict[str, Any] = {
        "name": "t",
        "arrivals": {"rate": rate},
        "world": {"retailers": 6, "channel_mix": {"rest": 1.0, "shopify": 1.0, "epos": 1.0}},
        "webhooks": {
            "duplicate_share": 0.3,
            "duplicate_delay_s": 0.05,
            "update_share": 0.5,
            "out_of_order_share": 0.5,
        },
        "customers": {"cancel_share": 0.0},
        "sender": {"concurrency": 32, "timeout_s": 0.5},
    }
    doc.update(extra)
    return Scenario.model_validate(doc)


def ledger(run_dir: Path) -> list[dict[str, Any]]:
    return list(read_ledger(run_dir / "simulator" / "ledger.jsonl"))


async def test_accepting_platform_records_ids_and_signed_webhooks(platform: Any, tmp_path: Path) -> None:
    summary = await Runner(scenario(), 5, platform.url, tmp_path, duration_s=1.0).run()
    recs = ledger(tmp_path)
    answers = [r for r in recs if r["kind"] == "order_answer"]
    assert summary.orders == len(answers) > 20
    assert all(r["outcome"] == "accepted" and r["delivery_id"] for r in answers)
    assert {r["channel"] for r in answers} == {"rest", "shopify", "epos"}
    # Duplicates go out with the same id and are recorded as such.
    dups = [r for r in recs if r["kind"] == "duplicate_sent"]
    assert dups and all(r["channel"] != "rest" for r in dups)
    # Every Shopify webhook verifies against the shop secret of the retailers file.
    secrets = json.loads((tmp_path / "simulator" / "retailers.json").read_text())
    by_domain = {r["shop_domain"]: r["webhook_secret"] for r in secrets["retailers"]}
    shopify = [(h, b) for p, h, b in platform.received if p == "/v1/integrations/shopify/orders"]
    assert shopify
    for headers, body in shopify:
        mac = hmac.new(by_domain[headers["X-Shopify-Shop-Domain"]].encode(), body, hashlib.sha256).digest()
        assert headers["X-Shopify-Hmac-Sha256"] == base64.b64encode(mac).decode()
    assert summary.counts["accepted"] == summary.orders
    # The run played exactly the offline plan of that seed and duration.
    assert summary.orders_digest == plan_digest(scenario(), 5, 1.0, couriers=False).orders_digest


async def test_rejections_are_rejected_with_status(platform: Any, tmp_path: Path) -> None:
    platform.mode = "reject"
    await Runner(scenario(), 5, platform.url, tmp_path, duration_s=0.5).run()
    answers = [r for r in ledger(tmp_path) if r["kind"] == "order_answer"]
    assert answers and all(r["outcome"] == "rejected" and r["http_status"] == 422 for r in answers)
    assert all("postcode" in r["error"] for r in answers)


@pytest.mark.parametrize("mode", ["slow", "error", "refused"])
async def test_unreachable_platform_is_unknown_never_accepted(
    platform: Any, tmp_path: Path, mode: str, unused_port: Callable[[], int]
) -> None:
    target = platform.url
    if mode == "refused":
        target = f"http://127.0.0.1:{unused_port()}"
    else:
        platform.mode = mode
    summary = await Runner(scenario(rate=30.0), 9, target, tmp_path, duration_s=0.6).run()
    recs = ledger(tmp_path)
    sent = {r["order_ref"] for r in recs if r["kind"] == "order_sent"}
    outcomes = order_outcomes(recs)
    assert sent and set(outcomes) == sent
    assert set(outcomes.values()) == {"unknown"}
    assert summary.counts["accepted"] == 0 and summary.counts["unknown"] == summary.counts["sent"]
    errors = {r["error"] for r in recs if r["kind"] == "order_answer"}
    expected = {"slow": "timeout", "error": "boom", "refused": "connect"}[mode]
    assert all(expected in e for e in errors), errors


async def test_retries_reuse_the_key_and_a_late_success_is_accepted(platform: Any, tmp_path: Path) -> None:
    # 503 twice, then accepted: three attempts with one key; the order's outcome is accepted.
    platform.fail_first = 2
    sc = scenario(
        rate=5.0,
        sender={"concurrency": 1, "timeout_s": 0.5, "max_attempts": 3, "retry_backoff_s": 0.01},
        world={"retailers": 1, "channel_mix": {"rest": 1.0, "shopify": 0.0, "epos": 0.0}},
    )
    await Runner(sc, 3, platform.url, tmp_path, duration_s=0.5).run()
    recs = ledger(tmp_path)
    first = next(r["order_ref"] for r in recs if r["kind"] == "order_sent")
    attempts = [r for r in recs if r["kind"] == "order_sent" and r["order_ref"] == first]
    answers = [r for r in recs if r["kind"] == "order_answer" and r["order_ref"] == first]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert len({a["key"] for a in attempts}) == 1
    assert [a["outcome"] for a in answers] == ["unknown", "unknown", "accepted"]
    assert order_outcomes(recs)[first] == "accepted"


async def test_sender_classifies_2xx_without_id_as_accepted_contract_error(
    platform: Any,
) -> None:
    platform.mode = "no_id"
    async with HttpSender(platform.url, 1, 1.0) as s:
        ans = await s.send(WireRequest("order", "POST", "/v1/deliveries", {}, b"{}", "k"))
    assert ans.outcome == "accepted" and ans.delivery_id is None and ans.error == "contract: 2xx without id"


async def test_customers_cancel_on_every_channel(platform: Any, tmp_path: Path) -> None:
    sc = scenario(
        rate=20.0,
        customers={"cancel_share": 1.0, "cancel_after_min_s": 0.05, "cancel_after_max_s": 0.2},
        webhooks={"duplicate_share": 0.0, "update_share": 0.0},
    )
    await Runner(sc, 8, platform.url, tmp_path, duration_s=1.0).run()
    recs = ledger(tmp_path)
    cancels = [r for r in recs if r["kind"] == "cancel_sent"]
    answers = {r["order_ref"]: r for r in recs if r["kind"] == "cancel_answer"}
    assert {r["channel"] for r in cancels} == {"rest", "shopify", "epos"}
    # Each cancel follows its order's accepted answer; REST cancels name the delivery id in the path.
    accepted_ids = {r["order_ref"]: r["delivery_id"] for r in recs if r["kind"] == "order_answer"}
    for c in cancels:
        assert answers[c["order_ref"]]["outcome"] == "accepted"
        if c["channel"] == "rest":
            assert c["delivery_id"] == accepted_ids[c["order_ref"]]
    paths = [p for p, _, _ in platform.received]
    assert any(p.endswith("/cancel") for p in paths)
    topics = {h.get("X-Shopify-Topic") for _, h, _ in platform.received}
    assert "orders/cancelled" in topics


async def test_slow_platform_backlog_ends_cleanly(platform: Any, tmp_path: Path) -> None:
    # One request at a time against a platform that never answers in time: most orders are still
    # queued when the run gives up; they are recorded as never sent, and every sent one has an answer.
    platform.mode = "slow"
    sc = scenario(rate=100.0, sender={"concurrency": 1, "timeout_s": 0.2, "retry_backoff_s": 0.0},
                  webhooks={"duplicate_share": 0.0, "update_share": 0.0})  # fmt: skip
    summary = await Runner(sc, 6, platform.url, tmp_path, duration_s=0.3).run()
    recs = ledger(tmp_path)
    sent = [r["req"] for r in recs if r["kind"] == "order_sent"]
    answered = [r["req"] for r in recs if r["kind"] == "order_answer"]
    not_sent = {r["order_ref"] for r in recs if r["kind"] == "order_not_sent"}
    assert sorted(sent) == sorted(answered)
    assert not_sent and len(not_sent) + summary.counts["sent"] == summary.orders
    c = summary.counts
    assert c["accepted"] == 0 and c["unknown"] == c["sent"] == len(sent)
    assert recs[-1]["kind"] == "run_finished"
