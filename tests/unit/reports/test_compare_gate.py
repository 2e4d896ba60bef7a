"""``drill compare BASE NEW`` as a regression gate: exit 1 when NEW regressed, 3 when a run is
INCONCLUSIVE, 2 on a usage error, 0 otherwise — on hand-written report.json fixtures (the fields
``reports.audit`` writes; the synthetic-run end-to-end case is in test_report_compare.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reports.cli import app
from reports.compare import DEFAULT_TOLERANCE, compare, gate, regressions

runner = CliRunner()


def report(**over: Any) -> dict[str, Any]:
    """A PASS report.json with every gated figure; ``over`` replaces dotted paths (``totals.lost=1``)."""
    doc: dict[str, Any] = {
        "schema_version": 3,
        "verdict": "PASS",
        "totals": {"lost": 0, "unexpected": 0, "duplicated_effects": 0, "failed_but_observed": 0,
                   "acknowledged": 1000, "ok": 1000},
        "service": {"counts": {"delivered": 990, "abandoned": 0}},
        "checks": [{"name": "slo[intake_p99_ms]", "status": "passed"},
                   {"name": "slo[availability]", "status": "passed"}],
        "performance": {
            "intake": {"availability": 0.9995, "latency_ms": {"p50": 20.0, "p99": 200.0}},
            "time_availability": {"availability": 0.999},
            "end_to_end": {"accepted_to_booked_s": {"p50": 2.0, "p99": 8.0},
                           "accepted_to_delivered_s": {"p50": 30.0, "p99": 60.0}},
            "faults": [{"failover_s": 4.0}],
        },
    }  # fmt: skip
    for dotted, value in over.items():
        *parents, leaf = dotted.split(".")
        node = doc
        for key in parents:
            node = node[key]
        node[leaf] = value
    return copy.deepcopy(doc)


def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / name / "audit" / "report.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    return path.parent.parent


def test_identical_runs_do_not_regress() -> None:
    assert gate(report(), report()).exit_code == 0
    assert gate(report(), report()).line() == "NO REGRESSION"


@pytest.mark.parametrize(
    ("new", "why"),
    [
        (report(verdict="FAIL"), "verdict went from PASS to FAIL"),
        (report(**{"totals.lost": 3}), "lost went from 0 to 3"),
        (report(**{"service.counts.abandoned": 2}), "abandoned went from 0 to 2"),
        (report(**{"totals.duplicated_effects": 1}), "duplicated_effects went from 0 to 1"),
        (report(**{"totals.unexpected": 1}), "unexpected went from 0 to 1"),
        (
            report(
                checks=[
                    {"name": "slo[intake_p99_ms]", "status": "failed"},
                    {"name": "slo[availability]", "status": "passed"},
                ]
            ),
            "slo[intake_p99_ms] went from passed to failed",
        ),
        (
            report(**{"performance.intake.latency_ms": {"p50": 20.0, "p99": 300.0}}),
            "intake p99 went from 200.0 ms to 300.0 ms (+50%, tolerance 20%)",
        ),
        (
            report(**{"performance.faults": [{"failover_s": 9.0}]}),
            "slowest failover went from 4.000 s to 9.000 s",
        ),
    ],
)
def test_each_kind_of_regression_is_named(new: dict[str, Any], why: str) -> None:
    result = gate(report(), new)
    assert result.exit_code == 1
    assert any(reason.startswith(why) for reason in result.reasons), result.reasons
    assert result.line().startswith("REGRESSED: ")


def test_latency_within_the_tolerance_and_improvements_pass() -> None:
    slower = report(
        **{"performance.intake.latency_ms": {"p50": 20.0, "p99": 200.0 * (1 + DEFAULT_TOLERANCE) - 1}}
    )
    assert gate(report(), slower).exit_code == 0
    # Better on every count (the baseline was the broken one): not a regression.
    broken = report(verdict="FAIL", **{"totals.lost": 5, "performance.faults": [{"failover_s": 20.0}]})
    assert gate(broken, report()).exit_code == 0
    # A p50 is shown, not gated.
    assert (
        gate(report(), report(**{"performance.intake.latency_ms": {"p50": 90.0, "p99": 200.0}})).exit_code
        == 0
    )


def test_tolerance_moves_the_latency_threshold() -> None:
    rows = compare(
        report(), report(**{"performance.end_to_end.accepted_to_booked_s": {"p50": 2.0, "p99": 12.0}})
    )
    assert regressions(rows, tolerance=0.6) == []
    assert regressions(rows, tolerance=0.4) == [
        "accepted→booked p99 went from 8.000 s to 12.000 s (+50%, tolerance 40%)"
    ]
    with pytest.raises(ValueError, match="tolerance"):
        regressions(rows, tolerance=-0.1)


def test_missing_figures_are_not_compared() -> None:
    old = {"schema_version": 1, "verdict": "PASS", "totals": {"lost": 0}, "checks": []}
    assert gate(old, report()).exit_code == 0
    assert gate(report(), old).exit_code == 0  # nothing B has not measured counts against it


def test_an_inconclusive_run_proves_nothing() -> None:
    result = gate(report(), report(verdict="INCONCLUSIVE", **{"totals.lost": 3}))
    assert result.exit_code == 3
    assert result.line() == "INCONCLUSIVE: run B is INCONCLUSIVE: rerun it"
    assert gate(report(verdict="INCONCLUSIVE"), report()).exit_code == 3


def test_command_exit_codes(tmp_path: Path) -> None:
    base = write(tmp_path, "base", report())
    same = write(tmp_path, "same", report())
    worse = write(tmp_path, "worse", report(**{"performance.intake.latency_ms": {"p50": 20.0, "p99": 260.0}}))
    odd = write(tmp_path, "odd", report(verdict="INCONCLUSIVE"))

    ok = runner.invoke(app, ["compare", str(base), str(same)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines()[-1] == "NO REGRESSION"

    regressed = runner.invoke(app, ["compare", str(base), str(worse)])
    assert regressed.exit_code == 1, regressed.output
    assert regressed.output.splitlines()[-1].startswith(
        "REGRESSED: intake p99 went from 200.0 ms to 260.0 ms"
    )
    # +30 % is within a 0.5 tolerance.
    assert runner.invoke(app, ["compare", str(base), str(worse), "--tolerance", "0.5"]).exit_code == 0

    assert runner.invoke(app, ["compare", str(base), str(odd)]).exit_code == 3
    assert runner.invoke(app, ["compare", str(base), str(tmp_path / "nowhere")]).exit_code == 2
    assert runner.invoke(app, ["compare", str(base), str(same), "--tolerance", "-1"]).exit_code == 2
