"""Where the platform saturates, and why: resource samples read against the seconds that missed.

Inputs: ``RUN/resources.jsonl`` (one line per second of traffic, written by
``rig/resources.py``; its module docstring has the format), the performance series of
:mod:`reports.performance` (1-s windows of intake send time: p99, good), the objectives of
:mod:`reports.slo`, the fault windows, and the orders the traffic offered (``order_sent`` records of the
simulator / Locust ledgers, first attempts only: retries and deliberate duplicates are not new load).

The finding **explains; it never decides**: it adds no check and does not change the verdict.

Windows. A window (a bucket of the series: 1 s) with traffic is **bad** when intake p99 in it is at or
above the latency objective (``intake_p99_ms``, else ``window_p99_ms``) or it is not *good* (the time
availability criteria: error rate, p99); it is **good** otherwise. A resource sample belongs to the
window holding the middle of the interval it measured. Figures are means over the samples of the bad
windows and over those of the good ones.

Decision rule, in this order (the first that holds names the resource; thresholds below)::

    no samples                              "no resource samples" (nothing analysed)
    no window with traffic                  not shown (no intake latency measured)
    no bad window                           not saturated (the objectives held every second)
    bad windows with samples < MIN_BAD      not shown (too few samples where it went wrong)
    CPU busy + steal ≥ CPU_SATURATED        saturated: CPU (of all cores, mean over the bad windows)
    one process ≥ SINGLE_CORE_BOUND         saturated: that role's busiest process, single-core-bound
    I/O wait ≥ IOWAIT_SATURATED             saturated: I/O (disk)
    memory available < MEMORY_LOW           saturated: memory
    otherwise                               not shown, with the figures (no guess)

"One process" is, per role, the busiest of its processes in each sample, averaged over the bad windows
(with replicas the busiest may change between samples, so this reads high rather than low). A
single-core-bound process is also named after a CPU verdict when it holds too. Bad windows that fall
inside fault windows are counted and said: a broker outage misses the objective without any resource
being short.

Throughput. The traffic is split into **phases** of constant nominal offered rate (the simulator's
``offered_rate`` on each ``order_sent``; one phase when it is absent or varies more than
:data:`MAX_PHASES` times). Per phase: offered/s = first attempts sent per second, accepted/s = orders
first accepted per second (the series' ``accepted_per_s``, by answer time), both over the same
windows. The platform **followed** the load in a phase when accepted/s ≥ :data:`FOLLOW_RATIO` × offered/s
(the margin covers answers crossing a phase edge and bad-input rejections). The highest rate
**sustained** is the best mean accepted/s over :data:`SUSTAIN_S` consecutive seconds. When 5% of a
phase's orders left :data:`BEHIND_LAG_S` or more after their planned time (``lag_s``), the simulator
fell behind its plan (itself short of CPU, or out of connections to a slow platform): the load offered
was then less than planned, and that is said too. (The nominal and the sent rate differ by the random
arrivals alone, so that difference is shown, not judged.)

Intake accepting is not the platform keeping up: per phase, the **booked share** is the share of the
orders accepted in it that got a courier at any later time. A phase whose share falls below
:data:`BOOKED_SHARE_KEPT` × the best phase's did not keep up past intake (seen in double-load at 40
orders/s on 2 cores: intake took every order, but quote answers came after the deadline and most
orders ended without a courier).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import rundir
from reports.faults import FaultWindow
from reports.performance import Performance, Series
from reports.readers.ledger import LEDGER_PATH, LOCUST_LEDGER_PATH
from reports.readers.saturation import (
    Offered,
    ResourceSample,
    ResourceStats,
    read_offered,
    read_resources,
)
from reports.slo import BOOKED_SHARE_KEPT, SloConfig

#: Machine CPU busy (+ steal), fraction of all cores, at or above which the CPU is saturated.
CPU_SATURATED: Final = 0.90
#: One process at or above this share of ONE core is single-core-bound (event loops are single-threaded).
SINGLE_CORE_BOUND: Final = 0.95
#: I/O wait, fraction of all cores' time, at or above which I/O is the bottleneck.
IOWAIT_SATURATED: Final = 0.20
#: Available memory, fraction of the total, below which memory is short.
MEMORY_LOW: Final = 0.05
#: Bad windows that must have resource samples before anything is concluded.
MIN_BAD: Final = 3
#: accepted/s ≥ FOLLOW_RATIO × offered/s: throughput followed the offered load.
FOLLOW_RATIO: Final = 0.95
#: p95 of the simulator's send lag at or above which it fell behind its plan, seconds.
BEHIND_LAG_S: Final = 1.0
#: The window of the "highest rate sustained", seconds.
SUSTAIN_S: Final = 10.0
#: More nominal-rate changes than this (a curve, not steps): one phase for the whole traffic.
MAX_PHASES: Final = 8
#: Role groups in the sentences, in order ("broker.2" -> "brokers", "service.quoting" -> "services").
GROUPS: Final = (("broker.", "brokers"), ("service.", "services"))

SATURATED: Final = "saturated"
NOT_SATURATED: Final = "not saturated"
NOT_SHOWN: Final = "not shown"
NO_SAMPLES: Final = "no samples"


# ----------------------------------------------------------------------------------------- output
@dataclass
class Usage:
    """Mean resource use over a set of samples (the bad or the good windows)."""

    seconds: float
    samples: int
    cpu_busy: float
    steal: float
    iowait: float
    load1: float | None
    mem_available: float | None
    #: role -> mean cores (1.0 = one core) and mean share of one core of its busiest process
    cores: dict[str, float]
    busiest: dict[str, float]

    @property
    def cpu(self) -> float:
        """Busy + steal: CPU the platform could not have had."""
        return self.cpu_busy + self.steal

    def busiest_process(self) -> tuple[str, float] | None:
        """The role whose busiest process used the most of one core."""
        if not self.busiest:
            return None
        role = max(self.busiest, key=lambda r: self.busiest[r])
        return role, self.busiest[role]

    def to_dict(self) -> dict[str, Any]:
        """The ``bad`` / ``good`` entries of report.json's ``saturation``."""
        top = self.busiest_process()
        return {
            "seconds": round(self.seconds, 1),
            "samples": self.samples,
            "cpu_busy": round(self.cpu_busy, 4),
            "steal": round(self.steal, 4),
            "iowait": round(self.iowait, 4),
            "load1": None if self.load1 is None else round(self.load1, 2),
            "mem_available": None if self.mem_available is None else round(self.mem_available, 4),
            "cores_by_role": {k: round(v, 3) for k, v in sorted(self.cores.items())},
            "busiest_process": None if top is None else {"role": top[0], "core_share": round(top[1], 3)},
        }


def usage(samples: Sequence[ResourceSample], seconds: float) -> Usage | None:
    """Means over ``samples`` (``None`` when there is none)."""
    n = len(samples)
    if not n:
        return None
    roles = sorted({r for s in samples for r in s.roles})
    loads = [s.load1 for s in samples if s.load1 is not None]
    mems = [m for m in (s.mem_available for s in samples) if m is not None]
    return Usage(
        seconds=seconds,
        samples=n,
        cpu_busy=sum(s.cpu_busy for s in samples) / n,
        steal=sum(s.steal for s in samples) / n,
        iowait=sum(s.iowait for s in samples) / n,
        load1=sum(loads) / len(loads) if loads else None,
        mem_available=sum(mems) / len(mems) if mems else None,
        cores={r: sum(s.roles[r].cpu for s in samples if r in s.roles) / 100 / n for r in roles},
        busiest={r: sum(s.roles[r].max for s in samples if r in s.roles) / 100 / n for r in roles},
    )


@dataclass
class Phase:
    """One stretch of constant nominal offered rate (times in seconds since the series' t0)."""

    start_s: float
    end_s: float
    nominal_per_s: float | None
    offered_per_s: float
    accepted_per_s: float
    lag_p95_s: float | None = None
    #: of the orders accepted in the phase, the share that got a courier (None: no booking evidence)
    booked_share: float | None = None

    @property
    def followed(self) -> bool:
        """accepted/s ≥ FOLLOW_RATIO × offered/s."""
        return self.accepted_per_s >= FOLLOW_RATIO * self.offered_per_s

    @property
    def behind(self) -> bool:
        """The simulator fell behind its plan (p95 send lag ≥ BEHIND_LAG_S)."""
        return self.lag_p95_s is not None and self.lag_p95_s >= BEHIND_LAG_S

    def to_dict(self) -> dict[str, Any]:
        """One entry of ``throughput.phases``."""
        return {
            "start_s": round(self.start_s, 1),
            "end_s": round(self.end_s, 1),
            "nominal_per_s": self.nominal_per_s,
            "offered_per_s": round(self.offered_per_s, 2),
            "accepted_per_s": round(self.accepted_per_s, 2),
            "followed": self.followed,
            "simulator_lag_p95_s": self.lag_p95_s,
            "simulator_behind": self.behind,
            "booked_share": None if self.booked_share is None else round(self.booked_share, 4),
        }


@dataclass
class Throughput:
    """Did accepted orders follow the offered load?"""

    measured: bool = False
    reason: str = ""
    phases: list[Phase] = field(default_factory=list)
    peak_sustained_per_s: float | None = None
    sustain_s: float = SUSTAIN_S

    @property
    def intake_followed(self) -> bool | None:
        """Intake accepted the offered load in every phase (``None``: not measured)."""
        return all(p.followed for p in self.phases) if self.measured else None

    @property
    def followed(self) -> bool | None:
        """Intake followed in every phase and no phase's booked share fell behind (``None``: not measured)."""
        return (self.intake_followed and not self.booked_short()) if self.measured else None

    def booked_short(self) -> list[Phase]:
        """Phases whose booked share fell below BOOKED_SHARE_KEPT × the best phase's."""
        shares = [p.booked_share for p in self.phases if p.booked_share is not None]
        if len(shares) < 2 or max(shares) <= 0:
            return []
        best = max(shares)
        return [
            p for p in self.phases if p.booked_share is not None and p.booked_share < BOOKED_SHARE_KEPT * best
        ]

    def sentence(self) -> str:
        """The throughput in plain words."""
        if not self.measured:
            return f"Throughput against the offered load was not measured ({self.reason})."

        def span(p: Phase) -> str:
            return f"{p.start_s:.0f}–{p.end_s:.0f} s"

        parts = [f"{p.offered_per_s:.1f} → {p.accepted_per_s:.1f}/s ({span(p)})" for p in self.phases]
        peak = (
            ""
            if self.peak_sustained_per_s is None
            else f"; the highest rate sustained for {self.sustain_s:g} s was {self.peak_sustained_per_s:.1f} orders/s"
        )
        short_booked = self.booked_short()
        if self.intake_followed and not short_booked:
            text = (
                f"Throughput followed the offered load (offered → accepted orders: {', '.join(parts)}){peak}."
            )
        elif self.intake_followed:
            text = f"Intake accepted the offered load (offered → accepted orders: {', '.join(parts)}){peak}."
        else:
            short = [p for p in self.phases if not p.followed]
            missed = ", ".join(
                f"{p.accepted_per_s:.1f} of {p.offered_per_s:.1f} orders/s offered "
                f"({p.accepted_per_s / p.offered_per_s:.0%}, {span(p)})"
                for p in short
            )
            text = f"Throughput did NOT follow the offered load: accepted {missed}{peak}."
        shares = [p for p in self.phases if p.booked_share is not None]
        if shares:
            listed = ", ".join(f"{p.booked_share:.0%} in {span(p)}" for p in shares)
            if short_booked:
                text += (
                    f" But the platform did NOT keep up behind intake: of the orders accepted, {listed} got a "
                    f"courier (the others ended without one: quotes or bookings came too late)."
                )
            else:
                text += f" Orders accepted that got a courier: {listed}."
        behind = [p for p in self.phases if p.behind]
        if behind:
            late = ", ".join(f"5% of its orders left ≥ {p.lag_p95_s:.1f} s late ({span(p)})" for p in behind)
            text += f" The simulator itself fell behind its plan: {late}."
        return text

    def to_dict(self) -> dict[str, Any]:
        """The ``throughput`` section of ``saturation``."""
        return {
            "measured": self.measured,
            "reason": self.reason,
            "followed": self.followed,
            "intake_followed": self.intake_followed,
            "follow_ratio": FOLLOW_RATIO,
            "phases": [p.to_dict() for p in self.phases],
            "booked_kept_up": not self.booked_short() if self.measured else None,
            "peak_sustained_per_s": None
            if self.peak_sustained_per_s is None
            else round(self.peak_sustained_per_s, 2),
            "sustain_s": self.sustain_s,
        }


@dataclass
class Saturation:
    """The finding: which resource (if any) was saturated when the objectives were missed."""

    verdict: str
    sentence: str
    resource: str | None = None
    cores: int | None = None
    latency_limit_ms: float | None = None
    windows: int = 0
    bad_windows: int = 0
    bad_sampled: int = 0
    good_windows: int = 0
    bad_in_faults: int = 0
    bucket_s: float = 1.0
    bad: Usage | None = None
    good: Usage | None = None
    #: every sample (all the run's seconds), for the mean and the peak when nothing went wrong
    overall: Usage | None = None
    peak_cpu: float | None = None
    throughput: Throughput = field(default_factory=Throughput)
    stats: ResourceStats | None = None
    #: for the plot, not report.json: the samples and the series' bad buckets (index since t0)
    samples: list[ResourceSample] = field(default_factory=list, repr=False)
    bad_buckets: list[int] = field(default_factory=list, repr=False)

    @property
    def measured(self) -> bool:
        """There were resource samples to read."""
        return self.verdict != NO_SAMPLES

    def headline(self) -> str:
        """One line for the verdict: the saturation sentence, then the throughput (when measured)."""
        if self.throughput.measured:
            return f"{self.sentence} {self.throughput.sentence()}"
        return self.sentence

    def rule_text(self) -> str:
        """The decision rule in one line (summary.md and report.html print it under the table)."""
        return (
            f"Rule: saturated when, over the seconds that missed the objective, CPU busy + steal ≥ {_pct(CPU_SATURATED)} "
            f"of all cores, or one process ≥ {_pct(SINGLE_CORE_BOUND)} of one core, or I/O wait ≥ "
            f"{_pct(IOWAIT_SATURATED)}, or memory available < {_pct(MEMORY_LOW)} (at least {MIN_BAD} such "
            "seconds sampled); it explains the figures, the checks decide the verdict."
        )

    def table(self) -> list[tuple[str, str, str]]:
        """(what, bad seconds, good seconds) rows comparing the two (empty without samples)."""
        bad, good = self.bad, self.good
        if bad is None and good is None:
            return []

        def both(fn: Callable[[Usage], str]) -> tuple[str, str]:
            return (fn(bad) if bad is not None else "—", fn(good) if good is not None else "—")

        def opt_pct(x: float | None) -> str:
            return "—" if x is None else _pct(x)

        rows = [
            ("seconds (with samples)", *both(lambda u: f"{u.seconds:.0f}")),
            (f"machine CPU busy (of {self.cores} cores)", *both(lambda u: _pct(u.cpu_busy))),
            ("CPU stolen (hypervisor)", *both(lambda u: _pct(u.steal))),
            ("I/O wait", *both(lambda u: _pct(u.iowait))),
            ("load average (1 min)", *both(lambda u: "—" if u.load1 is None else f"{u.load1:.1f}")),
            ("memory available", *both(lambda u: opt_pct(u.mem_available))),
        ]
        labels: list[str] = []
        per: list[dict[str, float]] = []
        for u in (bad, good):
            groups = dict(_with_other(u, self.cores or 1)) if u is not None else {}
            per.append(groups)
            labels += [g for g in groups if g not in labels]
        for label in labels:
            cells = tuple(
                "—" if u is None else f"{per[i].get(label, 0.0):.2f}" for i, u in enumerate((bad, good))
            )
            rows.append((f"{label} (cores)", cells[0], cells[1]))

        def top(u: Usage) -> str:
            t = u.busiest_process()
            return "—" if t is None else f"{t[0]} {_pct(t[1])} of a core"

        rows.append(("busiest process", *both(top)))
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The ``saturation`` section of report.json."""
        return {
            "verdict": self.verdict,
            "resource": self.resource,
            "sentence": self.sentence,
            "rule": {
                "cpu_saturated": CPU_SATURATED,
                "single_core_bound": SINGLE_CORE_BOUND,
                "iowait_saturated": IOWAIT_SATURATED,
                "memory_low": MEMORY_LOW,
                "min_bad_windows": MIN_BAD,
            },
            "cores": self.cores,
            "latency_limit_ms": self.latency_limit_ms,
            "windows": {
                "bucket_s": self.bucket_s,
                "with_traffic": self.windows,
                "bad": self.bad_windows,
                "bad_with_samples": self.bad_sampled,
                "bad_in_faults": self.bad_in_faults,
                "good": self.good_windows,
            },
            "bad": None if self.bad is None else self.bad.to_dict(),
            "good": None if self.good is None else self.good.to_dict(),
            "overall": None if self.overall is None else self.overall.to_dict(),
            "peak_cpu": None if self.peak_cpu is None else round(self.peak_cpu, 4),
            "throughput": self.throughput.to_dict(),
            "source": None
            if self.stats is None
            else {
                "path": self.stats.path,
                "present": self.stats.present,
                "samples": self.stats.samples,
                "malformed": self.stats.malformed,
            },
        }


# ----------------------------------------------------------------------------------------- analysis
def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _cores(x: float) -> str:
    return f"{x:.2f}"


def group_cores(u: Usage) -> list[tuple[str, float]]:
    """Cores per group: "the 3 brokers", "services", then each other role, then other processes."""
    out: list[tuple[str, float]] = []
    rest = dict(u.cores)
    for prefix, name in GROUPS:
        members = [r for r in rest if r.startswith(prefix)]
        if members:
            label = f"the {len(members)} {name}" if len(members) > 1 else members[0]
            out.append((label, sum(rest.pop(r) for r in members)))
    out += sorted(rest.items(), key=lambda kv: -kv[1])
    return out


def analyse(
    samples: Sequence[ResourceSample],
    series: Series | None,
    slo: SloConfig,
    *,
    offered: Offered | None = None,
    faults: Sequence[FaultWindow] = (),
    stats: ResourceStats | None = None,
) -> Saturation:
    """The finding (the rule in the module docstring); pure, for tests and :func:`analyse_run`."""
    throughput = measure_throughput(series, offered)
    limit = slo.intake_p99_ms if slo.intake_p99_ms is not None else slo.window_p99_ms
    if not samples:
        reason = "resources.jsonl absent" if stats is None or not stats.present else "resources.jsonl empty"
        sentence = f"No resource samples ({reason}): saturation not analysed."
        return Saturation(NO_SAMPLES, sentence, throughput=throughput, stats=stats, latency_limit_ms=limit)
    cores = max(s.cores for s in samples)
    overall = usage(samples, sum(s.dt for s in samples))
    peak = max(s.cpu_busy + s.steal for s in samples)
    base = Saturation(NOT_SHOWN, "", cores=cores, latency_limit_ms=limit, overall=overall, peak_cpu=peak)
    base.throughput, base.stats, base.samples = throughput, stats, list(samples)
    if series is None or not any(g is not None for g in series.good):
        base.sentence = "Saturation not shown: no intake latency was measured to read the resources against."
        return base

    b = series.bucket_s
    base.bucket_s = b
    by_bucket: dict[int, list[ResourceSample]] = {}
    for s in samples:
        by_bucket.setdefault(math.floor((s.mid - series.t0) / b), []).append(s)
    bad_idx: list[int] = []
    good_idx: list[int] = []
    slow_only = True
    for k, (ok, p99) in enumerate(zip(series.good, series.p99_ms, strict=True)):
        if ok is None:
            continue
        slow = p99 is not None and p99 >= limit
        if slow or not ok:
            bad_idx.append(k)
            slow_only = slow_only and slow
        else:
            good_idx.append(k)
    base.bad_windows, base.good_windows = len(bad_idx), len(good_idx)
    base.windows = base.bad_windows + base.good_windows
    base.bad_buckets = bad_idx
    base.bad_in_faults = sum(
        any(w.start - series.t0 < (k + 1) * b and w.end - series.t0 > k * b for w in faults) for k in bad_idx
    )
    bad_samples = [s for k in bad_idx for s in by_bucket.get(k, [])]
    good_samples = [s for k in good_idx for s in by_bucket.get(k, [])]
    base.bad_sampled = sum(1 for k in bad_idx if by_bucket.get(k))
    base.bad = usage(bad_samples, base.bad_sampled * b)
    base.good = usage(good_samples, sum(1 for k in good_idx if by_bucket.get(k)) * b)
    assert overall is not None

    if not bad_idx:
        base.verdict = NOT_SATURATED
        base.sentence = (
            f"No saturation: intake met its objectives in all {_secs(base.windows * b)} with traffic; the "
            f"machine was {_pct(overall.cpu)} busy (of {cores} cores) on average, {_pct(peak)} at most."
        )
        return base
    what = (
        f"intake p99 was ≥ {limit:g} ms"
        if slow_only
        else f"intake missed its objectives (p99 ≥ {limit:g} ms or errors ≥ {slo.window_error_rate:.0%})"
    )
    during = f" ({base.bad_in_faults} of them during faults)" if base.bad_in_faults else ""
    if base.bad_sampled < MIN_BAD or base.bad is None:
        base.sentence = (
            f"Saturation not shown: {what} in {_secs(len(bad_idx) * b)}{during}, but only {base.bad_sampled} of "
            f"those seconds have resource samples (at least {MIN_BAD} are needed)."
        )
        return base

    bad, good = base.bad, base.good
    sampled = f", {base.bad_sampled} with samples" if base.bad_sampled < len(bad_idx) else ""
    where = f"in the {_secs(len(bad_idx) * b)} {what}{during}{sampled}"
    if good is not None:
        versus = f", vs {_pct(good.cpu)} in the {good.seconds:.0f} good seconds"
    else:
        versus = ", and no good second was sampled" if good_idx else ", and no second was good"
    top = bad.busiest_process()
    bound = top is not None and top[1] >= SINGLE_CORE_BOUND
    breakdown = ", ".join(f"{label} {_cores(v)}" for label, v in _with_other(bad, cores))
    steal = f" ({_pct(bad.steal)} of it stolen by the hypervisor)" if bad.steal >= 0.05 else ""
    if bad.cpu >= CPU_SATURATED:
        base.verdict, base.resource = SATURATED, "cpu"
        text = (
            f"Saturated: CPU — the machine was {_pct(bad.cpu)} busy{steal} (of {cores} cores) {where}{versus}; "
            f"in those seconds the cores went to: {breakdown}."
        )
        if bound and top is not None:
            text += f" {top[0]}'s busiest process also used {_pct(top[1])} of one core (single-core-bound)."
        base.sentence = text
    elif bound and top is not None:
        base.verdict, base.resource = SATURATED, f"process:{top[0]}"
        good_top = good.busiest.get(top[0]) if good is not None else None
        vs = f", vs {_pct(good_top)} in the good seconds" if good_top is not None else ""
        base.sentence = (
            f"Saturated: {top[0]} is single-core-bound — its busiest process used {_pct(top[1])} of one core "
            f"{where}{vs}, while the machine was {_pct(bad.cpu)} busy (of {cores} cores); cores: {breakdown}."
        )
    elif bad.iowait >= IOWAIT_SATURATED:
        base.verdict, base.resource = SATURATED, "io"
        vs = f", vs {_pct(good.iowait)} in the good seconds" if good is not None else ""
        base.sentence = (
            f"Saturated: I/O — the CPUs waited on I/O {_pct(bad.iowait)} of the time {where}{vs}; the machine "
            f"was {_pct(bad.cpu)} busy (of {cores} cores)."
        )
    elif bad.mem_available is not None and bad.mem_available < MEMORY_LOW:
        base.verdict, base.resource = SATURATED, "memory"
        base.sentence = (
            f"Saturated: memory — only {_pct(bad.mem_available)} of it was available {where}; the machine was "
            f"{_pct(bad.cpu)} busy (of {cores} cores)."
        )
    else:
        busiest = (
            f"the busiest process ({top[0]}) used {_pct(top[1])} of one core"
            if top
            else "no process was sampled"
        )
        base.sentence = (
            f"Saturation not shown: {where}, the machine was {_pct(bad.cpu)} busy (of {cores} cores){versus}; "
            f"{busiest}; I/O wait {_pct(bad.iowait)}. No resource reached its threshold (CPU "
            f"{_pct(CPU_SATURATED)}, one core {_pct(SINGLE_CORE_BOUND)}, I/O wait {_pct(IOWAIT_SATURATED)})."
        )
    return base


def _secs(s: float) -> str:
    return f"{s:.0f} second{'' if round(s) == 1 else 's'}"


def _with_other(u: Usage, cores: int) -> list[tuple[str, float]]:
    """Cores per group, and the rest of the machine's busy time as "other processes"."""
    groups = group_cores(u)
    other = u.cpu_busy * cores - sum(v for _, v in groups)
    if other >= 0.01:
        groups.append(("other processes", other))
    return groups


def measure_throughput(series: Series | None, offered: Offered | None) -> Throughput:
    """Phases of constant nominal rate: offered vs accepted per second, and the best sustained rate."""
    if series is None or not series.accepted_per_s:
        return Throughput(reason="no intake series")
    if offered is None or not offered.times:
        return Throughput(reason="no order_sent record in the ledger")
    b, t0, n = series.bucket_s, series.t0, len(series.accepted_per_s)
    sent = [0] * n
    for t in offered.times:
        k = math.floor((t - t0) / b)
        if 0 <= k < n:
            sent[k] += 1
    # Runs of equal nominal rate, in send order: (index of the first send, nominal).
    runs: list[tuple[int, float | None]] = []
    for i, rate in enumerate(offered.nominal):
        if not runs or runs[-1][1] != rate:
            runs.append((i, rate))
    if len(runs) > MAX_PHASES:
        runs = [(0, None)]
    phases: list[Phase] = []
    for j, (first, rate) in enumerate(runs):
        stop = runs[j + 1][0] if j + 1 < len(runs) else len(offered.times)
        # Whole buckets: the one holding the next phase's first send belongs to the next phase.
        lo = min(n - 1, max(0, math.floor((offered.times[first] - t0) / b)))
        end = offered.times[stop] if stop < len(offered.times) else offered.times[-1] + b
        hi = min(n, max(lo + 1, math.floor((end - t0) / b)))
        width = (hi - lo) * b
        lags = sorted(x for x in offered.lags[first:stop] if x is not None)
        accepted_n = sum(series.accepted_per_s[lo:hi]) * b
        then_booked = series.accepted_then_booked_per_s
        phases.append(
            Phase(
                start_s=lo * b,
                end_s=hi * b,
                nominal_per_s=rate,
                offered_per_s=sum(sent[lo:hi]) / width,
                accepted_per_s=sum(series.accepted_per_s[lo:hi]) * b / width,
                lag_p95_s=lags[max(0, math.ceil(0.95 * len(lags)) - 1)] if lags else None,
                booked_share=sum(then_booked[lo:hi]) * b / accepted_n if then_booked and accepted_n else None,
            )
        )
    k = max(1, math.ceil(SUSTAIN_S / b))
    acc = series.accepted_per_s
    if n <= k:
        peak = sum(acc) / n
    else:
        window = sum(acc[:k])
        peak = window
        for i in range(k, n):
            window += acc[i] - acc[i - k]
            peak = max(peak, window)
        peak /= k
    return Throughput(measured=True, phases=phases, peak_sustained_per_s=peak, sustain_s=k * b)


def analyse_run(run_dir: Path, perf: Performance | None) -> Saturation:
    """:func:`analyse` over ``run_dir``'s resources.jsonl, ledgers and performance figures."""
    samples, stats = read_resources(run_dir / rundir.RESOURCES)
    series = perf.series if perf is not None else None
    offered = (
        read_offered((run_dir / LEDGER_PATH, run_dir / LOCUST_LEDGER_PATH)) if series is not None else None
    )
    slo = perf.slo if perf is not None else SloConfig()
    faults = [f.window for f in perf.faults] if perf is not None else []
    return analyse(samples, series, slo, offered=offered, faults=faults, stats=stats)
