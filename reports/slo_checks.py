"""The objectives of :mod:`reports.slo` held against a run's measured performance: one named check each
(``slo[<field>]``, one JUnit test case). An objective whose evidence is absent is ``skipped``, never
``passed``; the relative objectives need the run's fault-free baseline (see :mod:`reports.slo`).
"""

from __future__ import annotations

from reports.checks import CheckResult
from reports.performance import Performance
from reports.slo import MIN_BASELINE_REQUESTS, SLO_PREFIX


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
