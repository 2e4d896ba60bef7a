"""The verdict in plain words, for a stakeholder who reads one paragraph and no table.

:func:`headline` returns a few sentences, most important first: was anything lost, how available was
intake (across how many faults, with the slowest recovery), how fast were orders handled, did every
objective hold, and — when the run sampled its resources — which resource ran out and whether
throughput followed the offered load (:mod:`reports.saturation`; one item: it explains, never decides).
report.json (``headline``), summary.md, report.html, ``drill report`` and the drill's last lines all
print the same sentences, so they never tell different stories.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reports.checks import CheckResult
from reports.slo import SLO_PREFIX

if TYPE_CHECKING:
    from reports.audit import AuditReport

ORDERS_FLOW = "orders"


def pct(x: float | None) -> str:
    """99.95% (two decimals, trailing zeros dropped, never rounded up to 100% unless it is)."""
    if x is None:
        return "—"
    if x < 1.0:
        # Floor, not round: 99.996% must not read as "100%" when a request failed.
        value = int(x * 10000) / 100
        return f"{value:.2f}".rstrip("0").rstrip(".") + "%"
    return "100%"


def seconds(x: float | None) -> str:
    """``4.2 s`` / ``350 ms`` / ``—``."""
    if x is None:
        return "—"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.1f} s"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def loss_sentence(report: AuditReport) -> str:
    """Lost / invented / doubled, in words (orders when the run has an orders flow)."""
    orders = report.flows.get(ORDERS_FLOW)
    totals = report.totals
    noun = "accepted order" if orders is not None else "acknowledged message"
    lost = len(orders.lost) if orders is not None else totals["lost"]
    problems: list[str] = []
    if lost:
        problems.append(f"{_plural(lost, noun)} {'was' if lost == 1 else 'were'} LOST")
    if totals["unexpected"]:
        problems.append(f"{_plural(totals['unexpected'], 'message')} appeared that nobody sent")
    if totals["duplicated_effects"]:
        n = totals["duplicated_effects"]
        problems.append(f"{_plural(n, 'side effect')} (booking or notification) happened twice")
    if totals["failed_but_observed"]:
        problems.append(f"{_plural(totals['failed_but_observed'], 'rejected message')} arrived anyway")
    if problems:
        text = "; ".join(problems)
        return text[0].upper() + text[1:] + "."  # not str.capitalize(): it would lower "LOST"
    if orders is not None and orders.acknowledged:
        explained = len(orders.parked_acked) + len(orders.inflight_acked)
        tail = f" ({len(orders.ok):,} finished, {explained:,} parked or still in flight with a reason)"
        return f"No accepted order was lost: all {len(orders.acknowledged):,} are accounted for{tail}."
    return f"No {noun} was lost."


def availability_sentence(report: AuditReport) -> str | None:
    """Availability across the faults, and the slowest recovery."""
    perf = report.performance
    if perf is None:
        return None
    n_faults = len(perf.faults)
    faults = "with no fault injected" if n_faults == 0 else f"across {_plural(n_faults, 'fault')}"
    if not perf.measured:
        return f"Availability was not measured ({perf.reason}); {faults.removeprefix('with ')}."
    ta, ra = perf.time.availability, perf.intake.availability
    sentence = f"Intake stayed available {pct(ta)} of the time ({pct(ra)} of requests) {faults}"
    slowest = perf.slowest_recovery()
    if slowest is not None:
        if slowest.failover_s is None:
            sentence += f"; after {slowest.window.label} intake never served a request again"
        else:
            sentence += f"; the slowest recovery took {seconds(slowest.failover_s)} ({slowest.window.label})"
    return sentence + "."


def latency_sentence(report: AuditReport) -> str | None:
    """Intake and end-to-end latency at the 99th percentile."""
    perf = report.performance
    if perf is None or not perf.measured:
        return None
    parts: list[str] = []
    p99 = perf.intake.latency.get("p99")
    if p99 is not None:
        parts.append(f"intake answered 99% of requests within {seconds(float(p99) / 1000)}")
    orders: list[str] = []
    booked = perf.accepted_to_booked.get("p99")
    if booked is not None:
        orders.append(f"had a courier within {seconds(float(booked))}")
    delivered = perf.accepted_to_delivered.get("p99")
    if delivered is not None:
        orders.append(f"were delivered within {seconds(float(delivered))}")
    if orders:
        parts.append("99% of accepted orders " + " and ".join(orders))
    if not parts:
        return None
    return parts[0][0].upper() + "; ".join(parts)[1:] + "."


def objectives_sentence(checks: list[CheckResult]) -> str | None:
    """Did every objective hold?"""
    slos = [c for c in checks if c.name.startswith(SLO_PREFIX + "[")]
    if not slos:
        return None
    failed = [c.name for c in slos if c.status == "failed"]
    skipped = sum(c.status == "skipped" for c in slos)
    measured = len(slos) - skipped
    tail = f" ({skipped} not measured)" if skipped else ""
    if failed:
        return f"{len(failed)} of {measured} objectives were MISSED: {', '.join(failed)}{tail}."
    return f"All {measured} measured objectives held{tail}."


def saturation_sentence(report: AuditReport) -> str | None:
    """Where the platform saturated and whether throughput followed the load (only with resource samples)."""
    sat = report.saturation
    if sat is None or not sat.measured:
        return None
    return sat.headline()


def headline(report: AuditReport) -> list[str]:
    """The plain-words verdict, one sentence per item, most important first."""
    word = "PASS" if report.exit_code == 0 else "FAIL"
    sentences = [f"{word}.", loss_sentence(report)]
    for extra in (
        availability_sentence(report),
        latency_sentence(report),
        objectives_sentence(report.checks),
        saturation_sentence(report),
    ):
        if extra:
            sentences.append(extra)
    return sentences
