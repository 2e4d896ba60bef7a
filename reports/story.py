"""The verdict in plain words, for a stakeholder who reads one paragraph and no table.

:func:`headline` returns a few sentences, most important first. The first names the outcome and, when it
is not PASS, every check that failed in plain words and whose trouble it was (the platform's: FAIL; the
harness's: INCONCLUSIVE, :mod:`reports.outcome`). Then: how many accepted orders were served, and how the
others ended (:mod:`reports.service`); was anything lost; how available was intake (across how many
faults, with the slowest recovery); how fast were orders handled; did every objective hold; and — when
the run sampled its resources — which resource ran out and whether throughput followed the offered load
(:mod:`reports.saturation`; one item: it explains, never decides).
report.json (``headline``), summary.md, report.html, ``drill report`` and the drill's last lines all
print the same sentences, so they never tell different stories.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from reports.checks import (
    FAILED_BUT_OBSERVED,
    HARNESS_TRAFFIC,
    INPUT,
    ONE_BOOKING,
    ONE_NOTIFICATION,
    ORDERS_TERMINAL,
    TOTAL_QUEUE,
    CheckResult,
)
from reports.outcome import Outcome
from reports.service import (
    ABANDONED,
    CANCELLED,
    DELIVERED,
    FAILED_BY_WORLD,
    REFUSED,
    SERVED_CHECK,
    UNFINISHED,
    Service,
)
from reports.slo import SLO_PREFIX

if TYPE_CHECKING:
    from reports.performance import Performance
    from reports.saturation import Saturation
    from reports.taxonomy import FlowAudit


class Judged(Protocol):
    """What the story reads of an audit (:class:`reports.audit.AuditReport` is one): the story stands
    below the audit, which tells its headline."""

    @property
    def checks(self) -> list[CheckResult]: ...
    @property
    def flows(self) -> Mapping[str, FlowAudit]: ...
    @property
    def strict(self) -> bool: ...
    @property
    def performance(self) -> Performance | None: ...
    @property
    def saturation(self) -> Saturation | None: ...
    @property
    def service(self) -> Service | None: ...
    @property
    def totals(self) -> dict[str, int]: ...
    @property
    def outcome(self) -> Outcome: ...


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


def loss_sentence(report: Judged) -> str:
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


def availability_sentence(report: Judged) -> str | None:
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


def latency_sentence(report: Judged) -> str | None:
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


def saturation_sentence(report: Judged) -> str | None:
    """Where the platform saturated and whether throughput followed the load (only with resource samples)."""
    sat = report.saturation
    if sat is None or not sat.measured:
        return None
    return sat.headline()


#: Plain words for the checks a reader meets most, by name (``{n}``: the count that failed, when known).
_PLAIN: dict[str, str] = {
    SERVED_CHECK: "accepted order{s} {were} ABANDONED by the platform",
    ORDERS_TERMINAL: "accepted order{s} never reached an end nor {were} explained",
    ONE_BOOKING: "order{s} {were} given more than one courier",
    ONE_NOTIFICATION: "customers were not notified exactly once per state change",
    FAILED_BUT_OBSERVED: "orders the platform had rejected were processed anyway",
    "drained": "queues and outboxes did not drain after the traffic",
    "drill[chaos]": "the chaos experiment could not be carried out",
    "drill[traffic]": "the traffic generator failed",
    "drill[completed]": "the drill did not run to its end",
    "drill[heal]": "the rig could not be made whole again",
    HARNESS_TRAFFIC: "the simulator misbehaved (its own messages)",
    INPUT: "the run's evidence is damaged",
}


def describe_check(check: CheckResult) -> str:
    """One failed (or errored) check in plain words, with its name for the curious.

    >>> describe_check(CheckResult("no_order_abandoned", "failed", "...", {"abandoned": 3}))
    '3 accepted orders were ABANDONED by the platform (no_order_abandoned)'
    """
    name = check.name
    if name.startswith(SLO_PREFIX + "["):
        return f"the objective {name[len(SLO_PREFIX) + 1 : -1]} was missed: {check.message} ({name})"
    if name.startswith(TOTAL_QUEUE + "["):
        counts = check.counts
        lost = counts.get("lost", 0)
        flow = name[len(TOTAL_QUEUE) + 1 : -1]
        what = (
            f"{_plural(lost, 'accepted order' if flow == ORDERS_FLOW else f'{flow} message')}"
            f" {'was' if lost == 1 else 'were'} LOST"
            if lost
            else f"the {flow} flow is invalid: {check.message}"
        )
        return f"{what} ({name})"
    plain = _PLAIN.get(name)
    if plain is None:
        return f"{name}: {check.message}"
    n = {
        SERVED_CHECK: check.counts.get(ABANDONED),
        ORDERS_TERMINAL: check.counts.get("unexplained"),
        ONE_BOOKING: check.counts.get("orders_booked_more_than_once"),
    }.get(name)
    plain = plain.format(s="" if n == 1 else "s", were="was" if n == 1 else "were")
    if n:
        return f"{n:,} {plain} ({name})"
    if name.startswith(("drill[", "harness[")) or name in (INPUT, "drained"):
        return f"{plain}: {_first_line(check.message)} ({name})"
    return f"{plain} ({name})"


def _first_line(text: str, limit: int = 240) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def outcome_sentence(report: Judged) -> str:
    """The outcome, and every check that failed, in plain words, and whose trouble it was."""
    outcome = report.outcome
    failed = [c for c in report.checks if c.status == "failed"]
    errors = [c for c in report.checks if c.status == "error"]
    skipped = [c for c in report.checks if c.status == "skipped"]
    if outcome is Outcome.PASS:
        service = report.service
        if service is not None and service.accepted:
            return "PASS: every accepted order was served or explained by the world, and nothing was lost."
        return "PASS: every check held."
    if outcome is Outcome.INCONCLUSIVE:
        text = (
            "INCONCLUSIVE: the harness could not carry out its plan, so this run proves nothing about the "
            "release — " + "; ".join(describe_check(c) for c in errors) + "."
        )
        if failed:
            text += (
                " Also failed, possibly because of that: "
                + "; ".join(describe_check(c) for c in failed)
                + "."
            )
        return text
    parts = [describe_check(c) for c in failed]
    if not parts and report.strict:
        parts = [f"{c.name} had no evidence (skipped, counted as a failure under --strict)" for c in skipped]
    n = len(parts)
    return f"FAIL: the platform broke {n} promise{'' if n == 1 else 's'} — " + "; ".join(parts) + "."


def service_sentence(service: Service | None) -> str | None:
    """How the accepted orders ended: the share served first."""
    if service is None or not service.accepted:
        return None
    c = service.counts
    share = service.served_share
    lead = (
        f"Served {pct(share)} of the {service.accepted - c[CANCELLED] - c[REFUSED]:,} serviceable orders"
        if share is not None
        else "No order was serviceable"
    )
    parts = [f"{c[DELIVERED]:,} delivered"]
    if c[FAILED_BY_WORLD]:
        parts.append(f"{c[FAILED_BY_WORLD]:,} failed at the door (the driver's report)")
    if c[CANCELLED]:
        parts.append(f"{c[CANCELLED]:,} cancelled by their customer")
    if c[REFUSED]:
        parts.append(f"{c[REFUSED]:,} refused by every courier asked")
    parts.append(f"{c[ABANDONED]:,} abandoned by the platform" if c[ABANDONED] else "none abandoned")
    if c[UNFINISHED]:
        parts.append(f"{c[UNFINISHED]:,} unfinished")
    return f"{lead} ({service.accepted:,} accepted): " + ", ".join(parts) + "."


def shed_sentence(service: Service | None) -> str | None:
    """What intake's admission control shed, on its own line (None when it shed nothing).

    Example:
        >>> from reports.service import Shedding
        >>> from collections import Counter
        >>> sh = Shedding(offered=400, requests=520, shed_requests=120, reasons=Counter(queue_depth=120),
        ...               shed_orders=100, accepted_after_shed=97, given_up_after_shed=3)
        >>> print(shed_sentence(Service([], shedding=sh)))
        Intake shed 120 requests for load (100 of the 400 orders offered, 25%, were shed at least once; why: queue_depth 120): 97 accepted when sent again, 3 given up after shedding.
    """
    if service is None or not service.shedding.shed_requests:
        return None
    sh = service.shedding
    why = ", ".join(f"{reason} {n:,}" for reason, n in sh.reasons.most_common())
    share = f", {pct(sh.shed_share)}," if sh.shed_share is not None else ""
    parts = [
        f"{sh.accepted_after_shed:,} accepted when sent again",
        f"{sh.given_up_after_shed:,} given up after shedding",
    ]
    if sh.unresolved:
        parts.append(f"{sh.unresolved:,} neither (an unknown outcome, or the run ended)")
    return (
        f"Intake shed {sh.shed_requests:,} request{'' if sh.shed_requests == 1 else 's'} for load "
        f"({sh.shed_orders:,} of the {sh.offered:,} orders offered{share} were shed at least once; why: {why}): "
        + ", ".join(parts)
        + "."
    )


def headline(report: Judged) -> list[str]:
    """The plain-words verdict, one sentence per item, most important first."""
    sentences = [outcome_sentence(report)]
    for extra in (
        service_sentence(report.service),
        shed_sentence(report.service),
        loss_sentence(report),
        availability_sentence(report),
        latency_sentence(report),
        objectives_sentence(report.checks),
        saturation_sentence(report),
    ):
        if extra:
            sentences.append(extra)
    return sentences
