"""Real Locust processes against a fake intake on loopback: stats, ledger, shapes, distributed mode."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fake_intake import INTAKE, ROOT, FakeIntake

from loadtests.runner import LocustResult, run_locust

pytestmark = pytest.mark.integration

#: Every request name the intake locustfile uses; each must have been sent in a 6 s run.
NAMES = {
    "POST /v1/deliveries",
    "POST /v1/deliveries [retry]",
    "POST /v1/deliveries [bad key]",
    "POST /v1/deliveries [invalid]",
    "POST /v1/deliveries/{id}/cancel",
    "GET /v1/deliveries/{id}",
    "shopify orders/create",
    "shopify orders/create [duplicate]",
    "shopify orders/create [bad hmac]",
    "shopify orders/cancelled",
    "epos order.created",
    "epos order.created [duplicate]",
    "epos order.created [bad signature]",
    "epos order.updated",
    "epos order.updated [cancel]",
}
CREATE_KINDS = ("order_answer", "duplicate_answer", "update_answer")


def _ledger(result: LocustResult) -> list[dict[str, Any]]:
    assert result.ledger is not None, "no ledger written"
    return [json.loads(line) for line in result.ledger.read_text().splitlines() if line.strip()]


def _check_ledger_against_server(records: list[dict[str, Any]], fake: FakeIntake) -> None:
    """Every delivery the server accepted is in the ledger as accepted, and nothing else is."""
    ledger_ids = {
        r["delivery_id"] for r in records if r["kind"] in CREATE_KINDS and r["outcome"] == "accepted"
    }
    assert ledger_ids == set(fake.deliveries), (
        f"server accepted {len(fake.deliveries)}, ledger holds {len(ledger_ids)}; "
        f"missing from ledger: {sorted(set(fake.deliveries) - ledger_ids)[:5]}, "
        f"unknown to server: {sorted(ledger_ids - set(fake.deliveries))[:5]}"
    )
    # Each answer pairs with its request, and the references agree with the server's.
    sent = Counter(r["req"] for r in records if r["kind"].endswith("_sent"))
    answered = Counter(r["req"] for r in records if r["kind"].endswith("_answer"))
    assert sent == answered
    ref_of = {d.id: d.reference for d in fake.deliveries.values()}
    for r in records:
        if r["kind"] in CREATE_KINDS and r["outcome"] == "accepted":
            assert ref_of[r["delivery_id"]] == r["order_ref"], r


def test_headless_run_stats_and_ledger(intake: FakeIntake, retailers_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_locust(
        INTAKE,
        intake.url,
        run,
        users=12,
        spawn_rate=12,
        duration=5,
        env={"DRILL_RETAILERS": str(retailers_file), "DRILL_WAIT_MAX": "0", "DRILL_DUPLICATE_SHARE": "0.1"},
    )
    assert result.exit_code == 0, (run / "locust" / "master.log").read_text()[-3000:]
    # Stats: every request type was exercised, none failed, and the totals add up to the server's.
    seen = {e.name for e in result.endpoints if e.requests > 0}
    assert seen >= NAMES, f"never sent: {sorted(NAMES - seen)}"
    assert result.failures == 0, [(e.name, e.failures) for e in result.endpoints if e.failures]
    assert result.requests == intake.requests
    assert result.rps > 50 and result.p95_ms is not None and result.median_ms is not None
    assert (run / "locust" / "stats_stats.csv").exists() and result.html.exists()
    # The deliberate 4xx were answered as such and counted as successes.
    assert intake.by_status.get(401, 0) == sum(e.requests for e in result.endpoints if "[bad" in e.name)
    assert intake.by_status.get(422, 0) == result.endpoint("POST /v1/deliveries [invalid]").requests  # type: ignore[union-attr]
    records = _ledger(result)
    assert result.ledger_records == len(records)
    assert not list((run / "locust").glob("ledger-*.jsonl")), "per-process parts not merged"
    _check_ledger_against_server(records, intake)
    kinds = Counter(r["kind"] for r in records)
    assert kinds["track_read"] == result.endpoint("GET /v1/deliveries/{id}").requests  # type: ignore[union-attr]
    assert any(r["kind"] == "update_sent" and r["out_of_order"] for r in records)
    print(
        f"\n[loadtest] {result.requests} requests in {result.duration_s:.1f} s, {result.rps:.0f} req/s, "
        f"p50 {result.median_ms} ms p95 {result.p95_ms} ms p99 {result.p99_ms} ms, "
        f"{len(intake.deliveries)} deliveries accepted, {len(records)} ledger records"
    )


def test_failing_and_slow_server_gives_unknown_outcomes(
    intake: FakeIntake, retailers_file: Path, tmp_path: Path
) -> None:
    """503s (nothing stored) are failures in the stats and ``unknown`` in the ledger, then retried."""
    intake.fail_share = 0.1
    intake.delay_s = 0.005
    run = tmp_path / "run"
    result = run_locust(
        INTAKE,
        intake.url,
        run,
        users=6,
        spawn_rate=6,
        duration=3,
        env={"DRILL_RETAILERS": str(retailers_file), "DRILL_WAIT_MAX": "0"},
    )
    failures_503 = intake.by_status.get(503, 0)
    assert failures_503 > 0
    assert result.failures == failures_503
    assert result.exit_code == 1  # Locust's exit code when a request failed
    records = _ledger(result)
    unknown = [r for r in records if r["kind"].endswith("_answer") and r["outcome"] == "unknown"]
    assert len(unknown) == failures_503 and all(r["http_status"] == 503 for r in unknown)
    retried = [r for r in records if r["kind"] == "order_sent" and r["attempt"] == 2]
    assert retried, "an unknown create is retried with the same key"
    assert result.median_ms is not None and result.median_ms >= 5
    _check_ledger_against_server(records, intake)


def test_doubles_shape_doubles_users(intake: FakeIntake, retailers_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_locust(
        ROOT / "loadtests" / "intake_doubles.py",
        intake.url,
        run,
        users=4,
        spawn_rate=4,
        duration=5,
        env={
            "DRILL_RETAILERS": str(retailers_file),
            "DRILL_SHAPE_STEP_AT": "2.5",
            "DRILL_USER_RPS": "5",
        },
    )
    assert result.exit_code == 0, (run / "locust" / "master.log").read_text()[-3000:]
    counts = [h.user_count for h in result.history]
    assert 4 in counts and 8 in counts, counts
    assert counts.index(8) > counts.index(4) and result.max_users == 8
    log = (run / "locust" / "master.log").read_text()
    # Users *and* spawn rate doubled (the shape's tick, as Locust applied it).
    assert "Shape test updating to 4 users at 4.00 spawn rate" in log
    assert "Shape test updating to 8 users at 8.00 spawn rate" in log


def test_shape_switch_by_env(intake: FakeIntake, retailers_file: Path, tmp_path: Path) -> None:
    """``DRILL_SHAPE`` with the plain locustfile: the spike shape takes the users to 3x and back."""
    run = tmp_path / "run"
    result = run_locust(
        INTAKE,
        intake.url,
        run,
        users=2,
        spawn_rate=2,
        duration=5,
        shape="spike",
        env={
            "DRILL_RETAILERS": str(retailers_file),
            "DRILL_SHAPE_SPIKE_AT": "1.5",
            "DRILL_SHAPE_SPIKE_FOR": "2",
            "DRILL_SHAPE_FACTOR": "3",
            "DRILL_USER_RPS": "5",
        },
    )
    assert result.exit_code == 0
    counts = [h.user_count for h in result.history]
    assert result.max_users == 6, counts
    assert counts[-1] == 2 or counts[-2] == 2, counts


def test_distributed_master_and_two_workers(intake: FakeIntake, retailers_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_locust(
        INTAKE,
        intake.url,
        run,
        users=8,
        spawn_rate=8,
        duration=4,
        workers=2,
        env={"DRILL_RETAILERS": str(retailers_file), "DRILL_USER_RPS": "20"},
    )
    log = (run / "locust" / "master.log").read_text()
    assert result.exit_code == 0, log[-3000:]
    assert result.worker_exit_codes == (0, 0)
    assert "2 workers connected" in log or "(index 1)" in log, log[-2000:]
    # The master aggregates both workers: its totals equal what the server saw.
    assert result.requests == intake.requests > 0
    # Two workers wrote their own ledger part (two pids), merged into one file.
    records = _ledger(result)
    assert len({r["req"].split(":")[0] for r in records if "req" in r}) == 2
    _check_ledger_against_server(records, intake)
