"""The ``audit`` and ``bench`` commands end to end on temporary run directories."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reports.audit import AuditReport, audit_run
from reports.bench import bench_audit, generate_ops
from reports.cli import app

runner = CliRunner()


def make_run(tmp_path: Path, ledger: list[dict[str, Any]]) -> Path:
    run = tmp_path / "run"
    (run / "simulator").mkdir(parents=True)
    (run / "simulator" / "ledger.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ledger))
    return run


def order(ref: str, *, terminal: bool = True) -> list[dict[str, Any]]:
    """One order's ledger records, in the shape simulator/ledger.py documents."""

    def notify(state: str, t: float) -> dict[str, Any]:
        return {
            "t": t,
            "kind": "notification_received",
            "order_ref": ref,
            "audience": "customer",
            "channel": "sms",
            "state": state,
            "to": "+447700900786",
            "delivery_id": f"d-{ref}",
        }

    records: list[dict[str, Any]] = [
        {"t": 1.0, "kind": "order_sent", "order_ref": ref, "req": 1, "attempt": 1, "channel": "rest"},
        {"t": 1.2, "kind": "order_answer", "order_ref": ref, "req": 1, "outcome": "accepted",
         "delivery_id": f"d-{ref}"},
        {"t": 5.0, "kind": "booking_answer_sent", "order_ref": ref, "type": "booking_accepted",
         "courier": "dashly", "courier_job_id": f"job-{ref}"},
        notify("booked", 6.0),
    ]  # fmt: skip
    if terminal:
        records.append(notify("delivered", 9.0))
    return records


def test_audit_passes_a_clean_run_and_writes_three_files(tmp_path: Path) -> None:
    run = make_run(tmp_path, [*order("A"), *order("B")])
    result = runner.invoke(app, ["audit", str(run)])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(
        "VERDICT: PASS lost=0 abandoned=0 unexpected=0 duplicated_effects=0 failed_but_observed=0"
    )
    # 8 loss checks pass; the SLO checks follow (no latency_ms and no fault here: 2 of them skipped).
    assert "checks=14/16 skipped=2" in last
    assert "failed=" not in last
    assert sorted(p.name for p in (run / "audit").iterdir()) == ["junit.xml", "report.json", "summary.md"]


def test_audit_fails_a_run_with_a_lost_order(tmp_path: Path) -> None:
    run = make_run(tmp_path, [*order("A"), *order("B", terminal=False)])
    result = runner.invoke(app, ["audit", str(run), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "VERDICT: FAIL lost=1 " in result.output
    assert "accepted_orders_terminal_or_explained" in result.output
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["flows"]["orders"]["samples"]["lost"] == ["B"]


def test_audit_of_an_empty_run_fails_and_of_a_missing_dir_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["audit", str(empty)])
    assert result.exit_code == 3  # no evidence at all: INCONCLUSIVE, not the platform's failure
    assert "HARNESS input" in result.output
    assert runner.invoke(app, ["audit", str(tmp_path / "nope")]).exit_code == 2


def test_audit_strict_fails_when_evidence_is_missing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "ops.jsonl").write_text('{"kind":"attempt","id":"m","flow":"q"}\n{"kind":"ack","id":"m","flow":"q"}\n'
                                   '{"kind":"observe","id":"m","flow":"q"}\n')  # fmt: skip
    assert runner.invoke(app, ["audit", str(run)]).exit_code == 0
    strict = runner.invoke(app, ["audit", str(run), "--strict"])
    assert strict.exit_code == 1
    assert "SKIPPED" in strict.output


def test_audit_reads_sqlite_and_chains_from_audit_json(tmp_path: Path) -> None:
    run = make_run(tmp_path, [*order("A"), *order("B")])
    (run / "system").mkdir()
    with sqlite3.connect(run / "system" / "platform.db") as conn:
        conn.executescript(
            "CREATE TABLE outbox (id TEXT); CREATE TABLE inbox (id TEXT);"
            "INSERT INTO outbox VALUES ('A'), ('B'); INSERT INTO inbox VALUES ('A');"
        )
    config = {
        "sqlite": [
            {
                "path": "system/platform.db",
                "tables": [
                    {"table": "outbox", "id_column": "id", "kind": "ack", "flow": "dispatch"},
                    {"table": "inbox", "id_column": "id", "kind": "observe", "flow": "dispatch"},
                ],
            }
        ],
        "chains": [{"name": "order_to_dispatch", "entry": "orders", "exit": "dispatch"}],
    }
    (run / "audit.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["audit", str(run)])
    assert result.exit_code == 1, result.output
    doc = json.loads((run / "audit" / "report.json").read_text())
    assert doc["flows"]["dispatch"]["samples"]["lost"] == ["B"]
    assert doc["chains"]["order_to_dispatch"]["counts"]["lost"] == 1
    assert {s["reader"] for s in doc["sources"]} == {"simulator-ledger", "sqlite"}


def test_audit_rejects_a_bad_audit_json(tmp_path: Path) -> None:
    run = make_run(tmp_path, order("A"))
    (run / "audit.json").write_text(json.dumps({"invariants": {"orders_flowz": "x"}}))
    result = runner.invoke(app, ["audit", str(run)])
    assert result.exit_code == 2
    assert "bad" in result.output


def test_bench_command_small(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "--n", "3000", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "audit of 3,000 messages" in result.output
    assert "VERDICT: FAIL lost=5 " in result.output  # the generator injects 5 lost messages
    assert list(tmp_path.iterdir()) == []  # the temporary ledger is removed
    over = runner.invoke(app, ["bench", "--n", "3000", "--budget", "0", "--workdir", str(tmp_path)])
    assert over.exit_code == 1
    assert "OVER" in over.output


def test_generator_injects_what_it_claims(tmp_path: Path) -> None:
    injected = generate_ops(tmp_path / "ops.jsonl", 5000, lost=3)
    assert injected.counts["lost"] == 3
    lines = (tmp_path / "ops.jsonl").read_text().splitlines()
    assert len(lines) == injected.records
    kinds = {json.loads(line)["kind"] for line in lines}
    assert kinds == {"attempt", "ack", "fail", "unknown", "observe", "parked", "inflight", "effect"}


def test_bench_refuses_an_audit_that_miscounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def miscounting(run_dir: Path, config: Any) -> AuditReport:
        report = audit_run(run_dir, config)
        report.flows["orders"].lost.clear()
        return report

    monkeypatch.setattr("reports.bench.audit_run", miscounting)
    with pytest.raises(AssertionError, match="lost"):
        bench_audit(2000, workdir=tmp_path)
