"""The saturation finding: which resource ran out in the seconds that missed the objective, and whether
throughput followed the offered load (reports.saturation), and where the report shows it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

import rundir
from reports.audit import audit_run
from reports.faults import FaultWindow
from reports.performance import Series
from reports.readers.saturation import Offered, ResourceSample, RoleUsage, read_offered, read_resources
from reports.saturation import (
    NO_SAMPLES,
    NOT_SATURATED,
    NOT_SHOWN,
    SATURATED,
    analyse,
    measure_throughput,
)
from reports.slo import SloConfig
from reports.story import headline
from reports.synthetic import T0, write_synthetic_run
from reports.writers.html import report_html
from reports.writers.markdown import summary_markdown

SLO = SloConfig()  # intake p99 < 500 ms, windows: error rate < 1 %, p99 < 500 ms


def series(p99: Sequence[float | None], accepted: Sequence[float] | None = None, t0: float = T0) -> Series:
    """A 1-s series whose window k has intake p99 ``p99[k]`` (None: no traffic), no errors."""
    n = len(p99)
    good = [None if v is None else v < SLO.window_p99_ms for v in p99]
    return Series(
        t0=t0,
        bucket_s=1.0,
        accepted_per_s=list(accepted) if accepted is not None else [0.0 if v is None else 20.0 for v in p99],
        delivered_per_s=[0.0] * n,
        requests=[0 if v is None else 20 for v in p99],
        unavailable=[0] * n,
        availability=[None if v is None else 1.0 for v in p99],
        good=good,
        p50_ms=[None if v is None else v / 3 for v in p99],
        p99_ms=list(p99),
    )


def roles(
    brokers: float, services: float, simulator: float, *, quoting_max: float | None = None
) -> dict[str, RoleUsage]:
    """3 brokers sharing ``brokers`` cores, 4 services sharing ``services``, the simulator (all in cores)."""
    out = {f"broker.{n}": RoleUsage(brokers / 3 * 100, brokers / 3 * 100, 200.0, 1) for n in (1, 2, 3)}
    for name in ("intake", "quoting", "dispatch", "tracking"):
        cpu = services / 4 * 100
        out[f"service.{name}"] = RoleUsage(cpu, cpu / 2, 80.0, 2)
    if quoting_max is not None:
        out["service.quoting"] = RoleUsage(quoting_max * 100, quoting_max * 100, 80.0, 1)
    out["simulator"] = RoleUsage(simulator * 100, simulator * 100, 120.0, 1)
    out["drill"] = RoleUsage(3.0, 3.0, 90.0, 1)
    return out


def sample(
    k: int, busy: float, role_usage: Mapping[str, RoleUsage], *, iowait: float = 0.01
) -> ResourceSample:
    """The sample measuring window k (its interval ends at the end of second k)."""
    return ResourceSample(
        t=T0 + k + 1.0, dt=1.0, cores=2, cpu_busy=busy, iowait=iowait, load1=3.0,
        mem_total_mb=8000.0, mem_available_mb=3000.0, roles=dict(role_usage),
    )  # fmt: skip


GOOD_P99, BAD_P99 = 120.0, 1200.0


def test_cpu_saturated_names_the_cpu_with_figures_and_where_the_cores_went() -> None:
    p99 = [GOOD_P99] * 30 + [BAD_P99] * 30
    samples = [sample(k, 0.60, roles(0.6, 0.4, 0.15)) for k in range(30)]
    samples += [sample(k, 0.97, roles(1.1, 0.6, 0.2)) for k in range(30, 60)]
    sat = analyse(samples, series(p99), SLO)
    assert (sat.verdict, sat.resource) == (SATURATED, "cpu")
    assert (sat.bad_windows, sat.good_windows, sat.bad_sampled) == (30, 30, 30)
    text = sat.sentence
    assert text.startswith("Saturated: CPU — the machine was 97% busy (of 2 cores) in the 30 seconds")
    assert "intake p99 was ≥ 500 ms" in text and "vs 60% in the 30 good seconds" in text
    assert "the 3 brokers 1.10" in text and "the 4 services 0.60" in text and "simulator 0.20" in text
    assert "single-core" not in text
    doc = sat.to_dict()
    assert doc["bad"]["cpu_busy"] == pytest.approx(0.97) and doc["good"]["cpu_busy"] == pytest.approx(0.60)
    json.dumps(doc, allow_nan=False)


def test_one_process_at_a_full_core_is_named_single_core_bound_when_the_machine_is_not_full() -> None:
    p99 = [GOOD_P99] * 20 + [BAD_P99] * 20
    samples = [sample(k, 0.55, roles(0.5, 0.4, 0.1, quoting_max=0.50)) for k in range(20)]
    samples += [sample(k, 0.70, roles(0.5, 0.4, 0.1, quoting_max=0.99)) for k in range(20, 40)]
    sat = analyse(samples, series(p99), SLO)
    assert (sat.verdict, sat.resource) == (SATURATED, "process:service.quoting")
    assert "service.quoting is single-core-bound" in sat.sentence
    assert "used 99% of one core" in sat.sentence and "vs 50% in the good seconds" in sat.sentence
    assert "the machine was 70% busy (of 2 cores)" in sat.sentence


def test_cpu_and_a_single_core_bound_process_are_both_said() -> None:
    p99 = [GOOD_P99] * 10 + [BAD_P99] * 10
    samples = [sample(k, 0.95, roles(1.0, 0.6, 0.2, quoting_max=0.97)) for k in range(20)]
    sat = analyse(samples, series(p99), SLO)
    assert sat.resource == "cpu"
    assert "service.quoting's busiest process also used 97% of one core (single-core-bound)" in sat.sentence


def test_nothing_saturated_when_every_second_met_the_objective() -> None:
    samples = [sample(k, 0.5 + k / 100, roles(0.5, 0.4, 0.1)) for k in range(20)]
    sat = analyse(samples, series([GOOD_P99] * 20), SLO)
    assert sat.verdict == NOT_SATURATED and sat.resource is None
    assert sat.sentence == (
        "No saturation: intake met its objectives in all 20 seconds with traffic; the machine was 60% busy "
        "(of 2 cores) on average, 69% at most."
    )


def test_ambiguous_evidence_is_not_shown_with_the_figures() -> None:
    p99 = [GOOD_P99] * 20 + [BAD_P99] * 20
    samples = [sample(k, 0.70, roles(0.6, 0.5, 0.2)) for k in range(20)]
    samples += [sample(k, 0.75, roles(0.65, 0.55, 0.2)) for k in range(20, 40)]
    sat = analyse(samples, series(p99), SLO)
    assert sat.verdict == NOT_SHOWN and sat.resource is None
    assert sat.sentence.startswith(
        "Saturation not shown: in the 20 seconds intake p99 was ≥ 500 ms, the machine was 75% busy"
    )
    assert "vs 70% in the 20 good seconds" in sat.sentence
    assert "the busiest process (broker.1) used 22% of one core" in sat.sentence
    assert "No resource reached its threshold (CPU 90%, one core 95%, I/O wait 20%)" in sat.sentence


def test_io_wait_is_named_when_the_cpu_is_not_full() -> None:
    p99 = [GOOD_P99] * 5 + [BAD_P99] * 5
    samples = [sample(k, 0.4, roles(0.4, 0.3, 0.1), iowait=0.02 if k < 5 else 0.35) for k in range(10)]
    sat = analyse(samples, series(p99), SLO)
    assert (sat.verdict, sat.resource) == (SATURATED, "io")
    assert "the CPUs waited on I/O 35% of the time" in sat.sentence


def test_too_few_sampled_bad_seconds_conclude_nothing() -> None:
    p99 = [GOOD_P99] * 10 + [BAD_P99] * 5
    samples = [sample(k, 0.99, roles(1.2, 0.6, 0.2)) for k in (*range(10), 10, 11)]  # 2 of 5 bad sampled
    sat = analyse(samples, series(p99), SLO)
    assert sat.verdict == NOT_SHOWN and sat.resource is None
    assert "in 5 seconds" in sat.sentence and "only 2 of those seconds have resource samples" in sat.sentence


def test_error_windows_count_as_bad_and_faults_are_said() -> None:
    s = series([GOOD_P99] * 10 + [100.0] * 5)
    s.good[10:] = [False] * 5  # errors, not latency
    samples = [sample(k, 0.98, roles(1.2, 0.6, 0.2)) for k in range(15)]
    fault = FaultWindow("f1", "kill", "node:2", start=T0 + 10.2, end=T0 + 12.5)
    sat = analyse(samples, s, SLO, faults=[fault])
    assert sat.bad_windows == 5 and sat.bad_in_faults == 3
    assert "intake missed its objectives (p99 ≥ 500 ms or errors ≥ 1%)" in sat.sentence
    assert "(3 of them during faults)" in sat.sentence


def test_no_samples_says_so_and_the_rest_still_works() -> None:
    sat = analyse([], series([GOOD_P99] * 10), SLO)
    assert sat.verdict == NO_SAMPLES and not sat.measured
    assert sat.sentence == "No resource samples (resources.jsonl absent): saturation not analysed."
    assert sat.table() == []
    assert sat.to_dict()["bad"] is None


def test_no_latency_measured_is_not_shown() -> None:
    sat = analyse([sample(0, 0.99, roles(1.2, 0.6, 0.2))], None, SLO)
    assert sat.verdict == NOT_SHOWN and "no intake latency was measured" in sat.sentence


# ----------------------------------------------------------------------------------------- throughput
def offered_steps(rates: Sequence[tuple[float, float, float]]) -> Offered:
    """Evenly spaced sends: (from s, to s, rate) per step, nominal = rate."""
    out = Offered()
    for start, end, rate in rates:
        n = round((end - start) * rate)
        for i in range(n):
            out.times.append(T0 + start + (i + 0.5) / rate)
            out.nominal.append(rate)
            out.lags.append(0.01)
    return out


def test_throughput_that_followed_a_doubled_load() -> None:
    accepted = [20.0] * 45 + [40.0] * 45
    tp = measure_throughput(series([GOOD_P99] * 90, accepted), offered_steps([(0, 45, 20.0), (45, 90, 40.0)]))
    assert tp.measured and tp.followed is True
    assert [(p.start_s, p.end_s, p.nominal_per_s) for p in tp.phases] == [(0, 45, 20.0), (45, 90, 40.0)]
    assert [p.offered_per_s for p in tp.phases] == pytest.approx([20.0, 40.0])
    assert tp.peak_sustained_per_s == pytest.approx(40.0)
    assert tp.sentence() == (
        "Throughput followed the offered load (offered → accepted orders: 20.0 → 20.0/s (0–45 s), "
        "40.0 → 40.0/s (45–90 s)); the highest rate sustained for 10 s was 40.0 orders/s."
    )


def test_throughput_that_did_not_follow_says_where_and_how_much() -> None:
    accepted = [20.0] * 45 + [30.0] * 45  # capped at 30/s while 40/s were offered
    tp = measure_throughput(series([GOOD_P99] * 90, accepted), offered_steps([(0, 45, 20.0), (45, 90, 40.0)]))
    assert tp.followed is False
    assert [p.followed for p in tp.phases] == [True, False]
    assert (
        "did NOT follow the offered load: accepted 30.0 of 40.0 orders/s offered (75%, 45–90 s)"
        in tp.sentence()
    )
    assert tp.peak_sustained_per_s == pytest.approx(30.0)


def test_intake_that_followed_while_the_orders_behind_it_got_no_courier_did_not_keep_up() -> None:
    """Seen in double-load at 40 orders/s on 2 cores: intake took every order, the bookings collapsed."""
    accepted = [20.0] * 45 + [40.0] * 45
    s = series([GOOD_P99] * 90, accepted)
    s.accepted_then_booked_per_s = [17.0] * 45 + [4.0] * 45  # 85% of the first phase, 10% of the second
    tp = measure_throughput(s, offered_steps([(0, 45, 20.0), (45, 90, 40.0)]))
    assert tp.intake_followed is True and tp.followed is False
    assert [p.booked_share for p in tp.phases] == pytest.approx([0.85, 0.10])
    assert tp.booked_short() == [tp.phases[1]]
    text = tp.sentence()
    assert text.startswith("Intake accepted the offered load (offered → accepted orders: 20.0 → 20.0/s")
    assert (
        "did NOT keep up behind intake: of the orders accepted, 85% in 0–45 s, 10% in 45–90 s got a courier"
        in text
    )
    assert tp.to_dict()["booked_kept_up"] is False
    s.accepted_then_booked_per_s = [17.0] * 45 + [30.0] * 45  # 75% of 40/s: within 0.8 of 85%
    kept = measure_throughput(s, offered_steps([(0, 45, 20.0), (45, 90, 40.0)]))
    assert kept.followed is True and kept.sentence().startswith("Throughput followed")
    assert "Orders accepted that got a courier: 85% in 0–45 s, 75% in 45–90 s." in kept.sentence()


def test_a_simulator_that_fell_behind_its_plan_is_said() -> None:
    off = offered_steps([(0, 30, 20.0)])
    off.lags = [2.5] * len(off.lags)
    tp = measure_throughput(series([GOOD_P99] * 30, [20.0] * 30), off)
    assert tp.phases[0].behind
    assert (
        "The simulator itself fell behind its plan: 5% of its orders left ≥ 2.5 s late (0–30 s)."
        in tp.sentence()
    )


def test_throughput_without_order_sent_records_is_not_measured() -> None:
    tp = measure_throughput(series([GOOD_P99] * 5), Offered())
    assert not tp.measured and tp.followed is None
    assert "not measured (no order_sent record in the ledger)" in tp.sentence()


# ----------------------------------------------------------------------------------------- files and report
def write_resources(path: Path, samples: Sequence[ResourceSample], garbage: bool = False) -> None:
    with path.open("w") as fh:
        for s in samples:
            doc = {
                "t": s.t, "dt": s.dt, "cores": s.cores, "cpu_busy": s.cpu_busy, "iowait": s.iowait, "steal": s.steal,
                "load1": s.load1, "mem_total_mb": s.mem_total_mb, "mem_available_mb": s.mem_available_mb,
                "roles": {k: {"cpu": r.cpu, "max": r.max, "rss_mb": r.rss_mb, "procs": r.procs} for k, r in s.roles.items()},
            }  # fmt: skip
            fh.write(json.dumps(doc) + "\n")
        if garbage:
            fh.write('{"t": 1, "cores"\n\n["not a sample"]\n')


def test_resources_file_is_read_in_time_order_and_bad_lines_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "resources.jsonl"
    samples = [sample(k, 0.5, roles(0.5, 0.4, 0.1)) for k in (2, 0, 1)]
    write_resources(path, samples, garbage=True)
    read, stats = read_resources(path)
    assert [s.t for s in read] == [T0 + 1, T0 + 2, T0 + 3]
    assert (stats.present, stats.samples, stats.malformed) == (True, 3, 2)
    assert read[0].roles["broker.1"] == samples[1].roles["broker.1"]
    assert read_resources(tmp_path / "absent.jsonl")[1].present is False


def test_read_offered_takes_first_attempts_only(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    lines = [
        {
            "t": T0 + 1,
            "kind": "order_sent",
            "order_ref": "a",
            "attempt": 1,
            "offered_rate": 20.0,
            "lag_s": 0.1,
        },
        {
            "t": T0 + 2,
            "kind": "order_sent",
            "order_ref": "a",
            "attempt": 2,
            "offered_rate": 20.0,
            "lag_s": 0.1,
        },
        {"t": T0 + 3, "kind": "order_answer", "order_ref": "a", "note": "order_sent"},
        {"t": T0 + 0.5, "kind": "order_sent", "order_ref": "b"},
    ]
    ledger.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"kind":"order_sent", cut\n')
    off = read_offered([ledger, tmp_path / "absent.jsonl"])
    assert off.times == [T0 + 0.5, T0 + 1]
    assert off.nominal == [None, 20.0] and off.lags == [None, 0.1]


@pytest.fixture(scope="module")
def run_with_resources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic run (no fault) whose last third is slow (p99 ≥ 500 ms), with CPU samples that are full
    exactly then."""
    run = tmp_path_factory.mktemp("run")
    write_synthetic_run(run, seconds=30, rate=10, faults=(), seed=5)
    ledger = run / "simulator" / "ledger.jsonl"
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    for r in records:  # answers of orders sent in seconds 20-29 take 900 ms
        if r["kind"] == "order_answer" and r["t"] - (r.get("latency_ms") or 0) / 1000 >= T0 + 20:
            r["t"] += 0.9 - r["latency_ms"] / 1000
            r["latency_ms"] = 900.0
    ledger.write_text("".join(json.dumps(r) + "\n" for r in records))
    samples = [
        sample(k, 0.55 if k < 20 else 0.96, roles(0.6, 0.4, 0.1) if k < 20 else roles(1.1, 0.6, 0.2))
        for k in range(32)
    ]
    write_resources(run / rundir.RESOURCES, samples)
    return run


def test_the_report_carries_the_finding_without_changing_the_verdict(
    run_with_resources: Path, tmp_path: Path
) -> None:
    report = audit_run(run_with_resources)
    sat = report.saturation
    assert sat is not None and sat.resource == "cpu"
    assert sat.bad_windows >= 9  # seconds 20-29 (the 30th may have no request)
    doc = report.to_dict()
    assert doc["saturation"]["verdict"] == SATURATED and doc["saturation"]["resource"] == "cpu"
    assert doc["saturation"]["throughput"]["measured"] is True
    json.dumps(doc, allow_nan=False)
    sentences = headline(report)
    assert sentences[-1].startswith("Saturated: CPU — the machine was 96% busy (of 2 cores)")
    assert "Throughput followed the offered load" in sentences[-1]
    md = summary_markdown(report)
    assert "## Saturation" in md and "| machine CPU busy (of 2 cores) | 96% | 55% |" in md
    # The same run without samples: same checks, same verdict; the finding only explains.
    bare = tmp_path / "bare"
    shutil.copytree(run_with_resources, bare, ignore=shutil.ignore_patterns(rundir.RESOURCES.name, "audit"))
    plain = audit_run(bare)
    assert [(c.name, c.status) for c in plain.checks] == [(c.name, c.status) for c in report.checks]
    assert plain.exit_code == report.exit_code


def test_html_shows_the_section_and_the_cpu_plot(run_with_resources: Path) -> None:
    html = report_html(audit_run(run_with_resources))
    assert 'id="saturation"' in html and 'id="plot-cpu"' in html and 'id="throughput-phases"' in html
    assert "Saturated: CPU" in html


def test_a_run_without_resources_says_no_resource_samples_and_nothing_breaks(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_synthetic_run(run, seconds=20, rate=5, faults=())
    report = audit_run(run)
    assert report.saturation is not None and report.saturation.verdict == NO_SAMPLES
    assert report.to_dict()["saturation"]["verdict"] == NO_SAMPLES
    assert not any("resource" in s for s in headline(report))  # the verdict's story is unchanged
    assert "No resource samples (resources.jsonl absent)" in summary_markdown(report)
    html = report_html(report, plots=True)
    assert "No resource samples" in html and 'id="plot-cpu"' not in html
