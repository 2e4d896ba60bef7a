"""Ledger rules, the retailers/secrets file, the generator benchmark."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from simulator.bench import bench
from simulator.config import load_scenario
from simulator.ledger import Ledger, order_outcomes
from simulator.sender import classify
from simulator.world import SecretsError, apply_secrets_file, build_retailers, write_retailers_file


def test_ledger_lines_and_outcome_rule() -> None:
    buf = io.StringIO()
    led = Ledger(buf, clock=lambda: 2.0)
    led.write("order_answer", "a", outcome="unknown")
    led.write("duplicate_answer", "a", outcome="accepted")
    led.write("order_answer", "b", outcome="rejected")
    led.write("order_answer", "c", outcome="unknown")
    led.write("order_answer", "c", outcome="rejected")
    recs = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert all(set(r) >= {"t", "kind", "order_ref"} for r in recs)
    assert order_outcomes(recs) == {"a": "accepted", "b": "rejected", "c": "unknown"}


@pytest.mark.parametrize(("status", "outcome"), [(200, "accepted"), (202, "accepted"), (401, "rejected"),
                                                  (409, "rejected"), (422, "rejected"), (500, "unknown"),
                                                  (502, "unknown"), (301, "unknown")])  # fmt: skip
def test_status_classification(status: int, outcome: str) -> None:
    assert classify(status) == outcome


def test_secrets_file_round_trip_and_errors(tmp_path: Path) -> None:
    sc = load_scenario("doubles")
    rs = build_retailers(1, sc)
    assert rs[-1].name == "bigco" and rs[-1].id.startswith("n")
    path = tmp_path / "retailers.json"
    write_retailers_file(path, 1, rs)
    assert path.stat().st_mode & 0o077 == 0
    doc = json.loads(path.read_text())
    doc["retailers"][0]["api_key"] = "sk_live_other"
    path.write_text(json.dumps(doc))
    replaced = apply_secrets_file(path, rs)
    assert replaced[0].credentials.api_key == "sk_live_other" and replaced[1] == rs[1]
    doc["retailers"].pop()
    path.write_text(json.dumps(doc))
    with pytest.raises(SecretsError, match="no credentials"):
        apply_secrets_file(path, rs)
    # Another seed, other secrets: nothing fixed in the code.
    assert build_retailers(2, sc)[0].credentials.api_key != rs[0].credentials.api_key


def test_generation_sustains_500_orders_per_second() -> None:
    figure = bench(1.0)
    print(f"simulator generation: {figure:,.0f} orders/s")
    assert figure >= 500
