"""Named checks: the business invariants, the input check, failed-but-observed, the exit code."""

from __future__ import annotations

from typing import Any

from reports.audit import AuditConfig, Chain, audit_collected
from reports.checks import (
    FAILED_BUT_OBSERVED,
    INPUT,
    ONE_BOOKING,
    ONE_NOTIFICATION,
    ORDERS_TERMINAL,
    CheckResult,
    exit_code,
)
from reports.ops import Collector
from reports.readers import SourceStats


def rec(kind: str, id_: str, flow: str = "orders", **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "id": id_, "flow": flow, **extra}


def run(*records: dict[str, Any], config: AuditConfig | None = None) -> dict[str, CheckResult]:
    collector = Collector()
    collector.add_records(records)
    source = SourceStats(source="mem", reader="test", records=len(records), ops=len(records))
    report = audit_collected(collector, [source], config or AuditConfig())
    return {c.name: c for c in report.checks}


def order(id_: str, *tail: str) -> list[dict[str, Any]]:
    return [rec("attempt", id_), rec("ack", id_), *(rec(k, id_) for k in tail)]


def test_a_clean_run_passes_every_check() -> None:
    checks = run(
        *order("o1", "observe"),
        rec("effect", "o1", flow="booking", key=["o1", "stuart", "b1"]),
        rec("effect", "o1", flow="notification", key=["o1", "delivered", "customer", "sms"]),
    )
    assert {n: c.status for n, c in checks.items()} == {
        INPUT: "passed",
        "total_queue[booking]": "passed",
        "total_queue[notification]": "passed",
        "total_queue[orders]": "passed",
        FAILED_BUT_OBSERVED: "passed",
        ORDERS_TERMINAL: "passed",
        ONE_BOOKING: "passed",
        ONE_NOTIFICATION: "passed",
    }
    assert exit_code(checks.values()) == 0


def test_accepted_orders_must_end_terminal_or_be_explained() -> None:
    checks = run(
        *order("o1", "observe"),
        *order("o2"),
        *order("o3", "inflight"),
        *order("o4"),
        rec("parked", "o4", reason="no_courier"),
    )
    check = checks[ORDERS_TERMINAL]
    assert check.status == "failed"
    assert check.counts == {"accepted": 4, "terminal": 1, "parked": 1, "inflight": 1, "unexplained": 1}
    assert check.samples["unexplained"] == ["o2"]
    assert check.details["parked_reasons"] == {"no_courier": 1}
    assert checks["total_queue[orders]"].status == "failed"
    assert exit_code(checks.values()) == 1


def test_explained_orders_pass_and_rejected_orders_are_not_owed() -> None:
    checks = run(*order("o1", "inflight"), rec("attempt", "o2"), rec("fail", "o2"), *order("o3", "observe"))
    assert checks[ORDERS_TERMINAL].status == "passed"
    assert checks[ORDERS_TERMINAL].counts["accepted"] == 2


def test_two_bookings_for_one_order_fail_even_with_different_keys() -> None:
    checks = run(
        *order("o1", "observe"),
        rec("effect", "o1", flow="booking", key=["o1", "stuart", "b1"]),
        rec("effect", "o1", flow="booking", key=["o1", "gophr", "b2"]),
        rec("effect", "o2", flow="booking", key=["o2", "stuart", "b3"]),
    )
    check = checks[ONE_BOOKING]
    assert check.status == "failed"
    assert check.counts == {
        "bookings": 3,
        "released": 0,
        "orders_booked": 2,
        "orders_booked_more_than_once": 1,
    }
    assert check.samples["orders_booked_more_than_once"] == ["o1"]
    # Different keys: not a duplicated *effect*, so the flow's total-queue check stays green.
    assert checks["total_queue[booking]"].status == "passed"


def test_a_booking_the_platform_released_is_not_a_second_booking() -> None:
    # A late acceptance after the platform moved on to the next courier: cancelled, then the next booked.
    checks = run(
        *order("o1", "observe"),
        rec("effect", "o1", flow="booking", key=["o1", "zoomly", "j1"]),
        rec("effect", "o1", flow="booking_released", key=["o1", "zoomly", "j1"]),
        rec("effect", "o1", flow="booking", key=["o1", "dashly", "j2"]),
    )
    check = checks[ONE_BOOKING]
    assert check.status == "passed", check.message
    assert check.counts == {
        "bookings": 2,
        "released": 1,
        "orders_booked": 1,
        "orders_booked_more_than_once": 0,
    }


def test_notifications_exactly_once_with_expectations() -> None:
    key = ["o1", "picked_up", "customer", "sms"]
    checks = run(
        rec("expect", "o1", flow="notification", key=key),
        rec("expect", "o1", flow="notification", key=["o1", "delivered", "customer", "sms"]),
        rec("effect", "o1", flow="notification", key=key),
    )
    check = checks[ONE_NOTIFICATION]
    assert check.status == "failed"
    assert check.counts["missing"] == 1
    assert check.samples["missing"] == ["o1|delivered|customer|sms"]
    assert "exactly once" in check.message


def test_notifications_without_expectations_check_at_most_once() -> None:
    key = ["o1", "picked_up", "customer", "sms"]
    passing = run(rec("effect", "o1", flow="notification", key=key))[ONE_NOTIFICATION]
    assert passing.status == "passed"
    assert "at most once" in passing.message
    failing = run(
        rec("effect", "o1", flow="notification", key=key), rec("effect", "o1", flow="notification", key=key)
    )[ONE_NOTIFICATION]
    assert failing.status == "failed"
    assert failing.counts["duplicated"] == 1


def test_business_checks_without_evidence_are_skipped_not_passed() -> None:
    checks = run(
        rec("attempt", "m1", flow="amqp"), rec("ack", "m1", flow="amqp"), rec("observe", "m1", flow="amqp")
    )
    for name in (ORDERS_TERMINAL, ONE_BOOKING, ONE_NOTIFICATION):
        assert checks[name].status == "skipped"
        assert checks[name].passed
    assert exit_code(checks.values()) == 0
    assert exit_code(checks.values(), strict=True) == 1


def test_failed_but_observed_fails_its_own_check() -> None:
    checks = run(rec("attempt", "o1"), rec("fail", "o1"), rec("observe", "o1"))
    check = checks[FAILED_BUT_OBSERVED]
    assert check.status == "failed"
    assert check.samples == {"orders": ["o1"]}
    assert checks["total_queue[orders]"].status == "passed"  # Jepsen-valid, yet the run fails
    assert exit_code(checks.values()) == 1


def test_input_check_fails_without_ops_or_with_malformed_records() -> None:
    collector = Collector()
    empty = audit_collected(collector, [])
    assert {c.name: c.status for c in empty.checks}[INPUT] == "error"  # no evidence: the harness's trouble
    damaged = SourceStats(source="x", reader="jsonl", records=3, ops=2)
    damaged.error("x:2", "invalid JSON")
    collector.add_records(order("o1", "observe"))
    report = audit_collected(collector, [damaged])
    check = report.checks[0]
    assert (check.name, check.status, check.counts["malformed"]) == (INPUT, "error", 1)
    assert check.samples["errors"] == ["x:2: invalid JSON"]
    assert report.exit_code == 3  # damaged evidence proves nothing either way: INCONCLUSIVE


def test_chain_checks_end_to_end_and_fail_when_a_flow_is_absent() -> None:
    config = AuditConfig(chains=(Chain("door", "intake", "delivery"), Chain("nowhere", "intake", "missing")))
    checks = run(
        rec("attempt", "o1", flow="intake"),
        rec("ack", "o1", flow="intake"),
        rec("observe", "o1", flow="delivery"),
        rec("attempt", "o2", flow="intake"),
        rec("ack", "o2", flow="intake"),
        config=config,
    )
    assert checks["end_to_end[door]"].status == "failed"
    assert checks["end_to_end[door]"].samples["lost"] == ["o2"]
    assert checks["end_to_end[nowhere]"].status == "failed"
    assert "missing" in checks["end_to_end[nowhere]"].message
