"""Service-level objectives: a small typed config (``RUN/slo.toml``, optional) and one named check each.

Every field is an objective; ``false`` in the TOML switches that check off (TOML has no null). Unknown
keys are an error (a typo must not silently drop an objective). Example, with the defaults::

    availability = 0.999                # request-based intake availability, at least (a fraction)
    time_availability = 0.99            # share of 1-second windows meeting the window criteria
    window_error_rate = 0.01            # a window is good when its error rate is below this...
    window_p99_ms = 500.0               # ...and its p99 intake latency is below this
    intake_p99_ms = 500.0               # p99 intake latency over the run, below
    accepted_to_booked_p99_s = 60.0     # p99 accepted -> courier booked, below
    accepted_to_delivered_p99_s = 3600.0  # p99 accepted -> delivered (includes the courier's travel)
    failover_s = 30.0                   # every fault: applied -> first success, at most
    drain_s = false                     # every fault: heal -> queues back to baseline, at most (off)

Objectives relative to the same run's fault-free baseline (off by default; the demo uses them), so that
a latency objective means the same on a quiet and on a busy machine — a machine twice as slow makes the
baseline and the faults twice as slow alike::

    baseline_p99_ms = 1000.0            # p99 of the requests sent outside every fault (and its settle
                                        # time) below this: a sanity ceiling a healthy platform is far under
    fault_p99_ratio = 10.0              # every fault: p99 of the requests sent while it held and during
                                        # the settle time after it ≤ max(floor, ratio × baseline p99)
    fault_p99_floor_ms = 2000.0         # parameters of the two above (never off): three broker nodes
                                        # booting at once starve a 2-core machine for seconds
    fault_settle_s = 10.0
    window_p99_ratio = 10.0             # a 1-s window is good when its p99 < max(window_p99_ms, ratio ×
                                        # baseline p99) (parameter of time_availability; off: absolute)

The baseline needs :data:`MIN_BASELINE_REQUESTS` fault-free requests; with fewer, the relative checks are
``skipped`` with the reason (a drill whose faults start at once has no baseline: start them later).

Each objective becomes the check ``slo[<field>]`` (one JUnit test case); an objective whose evidence is
absent (no latency in the ledger, no chaos journal, no queue samples) is ``skipped``, never ``passed``.
A chaos journal with no fault in it *is* evidence: ``failover_s`` / ``drain_s`` then pass (vacuously).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from reports.checks import CheckResult

if TYPE_CHECKING:
    from reports.performance import Performance

SLO_FILE: Final = "slo.toml"
#: Orders that got a courier, as a share of those accepted, that a phase of a run (or a bench step) must
#: keep relative to the best phase's (the first step's): below it the platform accepted orders it could
#: not serve in time — "no courier" is terminal, not lost, but it did not keep up. Used by
#: reports.saturation and ``drill bench platform``.
BOOKED_SHARE_KEPT: Final = 0.8
SLO_PREFIX: Final = "slo"

#: Fields that are fractions in [0, 1] (a common mistake is writing 99.9 for 99.9 %).
_FRACTIONS: Final = frozenset({"availability", "time_availability", "window_error_rate"})
#: Fields that parameterise a check rather than being one (they cannot be switched off).
_PARAMETERS: Final = frozenset({"window_error_rate", "window_p99_ms", "fault_p99_floor_ms", "fault_settle_s"})
#: Fault-free requests the relative objectives need for a baseline p99 that means something.
MIN_BASELINE_REQUESTS: Final = 50


@dataclass(frozen=True)
class SloConfig:
    """The objectives of one run (``None`` = that check is off)."""

    availability: float | None = 0.999
    time_availability: float | None = 0.99
    window_error_rate: float = 0.01
    window_p99_ms: float = 500.0
    intake_p99_ms: float | None = 500.0
    accepted_to_booked_p99_s: float | None = 60.0
    accepted_to_delivered_p99_s: float | None = 3600.0
    failover_s: float | None = 30.0
    drain_s: float | None = None
    baseline_p99_ms: float | None = None
    fault_p99_ratio: float | None = None
    fault_p99_floor_ms: float = 2000.0
    fault_settle_s: float = 10.0
    window_p99_ratio: float | None = None

    def fault_p99_limit(self, baseline_p99: float | None) -> float | None:
        """The p99 every fault must keep: ``max(floor, ratio × baseline p99)`` (None: not measured/off)."""
        if self.fault_p99_ratio is None or baseline_p99 is None:
            return None
        return max(self.fault_p99_floor_ms, self.fault_p99_ratio * baseline_p99)

    def window_p99_limit(self, baseline_p99: float | None) -> float:
        """The p99 a good 1-s window stays under: absolute, or relative to the baseline when asked."""
        if self.window_p99_ratio is None or baseline_p99 is None:
            return self.window_p99_ms
        return max(self.window_p99_ms, self.window_p99_ratio * baseline_p99)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> SloConfig:
        """Validate and build from a parsed TOML table; raises ``ValueError`` with the offending key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown SLO key(s) {unknown}; known: {sorted(known)}")
        # Any: the per-field types (float vs float | None) were enforced above, field by field.
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if value is False and name not in _PARAMETERS:
                values[name] = None
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number (or false to switch it off), not {value!r}")
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
            if name in _FRACTIONS and value > 1:
                raise ValueError(f"{name} is a fraction (e.g. 0.999), not a percentage: got {value}")
            values[name] = float(value)
        return replace(cls(), **values)

    def to_dict(self) -> dict[str, float | None]:
        """The ``slo`` section of report.json (``null`` = off)."""
        return asdict(self)


def load_slo(run_dir: Path) -> SloConfig:
    """``RUN/slo.toml`` if present, else the defaults; raises ``ValueError`` on a bad file."""
    path = run_dir / SLO_FILE
    if not path.is_file():
        return SloConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return SloConfig.from_mapping(raw)


def _name(field_name: str) -> str:
    return f"{SLO_PREFIX}[{field_name}]"


def _pct(x: float) -> str:
    return f"{x * 100:.3f}".rstrip("0").rstrip(".") + "%"


def _bound_check(
    name: str, value: float | None, limit: float, unit: str, what: str, missing: str, *, at_most: bool
) -> CheckResult:
    """``value`` below ``limit`` (strictly: "p99 < 500 ms"), or at most ``limit`` (``at_most``)."""
    if value is None:
        return CheckResult(name, "skipped", f"not measured: {missing}")
    ok = value <= limit if at_most else value < limit
    op = ("≤" if ok else ">") if at_most else ("<" if ok else "≥")
    details = {"value": round(value, 6), "limit": limit, "unit": unit}
    msg = f"{what} {_num(value)} {unit} {op} {limit:g} {unit}"
    return CheckResult(name, "passed" if ok else "failed", msg, {}, {}, details)


def _num(x: float) -> str:
    # 3 significant decimals for seconds, whole-ish for milliseconds: what a reader compares.
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.1f}"


def slo_checks(perf: Performance) -> list[CheckResult]:
    """One named check per objective that is switched on, in the order of :class:`SloConfig`."""
    slo = perf.slo
    out: list[CheckResult] = []
    intake = perf.intake
    if slo.availability is not None:
        name = _name("availability")
        avail = intake.availability
        if avail is None:
            out.append(CheckResult(name, "skipped", "not measured: no intake request with an outcome"))
        else:
            ok = avail >= slo.availability
            msg = (
                f"request availability {_pct(avail)} {'≥' if ok else '<'} {_pct(slo.availability)} "
                f"({intake.ok} ok / {intake.eligible} requests; {intake.rejected} rejected as bad input "
                f"not counted, {intake.unavailable} unavailable)"
            )
            counts = {
                "requests": intake.requests,
                "ok": intake.ok,
                "rejected": intake.rejected,
                "unavailable": intake.unavailable,
            }
            out.append(CheckResult(name, "passed" if ok else "failed", msg, counts))
    if slo.time_availability is not None:
        name = _name("time_availability")
        ta = perf.time
        if ta.availability is None:
            out.append(CheckResult(name, "skipped", "not measured: no intake request"))
        else:
            ok = ta.availability >= slo.time_availability
            relative = (
                f" = max({slo.window_p99_ms:g}, {slo.window_p99_ratio:g} × baseline p99)"
                if slo.window_p99_ratio is not None and ta.p99_ms_below != slo.window_p99_ms
                else ""
            )
            msg = (
                f"{_pct(ta.availability)} of 1-s windows good {'≥' if ok else '<'} "
                f"{_pct(slo.time_availability)} ({ta.good}/{ta.windows} windows with traffic met "
                f"error rate < {_pct(slo.window_error_rate)} and p99 < {ta.p99_ms_below:g} ms{relative})"
            )
            counts = {"windows": ta.windows, "good": ta.good, "empty": ta.empty}
            out.append(CheckResult(name, "passed" if ok else "failed", msg, counts))
    if slo.intake_p99_ms is not None:
        out.append(
            _bound_check(
                _name("intake_p99_ms"),
                intake.latency.get("p99"),
                slo.intake_p99_ms,
                "ms",
                "intake p99 latency",
                "no latency_ms in the intake answers",
                at_most=False,
            )
        )
    out += _relative_checks(perf)
    for field_name, pcts, what in (
        ("accepted_to_booked_p99_s", perf.accepted_to_booked, "p99 accepted → booked"),
        ("accepted_to_delivered_p99_s", perf.accepted_to_delivered, "p99 accepted → delivered"),
    ):
        limit = getattr(slo, field_name)
        if limit is not None:
            out.append(
                _bound_check(
                    _name(field_name),
                    pcts.get("p99"),
                    limit,
                    "s",
                    what,
                    "no accepted order reached that milestone",
                    at_most=False,
                )
            )
    for field_name, values, what in (
        ("failover_s", perf.failover_values(), "slowest failover (fault applied → first success)"),
        ("drain_s", perf.drain_values(), "slowest backlog drain (heal → queues at baseline)"),
    ):
        limit = getattr(slo, field_name)
        if limit is None:
            continue
        name = _name(field_name)
        if not values:
            if perf.measured and not perf.faults and perf.journal is not None and perf.journal.present:
                # The journal is the evidence, and it says no fault was applied: nothing to recover
                # from. Without a journal we cannot tell, so that case stays "skipped".
                out.append(
                    CheckResult(name, "passed", "no fault in the chaos journal: nothing to recover from")
                )
            else:
                out.append(CheckResult(name, "skipped", "not measured: no fault with that measurement"))
            continue
        never = [fid for fid, v in values.items() if v is None]
        if never:
            out.append(
                CheckResult(
                    name,
                    "failed",
                    f"{len(never)} fault(s) never recovered: {', '.join(never[:5])}",
                    {"faults": len(values), "never": len(never)},
                    {"never": never[:10]},
                )
            )
            continue
        worst_id, worst = max(((f, v) for f, v in values.items() if v is not None), key=lambda x: x[1])
        check = _bound_check(name, worst, limit, "s", what, "", at_most=True)
        check.message += f" (fault {worst_id}, {len(values)} fault(s))"
        out.append(check)
    return out


def _relative_checks(perf: Performance) -> list[CheckResult]:
    """``slo[baseline_p99_ms]`` and ``slo[fault_p99_ratio]``: latency against the run's own baseline."""
    slo, base = perf.slo, perf.baseline
    out: list[CheckResult] = []
    short = base.requests < MIN_BASELINE_REQUESTS
    why_short = (
        f"not measured: only {base.requests} fault-free request(s) (at least {MIN_BASELINE_REQUESTS} needed"
        " for a baseline; start the faults later)"
    )
    p99 = base.latency.get("p99")
    base_p99 = None if short or p99 is None else float(p99)
    if slo.baseline_p99_ms is not None:
        name = _name("baseline_p99_ms")
        if base_p99 is None:
            out.append(CheckResult(name, "skipped", why_short))
        else:
            check = _bound_check(
                name, base_p99, slo.baseline_p99_ms, "ms", "fault-free intake p99", "", at_most=False
            )
            check.message += f" ({base.requests} requests outside the faults and their settle time)"
            out.append(check)
    if slo.fault_p99_ratio is not None:
        name = _name("fault_p99_ratio")
        limit = slo.fault_p99_limit(base_p99)
        values = {f.window.fault_id: f.settled.latency.get("p99") for f in perf.faults}
        measured = {k: float(v) for k, v in values.items() if v is not None}
        if limit is None or base_p99 is None:
            out.append(CheckResult(name, "skipped", why_short))
        elif not measured:
            if perf.measured and not perf.faults and perf.journal is not None and perf.journal.present:
                out.append(CheckResult(name, "passed", "no fault in the chaos journal: nothing to compare"))
            else:
                out.append(CheckResult(name, "skipped", "not measured: no fault with intake requests"))
        else:
            worst_id, worst = max(measured.items(), key=lambda x: x[1])
            ok = worst <= limit
            rule = (
                f"max({slo.fault_p99_floor_ms:g} ms, {slo.fault_p99_ratio:g} × baseline p99 {base_p99:g} ms)"
            )
            msg = (
                f"worst fault p99 {_num(worst)} ms {'≤' if ok else '>'} {limit:g} ms = {rule}"
                f" (fault {worst_id} and {slo.fault_settle_s:g} s after it; {len(measured)} fault(s))"
            )
            details = {"value": worst, "limit": limit, "baseline_p99_ms": base_p99, "per_fault": measured}
            over = [k for k, v in measured.items() if v > limit]
            out.append(
                CheckResult(
                    name,
                    "passed" if ok else "failed",
                    msg,
                    {"over": len(over)},
                    {"over": over[:10]} if over else {},
                    details,
                )
            )
    return out
