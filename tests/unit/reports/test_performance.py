"""Availability, latency, fault windows, failover, drain and the SLO checks, on hand-made run dirs.

Every expected number here is worked out by hand from the records in the test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from reports.audit import audit_run
from reports.cli import app
from reports.faults import (
    JOURNAL_PATH,
    QUEUES_PATH,
    FaultWindow,
    drain_time,
    fault_windows,
    read_journal_records,
    read_queue_samples,
)
from reports.ops import Collector
from reports.performance import measure, percentiles
from reports.readers.ledger import read_ledger
from reports.slo import SloConfig, load_slo
from reports.timeline import OK, REJECTED, UNAVAILABLE, Timeline, classify_answer

runner = CliRunner()


def sent(ref: str, t: float, req: int) -> dict[str, Any]:
    return {"t": t, "kind": "order_sent", "order_ref": ref, "req": req, "attempt": 1, "channel": "rest"}


def answer(
    ref: str, t_sent: float, outcome: str, latency_ms: float, status: int | None, req: int = 0
) -> dict[str, Any]:
    """An answer that arrives ``latency_ms`` after ``t_sent`` (so its send time is exactly t_sent)."""
    return {
        "t": t_sent + latency_ms / 1000,
        "kind": "order_answer",
        "order_ref": ref,
        "req": req,
        "outcome": outcome,
        "http_status": status,
        "delivery_id": f"d-{ref}" if outcome == "accepted" else None,
        "latency_ms": latency_ms,
    }


def notify(ref: str, t: float, state: str) -> dict[str, Any]:
    return {
        "t": t,
        "kind": "notification_received",
        "order_ref": ref,
        "audience": "customer",
        "channel": "sms",
        "state": state,
        "to": "+447700900000",
        "delivery_id": f"d-{ref}",
    }


def request(ref: str, t: float, outcome: str = "accepted", latency_ms: float = 20.0, status: int | None = 202,
            *, deliver_after: float | None = 10.0) -> list[dict[str, Any]]:  # fmt: skip
    """One intake request and, when accepted, the order's delivery notification (so nothing is lost)."""
    if outcome == "rejected" and status == 202:
        status = 422
    if outcome == "unknown" and status == 202:
        status = 503
    recs = [sent(ref, t, 1), answer(ref, t, outcome, latency_ms, status)]
    if outcome == "accepted" and deliver_after is not None:
        recs.append(notify(ref, t + deliver_after, "delivered"))
    return recs


def make_run(
    tmp_path: Path, records: list[dict[str, Any]], journal: list[dict[str, Any]] | None = None
) -> Path:
    run = tmp_path / "run"
    (run / "simulator").mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: r["t"])
    (run / "simulator" / "ledger.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if journal:
        (run / JOURNAL_PATH).parent.mkdir(parents=True, exist_ok=True)
        (run / JOURNAL_PATH).write_text("".join(json.dumps(r) + "\n" for r in journal))
    return run


def fault(fid: str, apply: float, undo: float | None, applied: float | None = None) -> list[dict[str, Any]]:
    recs = [{"ts": apply, "event": "apply", "fault_id": fid, "kind": "kill", "target": "node:2", "undo": {}}]
    if applied is not None:
        recs.append({"ts": applied, "event": "applied", "fault_id": fid, "kind": "kill", "detail": {}})
    if undo is not None:
        recs.append({"ts": undo, "event": "undo", "fault_id": fid, "kind": "kill", "detail": {}})
    return recs


# --- the request rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status", "klass"),
    [
        ("accepted", 202, OK),
        ("accepted", 200, OK),
        ("rejected", 422, REJECTED),
        ("rejected", 400, REJECTED),
        ("rejected", None, REJECTED),
        ("rejected", 429, UNAVAILABLE),  # back-pressure: "not now" is unavailability
        ("rejected", 408, UNAVAILABLE),
        ("unknown", 503, UNAVAILABLE),
        ("unknown", None, UNAVAILABLE),  # timeout / refused
    ],
)
def test_answer_classes(outcome: str, status: int | None, klass: int) -> None:
    assert classify_answer(outcome, status) == klass


def test_request_availability_is_ok_over_ok_plus_unavailable_exactly(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = []
    for i in range(7):
        records += request(f"ok{i}", 100.0 + i * 0.1)
    records += request("u1", 101.0, "unknown", 2000.0, None)
    records += request("u2", 101.1, "unknown", 30.0, 503)
    records += request("r1", 101.2, "rejected", 15.0, 422)
    records += request("t1", 101.3, "rejected", 15.0, 429)
    perf = audit_run(make_run(tmp_path, records)).performance
    assert perf is not None and perf.measured
    i = perf.intake
    assert (i.requests, i.ok, i.rejected, i.unavailable, i.eligible) == (11, 7, 1, 3, 10)
    assert i.availability == pytest.approx(0.7)
    assert perf.statuses == {"2xx": 7, "4xx": 2, "5xx": 1, "no answer": 1}


def test_time_availability_counts_good_one_second_windows(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = []
    # second 0: two fast successes -> good
    records += request("a0", 1000.1) + request("a1", 1000.5)
    # second 1: nothing sent -> empty, not counted
    # second 2: one success, one 503 -> error rate 50 % -> bad
    records += request("b0", 1002.1) + request("b1", 1002.2, "unknown", 10.0, 503)
    # second 3: a success answered in 600 ms -> p99 600 ms >= 500 -> bad
    records += request("c0", 1003.3, latency_ms=600.0)
    # second 4: a bad-input rejection only: the service answered, no error -> good
    records += request("d0", 1004.0, "rejected", 10.0, 422)
    perf = audit_run(make_run(tmp_path, records)).performance
    assert perf is not None
    ta = perf.time
    assert (ta.windows, ta.good, ta.empty) == (4, 2, 1)
    assert ta.availability == 0.5
    assert perf.series is not None
    assert perf.series.good[:5] == [True, None, False, False, True]


def test_per_second_percentiles_are_nearest_rank(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = []
    for k, ms in enumerate((40.0, 10.0, 30.0, 20.0)):  # all sent in second 0, out of order
        records += request(f"a{k}", 500.0 + k * 0.1, latency_ms=ms)
    records += request("b", 501.5, latency_ms=7.0)  # second 1: a single value is every percentile
    perf = audit_run(make_run(tmp_path, records)).performance
    assert perf is not None and perf.series is not None
    # n=4: p50 is value number ceil(2)=2 -> 20; p99 is value number ceil(3.96)=4 -> 40
    assert perf.series.p50_ms[:2] == [20.0, 7.0]
    assert perf.series.p99_ms[:2] == [40.0, 7.0]


def test_a_fault_window_has_its_own_availability_and_failover(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = []
    records += request("before", 5.0)  # outside the window
    records += request("w0", 10.05)  # sent before the fault took effect (10.1): not its failover
    records += request("w1", 10.2, "unknown", 2000.0, None)  # timed out
    records += request("w2", 10.5, "unknown", 10.0, 503)
    records += request("w3", 11.0, latency_ms=200.0)  # first success after the fault: answered 11.2
    records += request("w4", 12.0, "rejected", 10.0, 422)  # not counted
    records += request("w5", 13.0)
    records += request("after", 16.0)
    run = make_run(tmp_path, records, fault("f-1", 10.0, 15.0, applied=10.1))
    perf = audit_run(run).performance
    assert perf is not None
    [f] = perf.faults
    assert (f.window.start, f.window.end, f.window.applied, f.window.undone) == (10.0, 15.0, 10.1, True)
    assert (f.intake.requests, f.intake.ok, f.intake.unavailable, f.intake.rejected) == (6, 3, 2, 1)
    assert f.intake.availability == 0.6
    assert f.failover_s == pytest.approx(1.1)  # applied 10.1 -> first success answered at 11.2
    # overall: 5 ok of 7 eligible
    assert perf.intake.availability == pytest.approx(5 / 7)
    doc = f.to_dict()
    assert doc["failover_s"] == 1.1 and doc["duration_s"] == 5.0


def test_failover_is_none_when_nothing_succeeded_after_the_fault_and_the_slo_fails(tmp_path: Path) -> None:
    records = request("ok", 1.0) + request("x1", 10.5, "unknown", 10.0, 503) + request("x2", 11.0, "unknown")
    report = audit_run(make_run(tmp_path, records, fault("f-dead", 10.0, None)))
    perf = report.performance
    assert perf is not None
    [f] = perf.faults
    assert f.failover_s is None
    assert not f.window.undone  # never undone: open to the end of the run
    assert f.window.end == pytest.approx(11.0 + 0.02)  # the last answer the run saw
    check = next(c for c in report.checks if c.name == "slo[failover_s]")
    assert check.status == "failed" and "never recovered" in check.message
    assert report.exit_code == 1


def test_a_fault_after_the_last_request_is_not_measured_not_never_recovered(tmp_path: Path) -> None:
    records = request("ok", 1.0) + request("during", 10.5) + request("last", 12.0)
    late = fault("f-late", 20.0, 21.0)  # the chaos went on after the traffic ended
    report = audit_run(make_run(tmp_path, records, fault("f-1", 10.0, 11.0) + late))
    perf = report.performance
    assert perf is not None
    by_id = {f.window.fault_id: f for f in perf.faults}
    assert by_id["f-late"].traffic_after is False and by_id["f-late"].to_dict()["failover_measured"] is False
    assert by_id["f-1"].traffic_after is True
    assert set(perf.failover_values()) == {"f-1"}
    slowest = perf.slowest_recovery()
    assert slowest is not None and slowest.window.fault_id == "f-1"
    check = next(c for c in report.checks if c.name == "slo[failover_s]")
    assert check.status == "passed", check.message


def test_percentiles_are_nearest_rank() -> None:
    values = np.arange(1, 101, dtype=np.float64)  # 1..100
    assert percentiles(values) == {"count": 100, "p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert percentiles(np.array([7.0])) == {"count": 1, "p50": 7.0, "p90": 7.0, "p99": 7.0, "max": 7.0}
    assert percentiles(np.array([3.0, 1.0, 2.0, math.nan])) == {
        "count": 3, "p50": 2.0, "p90": 3.0, "p99": 3.0, "max": 3.0,
    }  # fmt: skip
    assert percentiles(np.empty(0))["p99"] is None


def test_end_to_end_latency_accepted_to_booked_and_delivered(tmp_path: Path) -> None:
    records = [
        sent("A", 1.0, 1), answer("A", 1.0, "accepted", 100.0, 202),  # accepted at 1.1
        {"t": 2.9, "kind": "booking_seen", "order_ref": "A", "courier": "c"},  # a request: not booked
        {"t": 3.1, "kind": "booking_answer_sent", "order_ref": "A", "type": "booking_accepted",
         "courier": "c", "courier_job_id": "j-A"},  # booked 2.0 s later
        notify("A", 4.0, "booked"),  # later evidence: the earliest wins
        notify("A", 11.1, "delivered"),  # delivered 10.0 s later
        sent("B", 2.0, 2), answer("B", 2.0, "accepted", 0.0, 202),  # accepted at 2.0
        {"t": 6.0, "kind": "booking_answer_sent", "order_ref": "B", "type": "booking_accepted",
         "courier": "c", "courier_job_id": "j-B"},  # booked 4.0 s later
        notify("B", 32.0, "delivered"),  # delivered 30.0 s later
    ]  # fmt: skip
    perf = audit_run(make_run(tmp_path, records)).performance
    assert perf is not None
    assert perf.accepted_to_booked == {"count": 2, "p50": 2.0, "p90": 4.0, "p99": 4.0, "max": 4.0}
    assert perf.accepted_to_delivered == {"count": 2, "p50": 10.0, "p90": 30.0, "p99": 30.0, "max": 30.0}
    assert perf.delivered_source == "customer notification"


def test_courier_status_is_the_delivered_time_only_without_notifications(tmp_path: Path) -> None:
    """Read through the real ledger reader: status_sent is a skipped kind, parsed for the timeline."""
    records = [
        sent("A", 1.0, 1), answer("A", 1.0, "accepted", 0.0, 202),
        {"t": 5.0, "kind": "status_sent", "order_ref": "A", "status": "pickup", "canonical": "picked_up"},
        {"t": 9.0, "kind": "status_sent", "order_ref": "A", "status": "dropoff", "canonical": "delivered"},
    ]  # fmt: skip
    run = make_run(tmp_path, records)
    timeline = Timeline()
    stats = read_ledger(run / "simulator" / "ledger.jsonl", Collector(), timeline)
    assert stats.ignored["status_sent"] == 2  # still counted as ignored kinds: not ops
    delivered, source = timeline.delivered()
    assert source == "courier status"
    assert delivered.tolist() == [9.0] and timeline.index == {"A": 0}
    perf = measure(timeline, [], None, SloConfig())
    assert perf.accepted_to_delivered["p50"] == 8.0


def test_courier_delivered_fast_path_slices_the_writers_exact_shape(tmp_path: Path) -> None:
    """The simulator's compact lines are sliced, others parsed: both give the same times."""
    compact = [
        {"t": 1.0, "kind": "order_answer", "order_ref": "A", "outcome": "accepted", "latency_ms": 0.0},
        {"t": 1.5, "kind": "order_answer", "order_ref": 'q"B', "outcome": "accepted", "latency_ms": 0.0},
        {"t": 7.25, "kind": "status_sent", "order_ref": "A", "canonical": "delivered"},
        {"t": 8.5, "kind": "status_sent", "order_ref": 'q"B', "canonical": "delivered"},  # escaped: parsed
        {"t": 9.0, "kind": "status_sent", "order_ref": "A", "canonical": "in_transit"},  # not a milestone
    ]
    path = tmp_path / "ledger.jsonl"
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in compact))
    timeline = Timeline()
    read_ledger(path, Collector(), timeline)
    delivered, _ = timeline.delivered()
    assert {ref: delivered[i] for ref, i in timeline.index.items()} == {"A": 7.25, 'q"B': 8.5}


# --- journal, queues, drain ----------------------------------------------------------------------------


def test_journal_windows_undo_failed_then_healed_and_cut_lines(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    lines = [
        json.dumps({"ts": 1.0, "event": "apply", "fault_id": "a", "kind": "pause", "target": "node:1"}),
        json.dumps({"ts": 1.2, "event": "applied", "fault_id": "a", "kind": "pause"}),
        json.dumps({"ts": 4.0, "event": "undo_failed", "fault_id": "a", "kind": "pause", "error": "x"}),
        json.dumps({"ts": 6.0, "event": "undo", "fault_id": "a", "kind": "pause"}),
        json.dumps({"ts": 2.0, "event": "apply", "fault_id": "b", "kind": "kill", "target": "node:3"}),
        json.dumps({"ts": 0.5, "event": "undo", "fault_id": "zzz", "kind": "kill"}),  # no apply: ignored
        '{"ts": 7.0, "event": "apply", "fault_id": "c", "ki',  # cut by a crash mid-write
    ]
    path.write_text("\n".join(lines) + "\n")
    records, stats = read_journal_records(path)
    assert (stats.present, stats.records, stats.malformed) == (True, 6, 1)
    a, b = fault_windows(records, run_end=20.0)
    assert (a.fault_id, a.start, a.applied, a.end, a.undone, a.undo_failed) == (
        "a",
        1.0,
        1.2,
        6.0,
        True,
        True,
    )
    assert (b.fault_id, b.start, b.end, b.undone) == ("b", 2.0, 20.0, False)
    assert b.label == "kill node:3"


def test_drain_time_from_queue_samples(tmp_path: Path) -> None:
    path = tmp_path / "queues.jsonl"
    samples = [(t, 4) for t in range(70, 100)]  # steady state: 4 messages
    # a dip during the fault (102) is not a drain: draining is measured from the heal (110)
    samples += [(100, 50), (102, 5), (105, 300), (110, 280), (111, 120), (112, 30), (113, 7), (114, 4)]
    path.write_text("".join(json.dumps({"t": t, "queue": "q", "messages": m}) + "\n" for t, m in samples))
    queues = read_queue_samples(path)
    window = FaultWindow("f", "kill", "node:1", 100.0, 110.0, undone=True)
    drain = drain_time(window, queues)
    # baseline 4 -> drained when depth <= 4 + max(4, 10) = 14: first at 113, i.e. 3 s after the heal
    assert (drain.measured, drain.seconds, drain.queue, drain.baseline, drain.peak) == (
        True,
        3.0,
        "q",
        4,
        300,
    )
    shorter = drain_time(FaultWindow("g", "kill", "", 100.0, 105.0, undone=True), read_queue_samples(path))
    assert shorter.seconds == 8.0  # from 105: 300, 280, 120, 30, 7 -> first <= 14 at 113
    missing = drain_time(window, read_queue_samples(tmp_path / "absent.jsonl"))
    assert not missing.measured and "not measured" in missing.reason


def test_a_queue_that_never_drains_is_reported_and_fails_the_drain_slo(tmp_path: Path) -> None:
    records = request("a", 100.0) + request("b", 120.0)
    run = make_run(tmp_path, records, fault("f-1", 101.0, 105.0))
    (run / QUEUES_PATH).parent.mkdir(parents=True)
    samples = [(95 + s, 0 if s < 6 else 500) for s in range(30)]
    (run / QUEUES_PATH).write_text(
        "".join(json.dumps({"t": t, "queue": "stuck", "messages": m}) + "\n" for t, m in samples)
    )
    (run / "slo.toml").write_text("drain_s = 60\n")
    report = audit_run(run)
    assert report.performance is not None
    [f] = report.performance.faults
    assert f.drain.measured and f.drain.seconds is None
    check = next(c for c in report.checks if c.name == "slo[drain_s]")
    assert check.status == "failed"


# --- SLO config and checks ---------------------------------------------------------------------------


def clean_run(tmp_path: Path, latency_ms: float) -> Path:
    records: list[dict[str, Any]] = []
    for i in range(20):
        records += request(f"o{i}", 1000.0 + i * 0.25, latency_ms=latency_ms)
        records.append(notify(f"o{i}", 1002.0 + i * 0.25, "booked"))
    return make_run(tmp_path, records)


def test_an_slo_breach_fails_its_check_and_flips_the_exit_code(tmp_path: Path) -> None:
    run = clean_run(tmp_path, latency_ms=150.0)
    passing = runner.invoke(app, ["audit", str(run)])
    assert passing.exit_code == 0, passing.output
    (run / "slo.toml").write_text("intake_p99_ms = 100\n")
    failing = runner.invoke(app, ["audit", str(run)])
    assert failing.exit_code == 1, failing.output
    assert "FAILED  slo[intake_p99_ms]: intake p99 latency 150.0 ms ≥ 100 ms" in failing.output
    assert (
        "lost=0 abandoned=0 unexpected=0 duplicated_effects=0" in failing.output
    )  # nothing lost, still a FAIL
    doc = json.loads((run / "audit" / "report.json").read_text())
    assert doc["verdict"] == "FAIL" and doc["slo"]["intake_p99_ms"] == 100.0
    [check] = [c for c in doc["checks"] if c["name"] == "slo[intake_p99_ms]"]
    assert check["status"] == "failed" and check["details"]["value"] == 150.0


def test_every_default_slo_is_a_named_check_in_junit(tmp_path: Path) -> None:
    run = clean_run(tmp_path, latency_ms=20.0)
    result = runner.invoke(app, ["audit", str(run)])
    assert result.exit_code == 0, result.output
    junit = (run / "audit" / "junit.xml").read_text()
    for name in (
        "availability", "time_availability", "intake_p99_ms", "accepted_to_booked_p99_s",
        "accepted_to_delivered_p99_s", "failover_s",
    ):  # fmt: skip
        assert f'name="slo[{name}]"' in junit
    assert 'name="slo[drain_s]"' not in junit  # off by default
    assert '<testcase classname="drill.run" name="slo[failover_s]" time="0">\n      <skipped' in junit


def test_slo_toml_parsing_and_errors(tmp_path: Path) -> None:
    assert load_slo(tmp_path) == SloConfig()
    (tmp_path / "slo.toml").write_text("availability = 0.99\nfailover_s = false\ndrain_s = 120\n")
    slo = load_slo(tmp_path)
    assert (slo.availability, slo.failover_s, slo.drain_s, slo.intake_p99_ms) == (0.99, None, 120.0, 500.0)
    for text, message in (
        ("availabilty = 0.99\n", "unknown SLO key"),
        ("availability = 99.9\n", "fraction"),
        ("intake_p99_ms = 'fast'\n", "must be a number"),
        ("window_p99_ms = false\n", "must be a number"),
        ("availability = \n", "slo.toml"),
    ):
        (tmp_path / "slo.toml").write_text(text)
        with pytest.raises(ValueError, match=message):
            load_slo(tmp_path)


def test_a_bad_slo_toml_is_a_usage_error(tmp_path: Path) -> None:
    run = clean_run(tmp_path, latency_ms=20.0)
    (run / "slo.toml").write_text("availability = 99.9\n")
    result = runner.invoke(app, ["audit", str(run)])
    assert result.exit_code == 2
    assert "slo.toml" in result.output


def test_without_a_ledger_performance_is_not_measured_and_slo_checks_skip(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    ops = [{"kind": "attempt", "id": "m"}, {"kind": "ack", "id": "m"}, {"kind": "observe", "id": "m"}]
    (run / "ops.jsonl").write_text("".join(json.dumps(o) + "\n" for o in ops))
    report = audit_run(run)
    assert report.performance is not None and not report.performance.measured
    slo = [c for c in report.checks if c.name.startswith("slo[")]
    assert slo and all(c.status == "skipped" for c in slo)
    assert report.exit_code == 0
    assert report.to_dict()["performance"]["series"] is None


def test_failover_passes_vacuously_only_when_the_journal_says_no_fault(tmp_path: Path) -> None:
    run = clean_run(tmp_path, latency_ms=20.0)

    def status() -> str:
        return next(c for c in audit_run(run).checks if c.name == "slo[failover_s]").status

    assert status() == "skipped"  # no journal: we cannot tell whether a fault happened
    (run / JOURNAL_PATH).parent.mkdir(parents=True)
    (run / JOURNAL_PATH).write_text("")
    assert status() == "passed"  # a journal with no fault in it
    (run / JOURNAL_PATH).write_text("".join(json.dumps(r) + "\n" for r in fault("f", 1001.0, 1002.0)))
    assert status() == "passed"  # a fault, and intake answered right after it


def test_a_stray_timestamp_does_not_blow_up_the_time_axis(tmp_path: Path) -> None:
    records = request("a", 1_764_380_000.0) + request("b", 1_764_380_001.0)
    records += [sent("z", 0.0, 9), answer("z", 0.0, "accepted", 5.0, 202)]  # a clock at the epoch
    perf = audit_run(make_run(tmp_path, records, fault("f", 3.0, 4.0))).performance
    assert perf is not None and perf.series is not None
    assert len(perf.series.requests) * perf.series.bucket_s <= 3 * 86400 + 1
    assert "clipped" in perf.reason
    assert perf.intake.requests == 3  # counted, just not plotted
    assert perf.faults[0].time.windows == 0  # outside the axis: no window to judge
