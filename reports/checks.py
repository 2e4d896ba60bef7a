"""Named checks: the loss checks of each flow and chain, and the business invariants.

Every check returns a :class:`CheckResult` (name, status, counts, sample ids, message); the JUnit
writer turns each into one test case, and :func:`exit_code` is 0 only when none failed. A check whose
evidence is absent from the run is ``skipped`` (never silently ``passed``): CI can decide with
``--strict`` whether a skip is acceptable. A check whose evidence the harness itself spoiled (damaged
records, a traffic generator that dropped its own messages) is ``error``: the run is INCONCLUSIVE
(:mod:`reports.outcome`), never a platform failure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from reports.ops import FlowData, key_text
from reports.outcome import decide
from reports.readers import SourceStats
from reports.taxonomy import SAMPLE_SIZE, FlowAudit, sample

Status = Literal["passed", "failed", "skipped", "error"]

# Check names are stable identifiers: JUnit test-case names, report.json keys, CI history.
INPUT = "input"
TOTAL_QUEUE = "total_queue"
END_TO_END = "end_to_end"
FAILED_BUT_OBSERVED = "no_failed_but_observed"
ORDERS_TERMINAL = "accepted_orders_terminal_or_explained"
ONE_BOOKING = "at_most_one_booking_per_order"
ONE_NOTIFICATION = "one_notification_per_state_change_per_recipient"
HARNESS_TRAFFIC = "harness[traffic]"


@dataclass
class CheckResult:
    """The outcome of one named check."""

    name: str
    status: Status
    message: str
    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True unless the check failed or the harness spoiled it (a skipped check did not fail)."""
        return self.status not in ("failed", "error")

    def to_dict(self) -> dict[str, Any]:
        """The ``checks[]`` entry of report.json."""
        return {
            "name": self.name,
            "status": self.status,
            "passed": self.passed,
            "message": self.message,
            "counts": dict(self.counts),
            "samples": {k: list(v) for k, v in self.samples.items()},
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class InvariantConfig:
    """Which flows carry the business evidence (the simulator ledger adapter emits these names)."""

    orders_flow: str = "orders"
    booking_flow: str = "booking"
    notification_flow: str = "notification"


def exit_code(checks: Iterable[CheckResult], *, strict: bool = False) -> int:
    """0 PASS, 1 FAIL, 3 INCONCLUSIVE (:func:`reports.outcome.decide`; with ``strict``, a skipped check
    counts as a failure too)."""
    return decide(checks, strict=strict).exit_code


def input_check(sources: Sequence[SourceStats]) -> CheckResult:
    """The evidence is usable: at least one op was read and no source was damaged."""
    counts = {
        "sources": len(sources),
        "records": sum(s.records for s in sources),
        "ops": sum(s.ops for s in sources),
        "malformed": sum(s.malformed for s in sources),
    }
    errors = [err for s in sources for err in s.errors]
    if not sources:
        return CheckResult(INPUT, "error", "no source found in the run directory", counts)
    if counts["malformed"]:
        return CheckResult(
            INPUT,
            "error",
            f"{counts['malformed']} malformed record(s): a partial history can hide or invent a loss",
            counts,
            {"errors": errors[:SAMPLE_SIZE]},
        )
    if not counts["ops"]:
        return CheckResult(INPUT, "error", "the sources hold no operation record", counts)
    return CheckResult(INPUT, "passed", f"{counts['ops']} ops from {len(sources)} source(s)", counts)


def total_queue_check(audit: FlowAudit, prefix: str = TOTAL_QUEUE) -> CheckResult:
    """Jepsen's validity for one flow / chain: no lost, no unexpected, no duplicated effect."""
    counts = audit.counts()
    bad = {k: counts[k] for k in ("lost", "unexpected", "duplicated_effects") if counts[k]}
    name = f"{prefix}[{audit.name}]"
    parts = []
    if counts["attempts"] or counts["observed"] or counts["parked"] or counts["inflight"]:
        parts.append(
            f"attempts={counts['attempts']} acknowledged={counts['acknowledged']} ok={counts['ok']} "
            f"recovered={counts['recovered']} duplicated={counts['duplicated']} "
            f"parked={counts['parked']} inflight={counts['inflight']}"
        )
    if counts["effect_records"]:
        parts.append(f"effects={counts['effect_records']} distinct={counts['effect_keys']}")
    summary = " ".join(parts) or "no ops"
    details: dict[str, Any] = {"parked_reasons": dict(audit.parked_reasons.most_common())}
    if bad:
        what = ", ".join(f"{k}={v}" for k, v in bad.items())
        return CheckResult(name, "failed", f"{what} ({summary})", counts, audit.samples(), details)
    return CheckResult(name, "passed", f"valid: {summary}", counts, audit.samples(), details)


def failed_but_observed_check(audits: Iterable[FlowAudit]) -> CheckResult:
    """An id the system definitely rejected must never arrive: one check over every flow."""
    counts: dict[str, int] = {}
    samples: dict[str, list[str]] = {}
    for audit in audits:
        counts[audit.name] = len(audit.failed_but_observed)
        if audit.failed_but_observed:
            samples[audit.name] = sample(audit.failed_but_observed)
    total = sum(counts.values())
    if total:
        return CheckResult(
            FAILED_BUT_OBSERVED,
            "failed",
            f"{total} id(s) definitely rejected yet observed at the end of their flow",
            counts,
            samples,
        )
    return CheckResult(FAILED_BUT_OBSERVED, "passed", "no rejected id arrived", counts)


def orders_terminal_check(audit: FlowAudit | None, config: InvariantConfig) -> CheckResult:
    """Every accepted order ends in a terminal state, or is explained (parked with a reason, or in
    flight at the cut). In the orders flow an ``observe`` *is* "reached a terminal state"."""
    if audit is None or not audit.attempted:
        return CheckResult(
            ORDERS_TERMINAL, "skipped", f"no order was sent (flow {config.orders_flow!r} is empty)"
        )
    counts = {
        "accepted": len(audit.acknowledged),
        "terminal": len(audit.ok),
        "parked": len(audit.parked_acked),
        "inflight": len(audit.inflight_acked),
        "unexplained": len(audit.lost),
    }
    details = {"parked_reasons": dict(audit.parked_reasons_acked.most_common())}
    samples: dict[str, list[str]] = {}
    if audit.lost:
        samples["unexplained"] = sample(audit.lost)
    if audit.parked_acked:
        samples["parked"] = sample(audit.parked_acked)
    if audit.inflight_acked:
        samples["inflight"] = sample(audit.inflight_acked)
    if audit.lost:
        return CheckResult(
            ORDERS_TERMINAL,
            "failed",
            f"{len(audit.lost)} accepted order(s) never reached a terminal state and are not explained",
            counts,
            samples,
            details,
        )
    return CheckResult(
        ORDERS_TERMINAL,
        "passed",
        f"{counts['accepted']} accepted: {counts['terminal']} terminal, {counts['parked']} parked, "
        f"{counts['inflight']} in flight",
        counts,
        samples,
        details,
    )


def one_booking_check(
    data: FlowData | None, config: InvariantConfig, released: FlowData | None = None
) -> CheckResult:
    """At most one booking per order: booking effects grouped by the order they are about.

    Unlike a duplicated effect (same key twice), two *different* bookings for one order — two couriers
    sent for the same parcel — have different keys, so this groups by the op id instead. A job the
    platform released (its cancel accepted by the courier: a late acceptance after the platform moved
    on, or the customer's cancellation) is not an active booking; it is counted as ``released``.
    """
    if data is None or not data.effects:
        return CheckResult(ONE_BOOKING, "skipped", f"no booking was seen (flow {config.booking_flow!r})")
    gone = {key for _, key in released.effects} if released is not None else set()
    per_order = Counter(i for i, key in data.effects if key not in gone)
    multiple = {i: n for i, n in per_order.items() if n > 1}
    counts = {
        "bookings": len(data.effects),
        "released": sum(1 for _, key in data.effects if key in gone),
        "orders_booked": len({i for i, _ in data.effects}),
        "orders_booked_more_than_once": len(multiple),
    }
    if multiple:
        return CheckResult(
            ONE_BOOKING,
            "failed",
            f"{len(multiple)} order(s) with more than one active booking (max {max(multiple.values())})",
            counts,
            {"orders_booked_more_than_once": sample(multiple)},
        )
    return CheckResult(
        ONE_BOOKING,
        "passed",
        f"{counts['orders_booked']} order(s), one active booking each ({counts['released']} released)",
        counts,
    )


def one_notification_check(
    audit: FlowAudit | None, data: FlowData | None, config: InvariantConfig, orders: FlowAudit | None = None
) -> CheckResult:
    """Exactly one notification per (state change, recipient): no duplicate, and — when the run records
    what was owed (``expect`` ops) — none missing and none sent for a change that never happened.

    An owed notification of an order still in flight at the cut (the traffic stopped, and with it the
    customers' phones, before that delivery ended) is explained, not missing: ``missing_inflight``."""
    if audit is None or data is None or not (data.effects or data.expects):
        return CheckResult(
            ONE_NOTIFICATION, "skipped", f"no notification evidence (flow {config.notification_flow!r})"
        )
    inflight = (orders.inflight_acked | orders.inflight_unacked) if orders is not None else set()
    explained = {k for k in audit.missing_effects if data.expect_ids.get(k) in inflight}
    missing = audit.missing_effects - explained
    counts = {
        "notifications": audit.effect_records,
        "distinct": audit.effect_keys,
        "duplicated": len(audit.duplicated_effects),
        "expected": audit.expected_effects,
        "missing": len(missing),
        "missing_inflight": len(explained),
        "unowed": len(audit.unowed_effects),
    }
    samples: dict[str, list[str]] = {}
    for name, keys in (
        ("duplicated", audit.duplicated_effects.keys()),
        ("missing", missing),
        ("missing_inflight", explained),
        ("unowed", audit.unowed_effects),
    ):
        if keys:
            samples[name] = sample(key_text(k) for k in keys)
    bad = [f"{k}={counts[k]}" for k in ("duplicated", "missing", "unowed") if counts[k]]
    scope = "exactly once" if data.expects else "at most once (no expect records: 'missing' not checked)"
    if bad:
        return CheckResult(ONE_NOTIFICATION, "failed", f"{', '.join(bad)}; checked {scope}", counts, samples)
    owed_inflight = f"; {len(explained)} more owed for orders in flight at the cut" if explained else ""
    return CheckResult(
        ONE_NOTIFICATION,
        "passed",
        f"{counts['distinct']} notification(s), checked {scope}{owed_inflight}",
        counts,
        samples,
    )


def business_checks(
    audits: Mapping[str, FlowAudit], flows: Mapping[str, FlowData], config: InvariantConfig
) -> list[CheckResult]:
    """The three business invariants, in a fixed order."""
    return [
        orders_terminal_check(audits.get(config.orders_flow), config),
        one_booking_check(flows.get(config.booking_flow), config, flows.get("booking_released")),
        one_notification_check(
            audits.get(config.notification_flow),
            flows.get(config.notification_flow),
            config,
            audits.get(config.orders_flow),
        ),
    ]


def harness_traffic_check(faults: Sequence[Mapping[str, Any]], had_ledger: bool) -> CheckResult:
    """``harness[traffic]``: the traffic generator never misbehaved (no ``harness_fault`` record).

    The simulator writes a ``harness_fault`` when it dropped one of its own messages or its courier
    pump failed: the world then did not do what the ledger says it did, and a loss the audit finds may be
    the simulator's. That is the harness's trouble: ``error`` (INCONCLUSIVE), never ``failed``."""
    if not had_ledger:
        return CheckResult(HARNESS_TRAFFIC, "skipped", "no simulator ledger in this run")
    if not faults:
        return CheckResult(HARNESS_TRAFFIC, "passed", "the simulator reported no fault of its own")
    what = Counter(str(f.get("what") or "unknown") for f in faults)
    refs = [str(f["order_ref"]) for f in faults if f.get("order_ref")]
    first = faults[0]
    return CheckResult(
        HARNESS_TRAFFIC,
        "error",
        f"the simulator misbehaved {len(faults)} time(s) ({', '.join(f'{k}: {n}' for k, n in what.most_common())});"
        f" first: {first.get('detail') or first.get('what')}. Any loss of those orders may be the simulator's.",
        dict(what),
        {"orders": sample(refs)} if refs else {},
        {"faults": list(faults[:10])},
    )
