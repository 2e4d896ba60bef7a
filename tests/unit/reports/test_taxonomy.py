"""The total-queue classification on hand-made ledgers: one test per category, then the precedence
rules of the decision tree (package docstring of ``reports``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from reports.ops import Collector, Op, OpError
from reports.taxonomy import FATES, FlowAudit, chain_data, classify


def rec(kind: str, id_: str, flow: str = "q", **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "id": id_, "flow": flow, **extra}


def audit(*records: dict[str, Any], flow: str = "q") -> FlowAudit:
    collector = Collector()
    collector.add_records(records)
    return classify(collector.flow(flow))


def fates(result: FlowAudit) -> dict[str, set[str]]:
    """Every non-empty fate set, by name (what a test compares against)."""
    names = (*FATES, "unexpected", "orphans")
    return {n: getattr(result, n) for n in names if getattr(result, n)}


def test_ok_acknowledged_and_observed() -> None:
    result = audit(rec("attempt", "a"), rec("ack", "a"), rec("observe", "a"))
    assert fates(result) == {"ok": {"a"}}
    assert result.valid


def test_lost_acknowledged_never_observed() -> None:
    result = audit(
        rec("attempt", "a"), rec("ack", "a"), rec("attempt", "b"), rec("ack", "b"), rec("observe", "b")
    )
    assert fates(result) == {"ok": {"b"}, "lost": {"a"}}
    assert not result.valid


def test_unexpected_observed_never_attempted() -> None:
    result = audit(rec("observe", "ghost"))
    assert fates(result) == {"unexpected": {"ghost"}}
    assert not result.valid


def test_duplicated_delivery_is_reported_not_invalid() -> None:
    result = audit(
        rec("attempt", "a"), rec("ack", "a"), rec("observe", "a"), rec("observe", "a"), rec("observe", "a")
    )
    assert result.duplicated == {"a": 3}
    assert fates(result) == {"ok": {"a"}}
    assert result.valid


def test_duplicated_effect_is_invalid() -> None:
    key = ["d1", "picked_up", "customer", "sms"]
    result = audit(
        rec("effect", "d1", key=key),
        rec("effect", "d1", key=key),
        rec("effect", "d1", key=[*key[:3], "email"]),
    )
    assert result.duplicated_effects == {("d1", "picked_up", "customer", "sms"): 2}
    assert result.effect_records == 3
    assert result.effect_keys == 2
    assert not result.valid


def test_recovered_unknown_outcome_but_observed() -> None:
    result = audit(rec("attempt", "a"), rec("unknown", "a"), rec("observe", "a"))
    assert fates(result) == {"recovered": {"a"}}
    assert result.valid


def test_unanswered_attempt_observed_is_recovered() -> None:
    # Like Jepsen's :info: a try with no recorded outcome may have happened.
    result = audit(rec("attempt", "a"), rec("observe", "a"))
    assert fates(result) == {"recovered": {"a"}}


def test_failed_but_observed_is_its_own_category() -> None:
    result = audit(rec("attempt", "a"), rec("fail", "a"), rec("observe", "a"))
    assert fates(result) == {"failed_but_observed": {"a"}}
    # Jepsen validity is unchanged (the separate check fails the run; see test_checks).
    assert result.valid


def test_failed_and_not_observed_is_correct() -> None:
    result = audit(rec("attempt", "a"), rec("fail", "a"))
    assert fates(result) == {"failed": {"a"}}


def test_unknown_never_observed_is_indeterminate_not_lost() -> None:
    result = audit(rec("attempt", "a"), rec("unknown", "a"), rec("attempt", "b"))
    assert fates(result) == {"indeterminate": {"a", "b"}}
    assert result.valid


def test_in_flight_explains_an_acknowledged_id() -> None:
    result = audit(
        rec("attempt", "a"), rec("ack", "a"), rec("inflight", "a"), rec("attempt", "b"), rec("inflight", "b")
    )
    assert fates(result) == {"inflight_acked": {"a"}, "inflight_unacked": {"b"}}
    assert result.inflight == {"a", "b"}
    assert result.valid


def test_parked_with_reasons_counted() -> None:
    result = audit(
        rec("attempt", "a"),
        rec("ack", "a"),
        rec("parked", "a", reason="delivery_limit"),
        rec("attempt", "b"),
        rec("ack", "b"),
        rec("parked", "b", reason="delivery_limit"),
        rec("attempt", "c"),
        rec("parked", "c", attrs={"reason": "no_courier"}),
        rec("attempt", "d"),
        rec("ack", "d"),
        rec("parked", "d"),
    )
    assert fates(result) == {"parked_acked": {"a", "b", "d"}, "parked_unacked": {"c"}}
    assert result.parked_reasons == Counter({"delivery_limit": 2, "no_courier": 1, "unspecified": 1})
    assert result.parked_reasons_acked == Counter({"delivery_limit": 2, "unspecified": 1})
    assert result.valid


def test_last_park_reason_wins_and_parked_beats_inflight() -> None:
    result = audit(
        rec("ack", "a"),
        rec("parked", "a", reason="poison"),
        rec("parked", "a", reason="delivery_limit"),
        rec("inflight", "a"),
    )
    assert fates(result) == {"parked_acked": {"a"}}
    assert result.parked_reasons == Counter({"delivery_limit": 1})


def test_parked_then_replayed_and_observed_is_ok() -> None:
    result = audit(rec("attempt", "a"), rec("ack", "a"), rec("parked", "a", reason="x"), rec("observe", "a"))
    assert fates(result) == {"ok": {"a"}}
    assert not result.parked_reasons


# --- precedence rules ------------------------------------------------------------------------------


def test_ack_beats_fail_of_another_try() -> None:
    result = audit(
        rec("attempt", "a"), rec("fail", "a"), rec("attempt", "a"), rec("ack", "a"), rec("observe", "a")
    )
    assert fates(result) == {"ok": {"a"}}


def test_fail_plus_unknown_observed_is_recovered_not_a_bug() -> None:
    result = audit(
        rec("attempt", "a"), rec("unknown", "a"), rec("attempt", "a"), rec("fail", "a"), rec("observe", "a")
    )
    assert fates(result) == {"recovered": {"a"}}


def test_fail_plus_unanswered_retry_is_ambiguous() -> None:
    observed = audit(rec("attempt", "a"), rec("fail", "a"), rec("attempt", "a"), rec("observe", "a"))
    assert fates(observed) == {"recovered": {"a"}}
    missing = audit(rec("attempt", "a"), rec("fail", "a"), rec("attempt", "a"))
    assert fates(missing) == {"indeterminate": {"a"}}


def test_outcomes_imply_an_attempt() -> None:
    # Outbox tables record only confirmed rows: an ack alone is an attempted id.
    result = audit(rec("ack", "a"), rec("observe", "a"), rec("ack", "b"))
    assert result.attempted == {"a", "b"}
    assert fates(result) == {"ok": {"a"}, "lost": {"b"}}


def test_orphans_are_reported_not_invalid() -> None:
    result = audit(rec("parked", "x", reason="r"), rec("inflight", "y"))
    assert fates(result) == {"orphans": {"x", "y"}}
    assert result.valid


def test_flows_are_separate() -> None:
    collector = Collector()
    collector.add_records(
        [rec("attempt", "a", flow="one"), rec("ack", "a", flow="one"), rec("observe", "a", flow="two")]
    )
    assert fates(classify(collector.flow("one"))) == {"lost": {"a"}}
    assert fates(classify(collector.flow("two"))) == {"unexpected": {"a"}}


def test_chain_joins_entry_outcomes_with_exit_observations() -> None:
    collector = Collector()
    collector.add_records(
        [
            rec("attempt", "a", flow="intake"),
            rec("ack", "a", flow="intake"),
            rec("attempt", "b", flow="intake"),
            rec("ack", "b", flow="intake"),
            rec("attempt", "c", flow="intake"),
            rec("ack", "c", flow="intake"),
            rec("observe", "a", flow="delivery"),
            rec("parked", "b", flow="dispatch", reason="no_courier"),  # explained by a middle flow
        ]
    )
    data = chain_data("e2e", collector.flow("intake"), collector.flow("delivery"), collector.flows.values())
    assert fates(classify(data)) == {"ok": {"a"}, "parked_acked": {"b"}, "lost": {"c"}}


def test_expectations_give_missing_and_unowed_effects() -> None:
    result = audit(
        rec("expect", "d", key=["d", "booked", "customer", "sms"]),
        rec("expect", "d", key=["d", "delivered", "customer", "sms"]),
        rec("effect", "d", key=["d", "booked", "customer", "sms"]),
        rec("effect", "d", key=["d", "cancelled", "customer", "sms"]),
    )
    assert result.missing_effects == {("d", "delivered", "customer", "sms")}
    assert result.unowed_effects == {("d", "cancelled", "customer", "sms")}


def test_samples_are_the_smallest_ids_and_bounded() -> None:
    records = [r for i in range(30) for r in (rec("ack", f"m{i:02d}"),)]
    result = audit(*records)
    assert result.samples(k=3)["lost"] == ["m00", "m01", "m02"]


def test_typed_ops_and_records_agree() -> None:
    typed = Collector()
    typed.add_many(
        [
            Op("attempt", "a", "q", 1.0),
            Op("ack", "a", "q", 2.0),
            Op("parked", "a", "q", 3.0, attrs={"reason": "poison"}),
            Op("effect", "a", "q", 4.0, key=("a", "x")),
        ]
    )
    plain = Collector()
    plain.add_records(
        [
            rec("attempt", "a", t=1.0),
            rec("ack", "a", t=2.0),
            rec("parked", "a", t=3.0, reason="poison"),
            rec("effect", "a", t=4.0, key=["a", "x"]),
        ]
    )
    assert classify(typed.flow("q")).counts() == classify(plain.flow("q")).counts()
    assert classify(typed.flow("q")).parked_reasons == Counter({"poison": 1})
    assert (typed.t_min, typed.t_max) == (plain.t_min, plain.t_max) == (1.0, 4.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "teleport", "id": "a"},
        {"kind": "ack"},
        {"id": "a"},
        {"kind": "ack", "id": ""},
        {"kind": "ack", "id": None},
        {"kind": "ack", "id": ["a"]},
        {"kind": "ack", "id": "a", "t": "yesterday"},
        {"kind": "effect", "id": "a"},
        {"kind": "effect", "id": "a", "key": {"delivery": "a"}},
        ["ack", "a"],
    ],
)
def test_malformed_records_are_rejected_without_trace(bad: Any) -> None:
    collector = Collector()
    with pytest.raises(OpError):
        collector.add_record(bad)
    assert all(d.records() == 0 for d in collector.flows.values())
    assert collector.t_min is None


def test_integer_ids_are_accepted_as_strings() -> None:
    result = audit({"kind": "ack", "id": 7, "flow": "q"}, {"kind": "observe", "id": "7", "flow": "q"})
    assert fates(result) == {"ok": {"7"}}


@pytest.mark.parametrize(
    "bad",
    [
        Op("teleport", "a"),
        Op("ack", ""),
        Op("ack", "a", t="noon"),  # type: ignore[arg-type]
        Op("effect", "a", t=5.0),
    ],
)
def test_malformed_typed_ops_are_rejected(bad: Op) -> None:
    collector = Collector()
    with pytest.raises(OpError):
        collector.add(bad)
    assert all(d.records() == 0 for d in collector.flows.values())
    assert collector.t_min is None
