"""The classification itself: Jepsen's total-queue taxonomy over one flow (see the package docstring).

Everything is set algebra over the lists a :class:`~reports.ops.Collector` gathered, so the cost is a
few C-level passes per flow (≈0.1 s per million ids) and fates and counts do not depend on
record order.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from reports.ops import ACK, ATTEMPT, FAIL, INFLIGHT, OBSERVE, UNKNOWN, EffectKey, FlowData, key_text

#: Sample ids kept per category in reports (the smallest ids, so samples are deterministic).
SAMPLE_SIZE = 10

#: The fates of attempted ids, in the order of the tree: every attempted id is in exactly one.
FATES = (
    "ok",
    "lost",
    "parked_acked",
    "inflight_acked",
    "recovered",
    "failed_but_observed",
    "parked_unacked",
    "inflight_unacked",
    "failed",
    "indeterminate",
)

#: Categories that make a flow invalid (Jepsen: lost, unexpected; plus duplicated side effects).
INVALIDATING = ("lost", "unexpected", "duplicated_effects")


@dataclass
class FlowAudit:
    """The fate of every id of one flow (or one end-to-end chain). Sets hold ids; see ``counts()``."""

    name: str
    attempted: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    #: distinct observed ids (the keys of the observation counter: a set view, not a copy).
    observed: AbstractSet[str] = field(default_factory=set)
    ok: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    parked_acked: set[str] = field(default_factory=set)
    inflight_acked: set[str] = field(default_factory=set)
    recovered: set[str] = field(default_factory=set)
    failed_but_observed: set[str] = field(default_factory=set)
    parked_unacked: set[str] = field(default_factory=set)
    inflight_unacked: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    indeterminate: set[str] = field(default_factory=set)
    unexpected: set[str] = field(default_factory=set)
    orphans: set[str] = field(default_factory=set)
    #: id -> times observed, for ids observed more than once (fine if consumers deduplicate).
    duplicated: dict[str, int] = field(default_factory=dict)
    #: final park reason -> ids, over parked_acked | parked_unacked.
    parked_reasons: Counter[str] = field(default_factory=Counter)
    #: the same, over parked_acked only (the "explained" accepted orders).
    parked_reasons_acked: Counter[str] = field(default_factory=Counter)
    attempt_records: int = 0
    observe_records: int = 0
    effect_records: int = 0
    effect_keys: int = 0
    #: effect key -> times seen, for keys seen more than once (never fine).
    duplicated_effects: dict[EffectKey, int] = field(default_factory=dict)
    expected_effects: int = 0
    #: owed (``expect``) but never seen / seen but never owed — only computed when the flow has expects.
    missing_effects: set[EffectKey] = field(default_factory=set)
    unowed_effects: set[EffectKey] = field(default_factory=set)

    @property
    def parked(self) -> set[str]:
        """Every parked id that never arrived (acknowledged or not)."""
        return self.parked_acked | self.parked_unacked

    @property
    def inflight(self) -> set[str]:
        """Every id explicitly in flight at the cut that never arrived."""
        return self.inflight_acked | self.inflight_unacked

    @property
    def valid(self) -> bool:
        """Jepsen's validity, extended to effects: nothing lost, nothing invented, no effect twice."""
        return not (self.lost or self.unexpected or self.duplicated_effects)

    def counts(self) -> dict[str, int]:
        """Every count, in reading order (the keys of report.json and the summary tables)."""
        return {
            "attempts": len(self.attempted),
            "acknowledged": len(self.acknowledged),
            "ok": len(self.ok),
            "lost": len(self.lost),
            "unexpected": len(self.unexpected),
            "duplicated": len(self.duplicated),
            "duplicated_effects": len(self.duplicated_effects),
            "recovered": len(self.recovered),
            "failed_but_observed": len(self.failed_but_observed),
            "failed": len(self.failed),
            "indeterminate": len(self.indeterminate),
            "parked": len(self.parked_acked) + len(self.parked_unacked),
            "parked_acked": len(self.parked_acked),
            "parked_unacked": len(self.parked_unacked),
            "inflight": len(self.inflight_acked) + len(self.inflight_unacked),
            "inflight_acked": len(self.inflight_acked),
            "inflight_unacked": len(self.inflight_unacked),
            "observed": len(self.observed),
            "orphans": len(self.orphans),
            "attempt_records": self.attempt_records,
            "observe_records": self.observe_records,
            "effect_records": self.effect_records,
            "effect_keys": self.effect_keys,
            "expected_effects": self.expected_effects,
            "missing_effects": len(self.missing_effects),
            "unowed_effects": len(self.unowed_effects),
        }

    def samples(self, k: int = SAMPLE_SIZE) -> dict[str, list[str]]:
        """Up to ``k`` ids per non-empty category (effect keys rendered ``a|b|c``)."""
        out: dict[str, list[str]] = {}
        for name, ids in (
            ("lost", self.lost),
            ("unexpected", self.unexpected),
            ("duplicated", self.duplicated.keys()),
            ("recovered", self.recovered),
            ("failed_but_observed", self.failed_but_observed),
            ("failed", self.failed),
            ("indeterminate", self.indeterminate),
            ("parked", self.parked),
            ("inflight", self.inflight),
            ("orphans", self.orphans),
        ):
            if ids:
                out[name] = sample(ids, k)
        for name, keys in (
            ("duplicated_effects", self.duplicated_effects.keys()),
            ("missing_effects", self.missing_effects),
            ("unowed_effects", self.unowed_effects),
        ):
            if keys:
                out[name] = sample((key_text(key) for key in keys), k)
        return out


def sample(ids: Iterable[str], k: int = SAMPLE_SIZE) -> list[str]:
    """The ``k`` smallest ids: deterministic across runs, O(n) instead of a full sort."""
    return heapq.nsmallest(k, ids)


def classify(data: FlowData) -> FlowAudit:
    """Give every id of ``data`` its fate (the tree in the package docstring).

    A million-id flow costs a handful of C-level passes; the passes whose result the counts already
    prove empty are skipped (in a healthy run almost every id is attempted, acked and observed, so
    ``acked - observed`` and ``observed - attempted`` are known to be empty from the sizes alone).
    """
    ids = data.ids
    attempts, acks, fails, unknowns = ids[ATTEMPT], ids[ACK], ids[FAIL], ids[UNKNOWN]
    acked = set(acks)
    failed_any = set(fails)
    unknown_any = set(unknowns)
    # Sources that only record outcomes (an outbox table of confirmed rows) still count as attempts.
    attempted = set(attempts)
    attempted |= acked
    attempted |= failed_any
    attempted |= unknown_any

    observe_counts = Counter(ids[OBSERVE])
    observed = observe_counts.keys()
    parked = set(data.parked)
    inflight = set(ids[INFLIGHT])

    unacked = attempted - acked if len(attempted) != len(acked) else set()
    # An "unanswered try" (more attempts than outcomes) is ambiguous like an unknown outcome: a definite
    # fail of one try says nothing about another try that got no answer. Counted only over unacked ids,
    # which are few, so the Counters stay small.
    ambiguous = unknown_any
    if unacked:
        outcome_counts = Counter(filter(unacked.__contains__, fails))
        outcome_counts.update(filter(unacked.__contains__, unknowns))
        attempt_counts = Counter(filter(unacked.__contains__, attempts))
        ambiguous = unknown_any | {i for i, n in attempt_counts.items() if n > outcome_counts[i]}
    definite_fail = failed_any - ambiguous

    audit = FlowAudit(name=data.name, attempted=attempted, acknowledged=acked, observed=observed)

    # set.intersection/difference accept the Counter directly (membership tests), saving a set copy.
    audit.ok = acked.intersection(observe_counts)
    acked_missing = acked.difference(observe_counts) if len(audit.ok) != len(acked) else set()
    audit.parked_acked = acked_missing & parked
    audit.inflight_acked = (acked_missing - parked) & inflight
    audit.lost = acked_missing - parked - inflight

    unacked_observed = unacked.intersection(observe_counts)
    audit.failed_but_observed = unacked_observed & definite_fail
    audit.recovered = unacked_observed - audit.failed_but_observed
    unacked_missing = unacked - unacked_observed
    audit.parked_unacked = unacked_missing & parked
    audit.inflight_unacked = (unacked_missing - parked) & inflight
    rest = unacked_missing - parked - inflight
    audit.failed = rest & definite_fail
    audit.indeterminate = rest - audit.failed

    if len(audit.ok) + len(unacked_observed) != len(observed):
        audit.unexpected = {i for i in observed if i not in attempted}
    audit.orphans = (parked | inflight) - attempted - observed
    if len(ids[OBSERVE]) != len(observed):
        audit.duplicated = {i: n for i, n in observe_counts.items() if n > 1}
    # The last reason counts: an id parked, replayed and parked again is parked for the later reason.
    audit.parked_reasons_acked = Counter(data.parked[i][-1] for i in audit.parked_acked)
    audit.parked_reasons = audit.parked_reasons_acked + Counter(
        data.parked[i][-1] for i in audit.parked_unacked
    )
    audit.attempt_records = len(attempts)
    audit.observe_records = len(ids[OBSERVE])

    effect_counts = Counter(key for _, key in data.effects)
    audit.effect_records = len(data.effects)
    audit.effect_keys = len(effect_counts)
    if len(effect_counts) != len(data.effects):
        audit.duplicated_effects = {key: n for key, n in effect_counts.items() if n > 1}
    if data.expects:
        owed = set(data.expects)
        audit.expected_effects = len(owed)
        audit.missing_effects = owed - effect_counts.keys()
        audit.unowed_effects = effect_counts.keys() - owed
    return audit


def chain_data(name: str, entry: FlowData, exit_: FlowData, explainers: Iterable[FlowData]) -> FlowData:
    """A synthetic flow for an end-to-end chain: tries and outcomes of ``entry``, observations of
    ``exit_``, and parked / in-flight explanations from every flow in ``explainers``.

    Ids must be the same across the flows of a chain (adapters translate, e.g. delivery id → order ref).
    Effects are per flow and are not carried into a chain (they would be counted twice).
    """
    data = FlowData(name)
    for kind in (ATTEMPT, ACK, FAIL, UNKNOWN):
        data.ids[kind] = entry.ids[kind]
    data.ids[OBSERVE] = exit_.ids[OBSERVE]
    inflight: list[str] = []
    parked: dict[str, list[str]] = {}
    for flow in explainers:
        inflight.extend(flow.ids[INFLIGHT])
        for i, reasons in flow.parked.items():
            parked.setdefault(i, []).extend(reasons)
    data.ids[INFLIGHT] = inflight
    data.parked = parked
    return data


def merge_counts(audits: Iterable[FlowAudit]) -> dict[str, int]:
    """Sum of the per-flow counts (the "all flows" line of the verdict and the summary)."""
    total: Counter[str] = Counter()
    keys: list[str] = []
    for audit in audits:
        counts = audit.counts()
        if not keys:
            keys = list(counts)
        total.update(counts)
    return {k: total[k] for k in keys} if keys else FlowAudit("").counts()


def reasons_total(audits: Iterable[FlowAudit]) -> Mapping[str, int]:
    """Park reasons summed over flows, most common first."""
    total: Counter[str] = Counter()
    for audit in audits:
        total.update(audit.parked_reasons)
    return dict(total.most_common())
