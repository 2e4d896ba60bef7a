"""Hypothesis properties of the classification.

The identities checked (documented in the ``reports`` package docstring)::

    acknowledged = ok + lost + parked_acked + inflight_acked
    attempts     = acknowledged + recovered + failed_but_observed
                   + parked_unacked + inflight_unacked + failed + indeterminate
    observed     = ok + recovered + failed_but_observed + unexpected
    and the fate sets are pairwise disjoint.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reports.checks import ONE_NOTIFICATION, InvariantConfig, one_notification_check, total_queue_check
from reports.ops import Collector
from reports.taxonomy import FATES, FlowAudit, classify

FLOW = "q"

ids = st.sampled_from([f"m{i}" for i in range(12)])
kinds = st.sampled_from(["attempt", "ack", "fail", "unknown", "observe", "parked", "inflight", "effect"])


@st.composite
def any_record(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(kinds)
    rec: dict[str, Any] = {"kind": kind, "id": draw(ids), "flow": FLOW}
    if kind == "parked":
        rec["reason"] = draw(st.sampled_from(["poison", "delivery_limit"]))
    if kind == "effect":
        rec["key"] = [rec["id"], draw(st.sampled_from(["booked", "delivered"]))]
    return rec


def audit_of(records: list[dict[str, Any]]) -> FlowAudit:
    collector = Collector()
    collector.add_records(records)
    return classify(collector.flow(FLOW))


@given(st.lists(any_record(), max_size=60))
def test_counts_always_add_up(records: list[dict[str, Any]]) -> None:
    result = audit_of(records)
    c = result.counts()
    assert c["acknowledged"] == c["ok"] + c["lost"] + c["parked_acked"] + c["inflight_acked"]
    assert c["attempts"] == (
        c["acknowledged"]
        + c["recovered"]
        + c["failed_but_observed"]
        + c["parked_unacked"]
        + c["inflight_unacked"]
        + c["failed"]
        + c["indeterminate"]
    )
    assert c["observed"] == c["ok"] + c["recovered"] + c["failed_but_observed"] + c["unexpected"]
    assert c["parked"] == c["parked_acked"] + c["parked_unacked"]
    assert c["inflight"] == c["inflight_acked"] + c["inflight_unacked"]
    # Every attempted id has exactly one fate.
    fate_sets = [getattr(result, n) for n in FATES]
    for a, b in itertools.combinations(fate_sets, 2):
        assert not a & b
    assert set().union(*fate_sets) == result.attempted
    assert c["observe_records"] == c["observed"] + sum(n - 1 for n in result.duplicated.values())


@given(st.lists(any_record(), max_size=40), st.randoms(use_true_random=False))
def test_verdict_does_not_depend_on_record_order(records: list[dict[str, Any]], rnd: Any) -> None:
    shuffled = list(records)
    rnd.shuffle(shuffled)
    a, b = audit_of(records), audit_of(shuffled)
    assert a.counts() == b.counts()
    assert (a.lost, a.unexpected, a.recovered, a.parked) == (b.lost, b.unexpected, b.recovered, b.parked)
    # The one order-dependent output: an id parked several times is reported with its latest reason.
    assert a.parked_reasons.total() == b.parked_reasons.total()


# --- valid histories ---------------------------------------------------------------------------------

VALID_FATES = ("ok", "ok_retried", "recovered", "failed", "indeterminate", "parked", "inflight")


@st.composite
def valid_history(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A history with no loss, nothing unexpected and no duplicated effect, shuffled."""
    n = draw(st.integers(min_value=1, max_value=25))
    records: list[dict[str, Any]] = []
    for i in range(n):
        mid = f"m{i}"
        fate = draw(st.sampled_from(VALID_FATES))

        def add(kind: str, mid: str = mid, **extra: Any) -> None:
            records.append({"kind": kind, "id": mid, "flow": FLOW, **extra})

        add("attempt")
        if fate == "ok_retried":
            add(draw(st.sampled_from(["unknown", "fail"])))
            add("attempt")
        if fate in ("ok", "ok_retried"):
            add("ack")
            for _ in range(draw(st.integers(min_value=1, max_value=3))):  # duplicates are allowed
                add("observe")
            if draw(st.booleans()):
                add("effect", key=[mid, "delivered", "customer", "sms"])
        elif fate == "recovered":
            add("unknown")
            add("observe")
        elif fate == "failed":
            add("fail")
        elif fate == "indeterminate":
            add("unknown")
        elif fate == "parked":
            add("ack")
            add("parked", reason=draw(st.sampled_from(["poison", "no_courier"])))
        elif fate == "inflight":
            add("ack")
            add("inflight")
    return draw(st.permutations(records))


@given(valid_history())
def test_generated_valid_histories_are_valid(records: list[dict[str, Any]]) -> None:
    result = audit_of(records)
    assert result.valid
    assert total_queue_check(result).status == "passed"


@given(valid_history(), st.data())
def test_removing_an_observed_message_makes_it_lost(
    records: list[dict[str, Any]], data: st.DataObject
) -> None:
    before = audit_of(records)
    # "Observed message" in the Jepsen sense: acknowledged and dequeued. (Removing the observation of a
    # *recovered* id makes it indeterminate, which is correct: nobody promised it would arrive.)
    candidates = sorted(before.ok - before.parked - before.inflight)
    if not candidates:
        records = [
            *records,
            *({"kind": k, "id": "extra", "flow": FLOW} for k in ("attempt", "ack", "observe")),
        ]
        candidates = ["extra"]
    victim = data.draw(st.sampled_from(candidates))
    after = audit_of([r for r in records if not (r["kind"] == "observe" and r["id"] == victim)])
    assert victim in after.lost
    assert not after.valid
    assert total_queue_check(after).status == "failed"


@given(valid_history(), st.text(min_size=1, max_size=8))
def test_observing_a_never_attempted_id_makes_it_unexpected(
    records: list[dict[str, Any]], suffix: str
) -> None:
    ghost = f"ghost-{suffix}"  # generated ids are m<i>: a ghost was never attempted
    after = audit_of([*records, {"kind": "observe", "id": ghost, "flow": FLOW}])
    assert after.unexpected == {ghost}
    assert not after.valid
    assert total_queue_check(after).status == "failed"


@given(valid_history(), st.data())
def test_duplicating_an_effect_fails_the_duplicated_effects_check(
    records: list[dict[str, Any]], data: st.DataObject
) -> None:
    effects = [r for r in records if r["kind"] == "effect"]
    if not effects:
        effects = [{"kind": "effect", "id": "m0", "flow": FLOW, "key": ["m0", "booked", "customer", "sms"]}]
        records = [*records, *effects]
    copy = dict(data.draw(st.sampled_from(effects)))
    after = audit_of([*records, copy])
    assert tuple(copy["key"]) in after.duplicated_effects
    assert total_queue_check(after).status == "failed"
    collector = Collector()
    collector.add_records([*records, copy])
    notification = one_notification_check(
        after, collector.flow(FLOW), InvariantConfig(notification_flow=FLOW)
    )
    assert notification.name == ONE_NOTIFICATION
    assert notification.status == "failed"


@settings(max_examples=50)
@given(st.lists(any_record(), max_size=40))
def test_adding_an_ack_never_reduces_what_must_arrive(records: list[dict[str, Any]]) -> None:
    """Monotonicity: acknowledging one more id can only grow the set the audit holds us to."""
    before = audit_of(records)
    after = audit_of([*records, {"kind": "ack", "id": "m0", "flow": FLOW}])
    assert before.acknowledged <= after.acknowledged
    assert before.lost <= after.lost | after.ok
