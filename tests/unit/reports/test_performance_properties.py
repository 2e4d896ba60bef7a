"""Hypothesis properties of the availability and latency figures (reports.performance).

* request availability = ok / (ok + unavailable), computed independently from the generated answers;
* time availability is in [0, 1], and is exactly 1 when every request succeeded fast;
* a fault window's counts are exactly the requests sent inside it;
* per-second p50 ≤ p99, and both are observed latencies of that second (nearest rank).
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reports.faults import FaultWindow
from reports.performance import measure
from reports.slo import SloConfig
from reports.timeline import OK, UNAVAILABLE, Timeline, classify_answer

OUTCOMES = [("accepted", 202), ("rejected", 422), ("rejected", 429), ("unknown", 503), ("unknown", None)]


@st.composite
def answers(draw: st.DrawFn, fast_ok_only: bool = False) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=0, max_value=60))
    out = []
    for i in range(n):
        t_sent = draw(st.floats(min_value=0.0, max_value=30.0, allow_nan=False))
        if fast_ok_only:
            outcome, status = "accepted", 202
            latency = draw(st.floats(min_value=0.0, max_value=499.0))
        else:
            outcome, status = draw(st.sampled_from(OUTCOMES))
            latency = draw(st.floats(min_value=0.0, max_value=5000.0))
        out.append(
            {"t": 1000.0 + t_sent + latency / 1000, "kind": "order_answer", "order_ref": f"o{i}",
             "outcome": outcome, "http_status": status, "latency_ms": latency}
        )  # fmt: skip
    return out


def timeline_of(records: list[dict[str, Any]]) -> Timeline:
    tl = Timeline()
    for rec in records:
        tl.feed(rec, {})
    return tl


@settings(max_examples=150, deadline=None)
@given(answers())
def test_request_availability_is_ok_over_ok_plus_unavailable(records: list[dict[str, Any]]) -> None:
    perf = measure(timeline_of(records), [], None, SloConfig())
    classes = [classify_answer(r["outcome"], r["http_status"]) for r in records]
    ok, bad = classes.count(OK), classes.count(UNAVAILABLE)
    assert (perf.intake.ok, perf.intake.unavailable, perf.intake.requests) == (ok, bad, len(records))
    if ok + bad:
        assert perf.intake.availability == ok / (ok + bad)
    else:
        assert perf.intake.availability is None
    ta = perf.time.availability
    assert ta is None if not records else 0.0 <= ta <= 1.0
    assert perf.time.good <= perf.time.windows


@settings(max_examples=100, deadline=None)
@given(answers(fast_ok_only=True))
def test_time_availability_is_one_when_every_request_succeeded_fast(records: list[dict[str, Any]]) -> None:
    perf = measure(timeline_of(records), [], None, SloConfig())
    if records:
        assert perf.time.availability == 1.0
        assert perf.intake.availability == 1.0
        assert perf.time.windows == len({math.floor(r["t"] - r["latency_ms"] / 1000) for r in records})


@settings(max_examples=100, deadline=None)
@given(answers(), st.floats(min_value=0, max_value=30), st.floats(min_value=0.5, max_value=20))
def test_a_fault_window_counts_exactly_the_requests_sent_inside_it(
    records: list[dict[str, Any]], start: float, length: float
) -> None:
    window = FaultWindow("f", "kill", "node:1", 1000.0 + start, 1000.0 + start + length, undone=True)
    perf = measure(timeline_of(records), [window], None, SloConfig())
    inside = [r for r in records if window.start <= r["t"] - r["latency_ms"] / 1000 < window.end]
    [f] = perf.faults
    assert f.intake.requests == len(inside)
    assert f.intake.ok == sum(r["outcome"] == "accepted" for r in inside)
    if f.time.availability is not None:
        assert 0.0 <= f.time.availability <= 1.0


@settings(max_examples=100, deadline=None)
@given(answers())
def test_per_second_percentiles_are_ordered_observed_values(records: list[dict[str, Any]]) -> None:
    perf = measure(timeline_of(records), [], None, SloConfig())
    if perf.series is None:
        assert not records
        return
    s = perf.series
    for k, (p50, p99) in enumerate(zip(s.p50_ms, s.p99_ms, strict=True)):
        lats = {
            round(r["latency_ms"], 3)
            for r in records
            if math.floor(r["t"] - r["latency_ms"] / 1000 - s.t0) == k
        }
        if not lats:
            assert p50 is None and p99 is None
            continue
        assert p50 is not None and p99 is not None
        ordered = sorted(
            round(r["latency_ms"], 3)
            for r in records
            if math.floor(r["t"] - r["latency_ms"] / 1000 - s.t0) == k
        )
        n = len(ordered)
        assert p50 <= p99
        assert p50 in lats and p99 in lats
        # nearest rank: value number ceil(p/100 * n), counted from 1
        assert p50 == ordered[math.ceil(0.5 * n) - 1]
        assert p99 == ordered[math.ceil(0.99 * n) - 1]
