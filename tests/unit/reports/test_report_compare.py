"""``report`` (rebuild every file, the plain-words verdict, report.json v2) and ``compare`` (deltas)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reports.audit import SCHEMA_VERSION, audit_run
from reports.cli import app
from reports.compare import compare, load_report, render
from reports.story import headline, pct
from reports.synthetic import SyntheticFault, write_synthetic_run
from reports.writers.html import report_html

runner = CliRunner()

ONE_FAULT = (SyntheticFault("kill", "node:1", 10.0, 5.0, 1.0),)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("runs")
    a, b = base / "a", base / "b"
    write_synthetic_run(a, seconds=30, rate=10, faults=ONE_FAULT, seed=3)
    second = SyntheticFault("partition", "isolate:2", 20.0, 5.0, 2.0)
    write_synthetic_run(b, seconds=30, rate=10, faults=(*ONE_FAULT, second), seed=3, lost=2)
    for run in (a, b):
        assert runner.invoke(app, ["audit", str(run)]).exit_code in (0, 1)
    return a, b


def test_report_rebuilds_every_file_and_prints_the_plain_verdict(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_synthetic_run(run, seconds=30, rate=10, faults=ONE_FAULT)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output  # the files were written: 0 even though SLOs failed
    names = sorted(p.name for p in (run / "audit").iterdir())
    assert names == ["junit.xml", "report.html", "report.json", "summary.md"]
    assert "No accepted order was lost" in result.output
    assert "across 1 fault; the slowest recovery took" in result.output
    checked = runner.invoke(app, ["report", str(run), "--check"])
    doc = json.loads((run / "audit" / "report.json").read_text())
    assert checked.exit_code == doc["exit_code"] == (1 if doc["verdict"] == "FAIL" else 0)


def test_report_json_v2_has_the_documented_sections(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_synthetic_run(run, seconds=30, rate=10, faults=ONE_FAULT)
    doc = audit_run(run).to_dict()
    assert doc["schema_version"] == SCHEMA_VERSION == 3
    perf = doc["performance"]
    assert set(perf) >= {"measured", "intake", "time_availability", "end_to_end", "faults", "series"}
    assert set(doc["slo"]) >= {"availability", "intake_p99_ms", "accepted_to_delivered_p99_s", "failover_s"}
    [f] = perf["faults"]
    assert f["kind"] == "kill" and f["target"] == "node:1" and f["undone"] is True
    assert f["failover_s"] is not None and f["failover_s"] >= 1.0  # the outage lasted 1 s
    assert f["drain"]["measured"] is True
    series = perf["series"]
    n = len(series["requests"])
    assert all(len(series[k]) == n for k in ("accepted_per_s", "delivered_per_s", "p99_ms", "good"))
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN leaked from numpy


def test_headline_says_lost_when_an_order_was_lost(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_synthetic_run(run, seconds=20, rate=5, faults=(), lost=1)
    report = audit_run(run)
    sentences = headline(report)
    assert sentences[0] == (
        "FAIL: the platform broke 2 promises — 1 accepted order was LOST (total_queue[orders]); 1 accepted"
        " order never reached an end nor was explained (accepted_orders_terminal_or_explained)."
    )
    assert sentences[1].startswith("Served 98.98% of the 99 serviceable orders (99 accepted): 98 delivered")
    assert sentences[2] == "1 accepted order was LOST."
    assert "with no fault injected" in sentences[3]


@pytest.mark.parametrize(
    ("x", "text"), [(1.0, "100%"), (0.99996, "99.99%"), (0.9995, "99.95%"), (0.5, "50%"), (None, "—")]
)
def test_percent_is_floored_so_a_failure_never_reads_as_100(x: float | None, text: str) -> None:
    assert pct(x) == text


def test_html_without_plots_still_has_verdict_and_tables(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_synthetic_run(run, seconds=20, rate=5, faults=ONE_FAULT)
    html = report_html(audit_run(run), plots=False)
    assert "No accepted order was lost" in html
    assert 'id="faults"' in html and 'id="checks"' in html and 'id="flows"' in html
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)  # nothing external


def test_compare_shows_deltas(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    rows = {r.label: r for r in compare(load_report(a), load_report(b))}
    assert rows["lost"].cells() == ("lost", "0", "2", "+2")
    assert rows["faults"].cells()[1:] == ("1", "2", "+1")
    assert rows["verdict"].cells()[1:] == ("FAIL", "FAIL", "=")  # a 1 s outage in 30 s misses 99.9 %
    avail = rows["availability (requests)"]
    assert avail.delta is not None and avail.delta < 0  # a second, longer outage in B
    assert re.fullmatch(r"-\d+\.\d{3} pp", avail.cells()[3])
    assert rows["slowest failover"].delta is not None and rows["slowest failover"].delta > 0.5
    assert rows["intake p99"].kind == "ms"
    assert "slo[availability]" in rows


def test_compare_command_prints_a_table_and_gates_on_the_loss(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    result = runner.invoke(app, ["compare", str(a), str(b / "audit" / "report.json")])
    assert result.exit_code == 1, result.output  # B lost 2 orders A did not
    lines = result.output.splitlines()
    assert lines[-1].startswith("REGRESSED: lost went from 0 to 2")
    assert "Δ (B − A)" in lines[0]
    lost = next(line for line in lines if re.match(r"^\* lost\s", line))
    assert lost.split()[-3:] == ["0", "2", "+2"]
    assert re.search(r"^  unexpected\s+0\s+0\s+=$", result.output, re.M)


def test_compare_reads_a_schema_1_report_and_a_missing_one_is_a_usage_error(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    old = {"schema_version": 1, "verdict": "PASS", "totals": {"lost": 0}, "checks": []}
    (tmp_path / "old.json").write_text(json.dumps(old))
    text = render(compare(old, load_report(two_runs[1])))
    assert re.search(r"availability \(requests\)\s+—\s+\d", text)
    missing = runner.invoke(app, ["compare", str(tmp_path / "nowhere"), str(two_runs[0])])
    assert missing.exit_code == 2


def test_audit_html_flag_and_an_ops_only_run_renders_without_plots(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    ops = [{"kind": "attempt", "id": "m"}, {"kind": "ack", "id": "m"}, {"kind": "observe", "id": "m"}]
    (run / "ops.jsonl").write_text("".join(json.dumps(o) + "\n" for o in ops))
    result = runner.invoke(app, ["audit", str(run), "--html"])
    assert result.exit_code == 0, result.output
    html = (run / "audit" / "report.html").read_text()
    assert "No acknowledged message was lost." in html
    assert "No time series: no intake answer in the run" in html
    assert "<img" not in html
