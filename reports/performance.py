"""Availability, latency, failover, backlog drain and throughput of one run (report.json ``performance``).

Inputs: a :class:`~reports.timeline.Timeline` (gathered during the loss audit's single ledger read),
the chaos journal's fault windows and, when present, queue-depth samples (:mod:`reports.faults`), and
the objectives (:mod:`reports.slo`). Everything is vectorised with numpy: a 1M-request run costs well
under a second here.

Definitions (the rules of :mod:`reports.timeline` decide what a request's class is):

* **request availability** = ok / (ok + unavailable); requests rejected for bad input are left out.
* **time availability** = good windows / windows with traffic, over 1-second windows of send time. A
  window is good when its error rate (unavailable / (ok + unavailable)) is below
  ``window_error_rate`` **and** its p99 latency is below ``window_p99_ms``. A second in which no request
  was sent says nothing and is not counted (reported as ``empty``).
* **percentiles** are nearest-rank: the p-th percentile of n sorted values is value number
  ⌈p/100·n⌉ — always an observed value, exact on small samples.
* **per fault**: requests *sent* in ``[apply, undo)``; end-to-end latency of orders *accepted* in it.
  Beside them, what was planned and what happened (:mod:`reports.faults`): ``planned_s`` (the journal's
  plan; null for instant or open-ended faults), ``apply_s`` (apply → applied), ``held_s`` (applied →
  undoing: set it against ``planned_s``), ``undo_s`` (undoing → undo), ``in_effect_s`` (applied → undo:
  what the platform lived through), and ``duration_s``, unchanged since schema 2: the whole window,
  apply → undo (= ``apply_s`` + ``in_effect_s``). ``slow_undo`` / ``slow_apply`` flag an undo / apply
  longer than :data:`reports.faults.SLOW_S` and than planned. ``marker`` is the fault's number on the
  plots and in the tables (1-based, in this list's order).
* **baseline** = the requests sent outside every fault window and its settle time (``[apply, undo +
  fault_settle_s)``): the run's own fault-free latency, which the relative objectives compare the faults
  against (:mod:`reports.slo`); ``settled`` per fault = the requests sent in that extended window.
* **failover** = from the fault being in effect (``applied``, else ``apply``) to the earliest answer of
  a successful request sent at or after that moment: how long until intake demonstrably worked again
  (for a fault that did not disturb intake, about one request's latency). ``None``: no success after it.
  Not measured (left out of the failover objective) when no request at all was sent after it: a fault
  that lands after the traffic ended proves nothing either way.
* **drain** = heal → queues back to baseline (:func:`reports.faults.drain_time`).
* **throughput** = orders first accepted / first delivered per second (distinct orders, not answers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from reports.faults import Drain, FaultWindow, JournalStats, QueueSamples, drain_time, total_depth
from reports.slo import MIN_BASELINE_REQUESTS, SloConfig
from reports.timeline import OK, UNAVAILABLE, Timeline

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PERCENTILES: Final = (50, 90, 99)
#: The series in report.json / the plots have at most this many points (longer runs get wider buckets).
MAX_SERIES_POINTS: Final = 7200
#: The longest time axis measured; a longer one means stray timestamps, and is clipped around the traffic.
MAX_SPAN_S: Final = 3 * 86400


def percentiles(values: FloatArray) -> dict[str, float | int | None]:
    """``count``, ``p50``, ``p90``, ``p99``, ``max`` of ``values`` (NaN ignored), nearest-rank."""
    values = values[~np.isnan(values)]
    n = int(values.size)
    out: dict[str, float | int | None] = {"count": n}
    if n == 0:
        out.update({f"p{p}": None for p in PERCENTILES})
        out["max"] = None
        return out
    ordered = np.sort(values)
    for p in PERCENTILES:
        out[f"p{p}"] = round(float(ordered[max(0, math.ceil(p / 100 * n) - 1)]), 6)
    out["max"] = round(float(ordered[-1]), 6)
    return out


@dataclass
class IntakeStats:
    """Request-based availability and latency of a set of intake requests."""

    requests: int = 0
    ok: int = 0
    rejected: int = 0
    unavailable: int = 0
    latency: dict[str, float | int | None] = field(default_factory=lambda: percentiles(np.empty(0)))

    @property
    def eligible(self) -> int:
        """Requests that count for availability (bad-input rejections are left out)."""
        return self.ok + self.unavailable

    @property
    def availability(self) -> float | None:
        """ok / eligible (``None`` when nothing is eligible)."""
        return self.ok / self.eligible if self.eligible else None

    def to_dict(self) -> dict[str, Any]:
        """The ``intake`` entries of report.json."""
        return {
            "requests": self.requests,
            "ok": self.ok,
            "rejected": self.rejected,
            "unavailable": self.unavailable,
            "eligible": self.eligible,
            "availability": self.availability,
            "latency_ms": dict(self.latency),
        }


def intake_stats(klass: npt.NDArray[np.int8], latency: FloatArray) -> IntakeStats:
    """Counts per class and latency percentiles of the given requests."""
    counts = np.bincount(klass.astype(np.int64), minlength=3) if klass.size else np.zeros(3, np.int64)
    return IntakeStats(
        requests=int(klass.size),
        ok=int(counts[OK]),
        rejected=int(counts[1]),
        unavailable=int(counts[UNAVAILABLE]),
        latency=percentiles(latency),
    )


@dataclass
class TimeAvailability:
    """Time-based availability over 1-second windows."""

    windows: int = 0
    good: int = 0
    empty: int = 0
    error_rate_below: float = 0.0
    p99_ms_below: float = 0.0

    @property
    def availability(self) -> float | None:
        """good / windows with traffic."""
        return self.good / self.windows if self.windows else None

    def to_dict(self) -> dict[str, Any]:
        """The ``time_availability`` section."""
        return {
            "window_s": 1,
            "windows": self.windows,
            "good": self.good,
            "empty": self.empty,
            "availability": self.availability,
            "criteria": {"error_rate_below": self.error_rate_below, "p99_ms_below": self.p99_ms_below},
        }


@dataclass
class WindowStats:
    """Per-bucket statistics of intake requests (bucket ``k`` covers ``[t0 + k·b, t0 + (k+1)·b)``)."""

    t0: float
    bucket_s: float
    requests: IntArray
    ok: IntArray
    unavailable: IntArray
    p50_ms: FloatArray
    p99_ms: FloatArray

    @property
    def eligible(self) -> IntArray:
        """ok + unavailable per bucket."""
        return self.ok + self.unavailable

    def good(self, error_rate_below: float, p99_ms_below: float) -> npt.NDArray[np.bool_]:
        """Buckets with traffic that meet both criteria (no latency known: the latency part holds)."""
        eligible = self.eligible
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.where(eligible > 0, self.unavailable / np.maximum(eligible, 1), 0.0)
        fast = np.isnan(self.p99_ms) | (self.p99_ms < p99_ms_below)
        return (self.requests > 0) & (err < error_rate_below) & fast


def window_stats(
    sent: FloatArray,
    klass: npt.NDArray[np.int8],
    latency: FloatArray,
    t0: float,
    bucket_s: float,
    n_buckets: int,
) -> WindowStats:
    """Bucket requests by send time; per bucket counts and nearest-rank p50/p99 latency."""
    idx = np.floor((sent - t0) / bucket_s).astype(np.int64)
    inside = (idx >= 0) & (idx < n_buckets)
    idx, k, lat = idx[inside], klass[inside], latency[inside]
    requests = np.bincount(idx, minlength=n_buckets)
    ok = np.bincount(idx[k == OK], minlength=n_buckets)
    unavailable = np.bincount(idx[k == UNAVAILABLE], minlength=n_buckets)
    p50 = np.full(n_buckets, np.nan)
    p99 = np.full(n_buckets, np.nan)
    known = ~np.isnan(lat)
    if known.any():
        li, lv = idx[known], lat[known]
        order = np.lexsort((lv, li))  # by bucket, then latency: each bucket's values sorted in a run
        li, lv = li[order], lv[order]
        counts = np.bincount(li, minlength=n_buckets)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        has = counts > 0
        for p, out in ((50, p50), (99, p99)):
            rank = np.ceil(p / 100 * counts).astype(np.int64) - 1
            out[has] = lv[starts[has] + np.maximum(rank[has], 0)]
    return WindowStats(t0, bucket_s, requests, ok, unavailable, p50, p99)


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


@dataclass
class FaultResult:
    """What one fault window did to the platform."""

    window: FaultWindow
    intake: IntakeStats
    time: TimeAvailability
    accepted_to_booked: dict[str, float | int | None]
    accepted_to_delivered: dict[str, float | int | None]
    failover_s: float | None
    drain: Drain
    #: whether any request was sent after the fault took effect (else failover is not measured)
    traffic_after: bool = True
    #: requests sent while it held and during the settle time after it (the relative objectives)
    settled: IntakeStats = field(default_factory=IntakeStats)

    def to_dict(self, marker: int | None = None) -> dict[str, Any]:
        """One entry of ``faults`` in report.json (``marker``: its number on the plots and tables)."""
        w = self.window
        return {
            "fault_id": w.fault_id,
            "marker": marker,
            "kind": w.kind,
            "target": w.target,
            "start": w.start,
            "applied": w.applied,
            "undoing": w.undoing,
            "end": w.end,
            "duration_s": round(w.end - w.start, 3),
            "planned_s": w.planned_s,
            "apply_s": _round(w.apply_s),
            "held_s": _round(w.held_s),
            "undo_s": _round(w.undo_s),
            "in_effect_s": _round(w.in_effect_s),
            "slow_apply": w.slow_apply,
            "slow_undo": w.slow_undo,
            "undone": w.undone,
            "undo_failed": w.undo_failed,
            "intake": self.intake.to_dict(),
            "settled_intake": self.settled.to_dict(),
            "time_availability": self.time.availability,
            "accepted_to_booked_s": dict(self.accepted_to_booked),
            "accepted_to_delivered_s": dict(self.accepted_to_delivered),
            "failover_s": None if self.failover_s is None else round(self.failover_s, 3),
            "failover_measured": self.traffic_after,
            "drain": self.drain.to_dict(),
        }


@dataclass
class Series:
    """Per-bucket series for plots (``None`` entries where a bucket had nothing to measure).

    Buckets are 1 s unless the run is longer than :data:`MAX_SERIES_POINTS` seconds; then ``good`` and
    the percentiles are those of the wider bucket (the headline time availability stays on 1-s windows).
    """

    t0: float
    bucket_s: float
    accepted_per_s: list[float]
    delivered_per_s: list[float]
    requests: list[int]
    unavailable: list[int]
    availability: list[float | None]
    good: list[bool | None]
    p50_ms: list[float | None]
    p99_ms: list[float | None]
    queue_depth: list[int] | None = None
    #: orders accepted in the bucket (by acceptance time) that got a courier at any later time
    accepted_then_booked_per_s: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``series`` section of report.json."""
        return {
            "t0": self.t0,
            "bucket_s": self.bucket_s,
            "accepted_per_s": self.accepted_per_s,
            "accepted_then_booked_per_s": self.accepted_then_booked_per_s,
            "delivered_per_s": self.delivered_per_s,
            "requests": self.requests,
            "unavailable": self.unavailable,
            "availability": self.availability,
            "good": self.good,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "queue_depth": self.queue_depth,
        }


@dataclass
class Performance:
    """Everything the report says about availability, latency and recovery."""

    slo: SloConfig
    measured: bool
    reason: str = ""
    intake: IntakeStats = field(default_factory=IntakeStats)
    statuses: dict[str, int] = field(default_factory=dict)
    time: TimeAvailability = field(default_factory=TimeAvailability)
    accepted_to_booked: dict[str, float | int | None] = field(
        default_factory=lambda: percentiles(np.empty(0))
    )
    accepted_to_delivered: dict[str, float | int | None] = field(
        default_factory=lambda: percentiles(np.empty(0))
    )
    delivered_source: str = ""
    faults: list[FaultResult] = field(default_factory=list)
    #: the requests sent outside every fault and its settle time
    baseline: IntakeStats = field(default_factory=IntakeStats)
    series: Series | None = None
    journal: JournalStats | None = None
    queues: QueueSamples | None = None

    def failover_values(self) -> dict[str, float | None]:
        """fault id -> failover seconds (``None``: never recovered), for faults with intake traffic after them."""
        if not self.measured:
            return {}
        return {f.window.fault_id: f.failover_s for f in self.faults if f.traffic_after}

    def drain_values(self) -> dict[str, float | None]:
        """fault id -> drain seconds (``None``: not drained), for faults whose drain was measured."""
        return {f.window.fault_id: f.drain.seconds for f in self.faults if f.drain.measured}

    def slowest_recovery(self) -> FaultResult | None:
        """The fault with the longest failover (a never-recovered fault counts as the slowest)."""
        measured = [f for f in self.faults if f.traffic_after]
        if not self.measured or not measured:
            return None
        return max(measured, key=lambda f: math.inf if f.failover_s is None else f.failover_s)

    def to_dict(self) -> dict[str, Any]:
        """The ``performance`` section of report.json (documented in :mod:`reports.audit`)."""
        queues: dict[str, Any] = {"measured": False}
        if self.queues is not None and self.queues.present:
            queues = {
                "measured": True,
                "source": self.queues.path,
                "samples": self.queues.samples,
                "malformed": self.queues.malformed,
                "peak": {q: max(m for _, m in s) for q, s in sorted(self.queues.by_queue.items()) if s},
            }
        journal: dict[str, Any] = {"present": False}
        if self.journal is not None:
            journal = {
                "present": self.journal.present,
                "source": self.journal.path,
                "records": self.journal.records,
                "malformed": self.journal.malformed,
            }
        return {
            "measured": self.measured,
            "reason": self.reason,
            "rules": {
                "ok": "outcome accepted (2xx)",
                "rejected": "outcome rejected (4xx bad input): not unavailability, not counted",
                "unavailable": "outcome unknown (5xx, timeout, refused, reset) or 408/425/429",
                "percentiles": "nearest-rank",
                "time_window_s": 1,
            },
            "intake": {**self.intake.to_dict(), "http_status": dict(sorted(self.statuses.items()))},
            "time_availability": self.time.to_dict(),
            "end_to_end": {
                "accepted_to_booked_s": dict(self.accepted_to_booked),
                "accepted_to_delivered_s": dict(self.accepted_to_delivered),
                "delivered_source": self.delivered_source,
            },
            "baseline": self.baseline.to_dict(),
            "faults": [f.to_dict(marker=i) for i, f in enumerate(self.faults, start=1)],
            "journal": journal,
            "queues": queues,
            "series": None if self.series is None else self.series.to_dict(),
        }


def _milestone_deltas(accepted: FloatArray, reached: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(accepted time, seconds to milestone) of every accepted order that reached the milestone.

    Both arrays are per order index (``inf`` = never). Clipped at 0: the platform may act on an order
    before its HTTP answer reaches the retailer.
    """
    both = np.isfinite(accepted) & np.isfinite(reached)
    start = accepted[both]
    return start, np.maximum(reached[both] - start, 0.0)


def measure(
    timeline: Timeline,
    windows: Sequence[FaultWindow],
    queues: QueueSamples | None,
    slo: SloConfig,
    journal: JournalStats | None = None,
) -> Performance:
    """Compute every figure of :class:`Performance` (the definitions in the module docstring)."""
    perf = Performance(slo=slo, measured=len(timeline) > 0, journal=journal, queues=queues)
    if not perf.measured:
        perf.reason = "no intake answer in the run (no simulator ledger with order_answer records)"
    sent = np.frombuffer(timeline.sent, dtype=np.float64) if len(timeline) else np.empty(0)
    answered = np.frombuffer(timeline.answered, dtype=np.float64) if len(timeline) else np.empty(0)
    latency = np.frombuffer(timeline.latency_ms, dtype=np.float64) if len(timeline) else np.empty(0)
    klass = np.frombuffer(timeline.klass, dtype=np.int8) if len(timeline) else np.empty(0, np.int8)

    perf.intake = intake_stats(klass, latency)
    perf.statuses = dict(timeline.statuses)
    delivered, perf.delivered_source = timeline.delivered()
    n_orders = len(timeline.index)
    accepted, booked = timeline.accepted.earliest(n_orders), timeline.booked.earliest(n_orders)
    acc_b, to_booked = _milestone_deltas(accepted, booked)
    acc_d, to_delivered = _milestone_deltas(accepted, delivered)
    perf.accepted_to_booked = percentiles(to_booked)
    perf.accepted_to_delivered = percentiles(to_delivered)
    if not np.isfinite(delivered).any():
        perf.delivered_source = ""

    # One time axis for every series: from the first thing that happened to the last.
    starts = [float(sent.min())] if sent.size else []
    ends = [float(answered.max())] if answered.size else []
    for times in (accepted, booked, delivered):
        reached = times[np.isfinite(times)]
        if reached.size:
            starts.append(float(reached.min()))
            ends.append(float(reached.max()))
    for w in windows:
        starts.append(w.start)
        ends.append(w.end)
    if queues is not None and queues.present:
        for s in queues.by_queue.values():
            if s:
                starts.append(s[0][0])
                ends.append(s[-1][0])
    if not starts:
        return perf
    t0, t_end = math.floor(min(starts)), max(ends)
    if t_end - t0 > MAX_SPAN_S:
        # A stray timestamp (t = 0, a clock jump) must not size the per-second arrays to decades:
        # keep MAX_SPAN_S around the median request (or event); what falls outside is not plotted.
        anchor = float(np.median(sent)) if sent.size else float(np.median(starts))
        t0 = max(t0, math.floor(anchor - MAX_SPAN_S / 2))
        t_end = min(t_end, t0 + MAX_SPAN_S)
        perf.reason = (perf.reason + "; " if perf.reason else "") + (
            f"time axis clipped to {MAX_SPAN_S / 86400:g} days around the traffic (stray timestamps)"
        )
    n_seconds = max(1, math.floor(t_end - t0) + 1)

    settle = slo.fault_settle_s
    faulty = np.zeros(sent.size, dtype=bool)
    for w in windows:
        faulty |= (sent >= w.start) & (sent < w.end + settle)
    perf.baseline = intake_stats(klass[~faulty], latency[~faulty])
    base_p99 = perf.baseline.latency.get("p99")
    enough = perf.baseline.requests >= MIN_BASELINE_REQUESTS and base_p99 is not None
    window_p99 = slo.window_p99_limit(float(base_p99) if enough and base_p99 is not None else None)

    per_second = window_stats(sent, klass, latency, t0, 1.0, n_seconds)
    good = per_second.good(slo.window_error_rate, window_p99)
    traffic = per_second.requests > 0
    if perf.measured:
        first, last = int(np.argmax(traffic)), n_seconds - 1 - int(np.argmax(traffic[::-1]))
        perf.time = TimeAvailability(
            windows=int(traffic.sum()),
            good=int(good.sum()),
            empty=int((~traffic[first : last + 1]).sum()),
            error_rate_below=slo.window_error_rate,
            p99_ms_below=window_p99,
        )

    for w in windows:
        inside = (sent >= w.start) & (sent < w.end)
        settled = (sent >= w.start) & (sent < w.end + settle)
        lo = min(n_seconds, max(0, math.floor(w.start - t0)))
        hi = min(n_seconds, max(lo, math.floor(w.end - t0) + 1))
        span_traffic = traffic[lo:hi]
        ta = TimeAvailability(
            windows=int(span_traffic.sum()),
            good=int(good[lo:hi].sum()),
            error_rate_below=slo.window_error_rate,
            p99_ms_below=window_p99,
        )
        booked_in = (acc_b >= w.start) & (acc_b < w.end)
        delivered_in = (acc_d >= w.start) & (acc_d < w.end)
        after = (sent >= w.effective_start) & (klass == OK)
        failover = float(answered[after].min()) - w.effective_start if after.any() else None
        perf.faults.append(
            FaultResult(
                window=w,
                intake=intake_stats(klass[inside], latency[inside]),
                time=ta,
                accepted_to_booked=percentiles(to_booked[booked_in]),
                accepted_to_delivered=percentiles(to_delivered[delivered_in]),
                failover_s=None if failover is None else max(0.0, failover),
                traffic_after=bool((sent >= w.effective_start).any()),
                settled=intake_stats(klass[settled], latency[settled]),
                drain=drain_time(w, queues, windows)
                if queues is not None
                else Drain(False, reason="not measured"),
            )
        )

    perf.series = _series(
        per_second, sent, klass, latency, accepted, delivered, queues, slo, booked, window_p99=window_p99
    )
    return perf


def _series(
    per_second: WindowStats,
    sent: FloatArray,
    klass: npt.NDArray[np.int8],
    latency: FloatArray,
    accepted: FloatArray,
    delivered: FloatArray,
    queues: QueueSamples | None,
    slo: SloConfig,
    booked: FloatArray | None = None,
    *,
    window_p99: float | None = None,
) -> Series:
    """Plot series; 1-second buckets unless the run is longer than :data:`MAX_SERIES_POINTS` seconds."""
    n_seconds = per_second.requests.size
    bucket = max(1, math.ceil(n_seconds / MAX_SERIES_POINTS))
    t0 = per_second.t0
    if bucket == 1:
        stats = per_second
    else:
        stats = window_stats(sent, klass, latency, t0, float(bucket), math.ceil(n_seconds / bucket))
    n = stats.requests.size

    def rate(times: FloatArray) -> list[float]:
        values = times[np.isfinite(times)]
        idx = np.floor((values - t0) / bucket).astype(np.int64)
        counts = np.bincount(idx[(idx >= 0) & (idx < n)], minlength=n)
        return [round(float(c) / bucket, 3) for c in counts]

    eligible = stats.eligible
    good = stats.good(slo.window_error_rate, slo.window_p99_ms if window_p99 is None else window_p99)
    depth = None
    if queues is not None and queues.present:
        depth = total_depth(queues, [t0 + (k + 1) * bucket for k in range(n)])

    def opt(values: FloatArray) -> list[float | None]:
        return [None if math.isnan(v) else round(float(v), 3) for v in values]

    return Series(
        t0=float(t0),
        bucket_s=float(bucket),
        accepted_per_s=rate(accepted),
        delivered_per_s=rate(delivered),
        requests=[int(x) for x in stats.requests],
        unavailable=[int(x) for x in stats.unavailable],
        availability=[
            round(int(o) / int(e), 6) if e else None for o, e in zip(stats.ok, eligible, strict=True)
        ],
        good=[bool(g) if r else None for g, r in zip(good, stats.requests, strict=True)],
        p50_ms=opt(stats.p50_ms),
        p99_ms=opt(stats.p99_ms),
        queue_depth=depth,
        accepted_then_booked_per_s=None
        if booked is None or not np.isfinite(booked).any()
        else rate(np.where(np.isfinite(booked), accepted, np.nan)),
    )
