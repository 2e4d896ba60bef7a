"""Faults as they happened: planned duration, apply / held / undo times and their flags, from the chaos
journal into report.json, summary.md and report.html — and journals from before those fields still read.

Every expected number is worked out by hand from the journal lines in the test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from reports.audit import audit_run
from reports.faults import SLOW_S, FaultWindow, fault_windows
from reports.synthetic import SyntheticFault, write_synthetic_run
from reports.writers.fault_rows import FAILED_MARK, NOT_MEASURED, SLOW_MARK, fault_timing
from reports.writers.html import report_html
from reports.writers.markdown import summary_markdown


def line(ts: float, event: str, fid: str = "f", **fields: Any) -> dict[str, Any]:
    return {
        "ts": ts,
        "event": event,
        "fault_id": fid,
        "kind": "kill_node",
        "target": "most-leaders",
        **fields,
    }


def one(records: list[dict[str, Any]], run_end: float | None = 100.0) -> FaultWindow:
    [w] = fault_windows(records, run_end)
    return w


def test_a_slow_undo_is_told_apart_from_a_long_fault() -> None:
    # The demo's kill: planned 2 s, in effect after 0.125 s, undo started 2 s later, node back 14 s later.
    w = one([
        line(10.0, "apply", planned_s=2.0, undo={"node": 1}),
        line(10.125, "applied"),
        line(12.125, "undoing", reason=""),
        line(26.125, "undo", detail={"restarted": 1}),
    ])  # fmt: skip
    assert w.planned_s == 2.0
    assert w.apply_s == pytest.approx(0.125)
    assert w.held_s == pytest.approx(2.0)
    assert w.undo_s == pytest.approx(14.0)
    assert w.in_effect_s == pytest.approx(16.0)
    assert (w.end - w.start) == pytest.approx(16.125)  # duration_s: the whole window, as before
    assert w.slow_undo and not w.slow_apply


@pytest.mark.parametrize(
    ("planned", "undo", "slow"),
    [
        (2.0, 14.0, True),  # far longer than planned
        (30.0, 14.0, False),  # a 30-s fault whose undo took 14 s: not longer than planned
        (None, SLOW_S + 1, True),  # an instant fault (a kill): any undo over SLOW_S
        (None, SLOW_S, False),  # not *over* the threshold
        (0.5, 4.0, False),  # longer than planned, but a node restart takes that long anyway
    ],
)
def test_slow_undo_rule(planned: float | None, undo: float, slow: bool) -> None:
    w = one([
        line(0.0, "apply", planned_s=planned), line(0.1, "applied"),
        line(1.0, "undoing"), line(1.0 + undo, "undo"),
    ])  # fmt: skip
    assert w.slow_undo is slow
    assert (SLOW_MARK in fault_timing(0, w).undo) is slow


def test_a_journal_from_before_planned_s_and_undoing_reads_as_not_measured() -> None:
    # Lines as the demo run of 2026-12-07 wrote them (no planned_s, no undoing).
    w = one([
        line(1796605691.9793825, "apply", params={}, undo={"node": 1}),
        line(1796605692.104707, "applied", detail={"node": 1, "pid": 2868}),
        line(1796605708.0548716, "undo", detail={"restarted": 1, "seconds": 13.94}, reason=""),
    ])  # fmt: skip
    assert (w.planned_s, w.undoing, w.held_s, w.undo_s) == (None, None, None, None)
    assert w.in_effect_s == pytest.approx(15.95, abs=1e-3)
    assert not w.slow_undo
    t = fault_timing(5, w)
    assert (t.marker, t.planned, t.held, t.undo, t.in_effect) == (
        "6",
        "—",
        NOT_MEASURED,
        NOT_MEASURED,
        "16.0 s",
    )
    assert t.flag == "" and t.notes == ()


def test_an_undo_that_failed_then_healed_counts_from_the_first_undoing() -> None:
    w = one([
        line(0.0, "apply", planned_s=5.0), line(0.2, "applied"),
        line(5.2, "undoing", reason=""), line(65.2, "undo_failed", error="timeout"),
        line(70.0, "undoing", reason="heal"), line(80.0, "undo", reason="heal"),
    ])  # fmt: skip
    assert w.undone and w.undo_failed
    assert w.held_s == pytest.approx(5.0)
    assert w.undo_s == pytest.approx(74.8)
    t = fault_timing(0, w)
    assert t.flag == "failed"
    assert any(FAILED_MARK in n and "undone later" in n for n in t.notes)


def test_an_undo_that_started_and_never_ended_leaves_the_fault_open_to_the_run_end() -> None:
    w = one([line(0.0, "apply", planned_s=3.0), line(0.1, "applied"), line(3.1, "undoing")], run_end=50.0)
    assert not w.undone and w.end == 50.0
    assert w.held_s == pytest.approx(3.0) and w.undo_s is None
    t = fault_timing(0, w)
    assert (t.undo, t.flag) == ("never undone", "failed")
    assert t.in_effect.endswith("(to the run's end)")


def test_an_apply_that_failed_was_never_in_effect_but_its_undo_is_timed() -> None:
    w = one(
        [line(0.0, "apply", planned_s=3.0), line(0.5, "undoing", reason="apply failed: x"), line(0.7, "undo")]
    )
    assert (w.applied, w.apply_s, w.held_s, w.in_effect_s) == (None, None, None, None)
    assert w.undo_s == pytest.approx(0.2)
    assert "never in effect" in " ".join(fault_timing(0, w).notes)


@pytest.mark.parametrize("planned", ["3", -1, True, None, {"s": 3}])
def test_a_planned_s_that_is_not_a_non_negative_number_is_null(planned: object) -> None:
    assert one([line(0.0, "apply", planned_s=planned), line(1.0, "undo")]).planned_s is None


def test_report_json_summary_and_html_carry_the_timing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    faults = (
        SyntheticFault("kill_node", "most-leaders", 5.0, 16.1, 1.0, planned_s=2.0, undo_s=14.0),
        SyntheticFault("kill_replica", "quoting#0", 25.0, 1.0, 0.0, undo_s=0.9),
    )
    write_synthetic_run(run, seconds=40, rate=5, faults=faults)
    report = audit_run(run)
    [kill, replica] = report.to_dict()["performance"]["faults"]
    assert kill["marker"] == 1 and replica["marker"] == 2
    assert kill["planned_s"] == 2.0 and replica["planned_s"] is None
    assert (kill["apply_s"], kill["held_s"], kill["undo_s"]) == (0.05, 2.05, 14.0)
    assert kill["in_effect_s"] == 16.05 and kill["duration_s"] == 16.1
    assert kill["undoing"] == pytest.approx(kill["applied"] + 2.05)
    assert (kill["slow_undo"], kill["slow_apply"], replica["slow_undo"]) == (True, False, False)
    json.dumps(report.to_dict(), allow_nan=False)

    md = summary_markdown(report)
    header = next(ln for ln in md.splitlines() if ln.startswith("| # |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[4:9] == ["planned", "apply", "held", "undo", "in effect"]
    row = next(ln for ln in md.splitlines() if ln.startswith("| 1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:9] == ["2.0 s", "50 ms", "2.0 s", f"14.0 s {SLOW_MARK}", "16.0 s"]
    assert "slow undo: 14.0 s (planned 2.0 s)" in cells[-1]
    replica_row = next(ln for ln in md.splitlines() if ln.startswith("| 2 |"))
    assert SLOW_MARK not in replica_row

    html = report_html(report, plots=False)
    table = re.search(r'<table id="faults">.*?</table>', html, re.S)
    assert table is not None
    rows = re.findall(r"<tr class=\"([a-z]*)\">(.*?)</tr>", table.group(0), re.S)
    assert [flag for flag, _ in rows] == ["slow", ""]
    first = re.findall(r"<td[^>]*>(.*?)</td>", rows[0][1], re.S)
    assert "14.0 s" in first[8] and SLOW_MARK in first[8] and first[5] == "2.0 s"
