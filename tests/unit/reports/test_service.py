"""The served audit: every accepted order ends delivered, cancelled, refused or failed by the world —
anything else is abandoned and fails the run; and the three outcomes with their exit codes and JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from reports.audit import audit_run
from reports.checks import CheckResult
from reports.outcome import EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS, Outcome, decide
from reports.service import (
    ABANDONED,
    CANCELLED,
    DELIVERED,
    FAILED_BY_WORLD,
    REFUSED,
    UNFINISHED,
    Window,
    WorldRecord,
    classify,
    service_check,
)
from reports.story import headline
from reports.writers.junit import junit_xml

T = 1_000.0


def _world(*records: dict[str, Any]) -> WorldRecord:
    w = WorldRecord()
    for r in records:
        w.feed(r, {})
    return w


def accepted(ref: str, t: float = T) -> dict[str, Any]:
    return {
        "kind": "order_answer",
        "t": t,
        "order_ref": ref,
        "outcome": "accepted",
        "delivery_id": f"d-{ref}",
    }


def told(ref: str, state: str, t: float = T + 50) -> dict[str, Any]:
    return {"kind": "notification_received", "t": t, "order_ref": ref, "state": state, "audience": "customer"}


def courier(ref: str, c: str, kind: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "t": t, "order_ref": ref, "courier": c, **fields}


def ending(world: WorldRecord, ref: str) -> tuple[str, str]:
    (e,) = classify(world, [ref]).endings
    return e.ending, e.why


def test_delivered_cancelled_and_failed_at_the_door() -> None:
    w = _world(
        accepted("o1"), told("o1", "delivered"),
        accepted("o2"), {"kind": "cancel_sent", "t": T + 5, "order_ref": "o2"}, told("o2", "cancelled"),
        accepted("o3"), {"kind": "status_sent", "t": T + 40, "order_ref": "o3", "canonical": "failed"},
        told("o3", "failed"),
    )  # fmt: skip
    assert [ending(w, r)[0] for r in ("o1", "o2", "o3")] == [DELIVERED, CANCELLED, FAILED_BY_WORLD]


def test_a_cancellation_nobody_asked_for_is_abandoned() -> None:
    w = _world(accepted("o1"), told("o1", "cancelled"))
    assert ending(w, "o1") == (ABANDONED, "cancelled, but nobody asked for it")


def test_refused_only_when_every_courier_asked_refused_for_good() -> None:
    """Declined, down (outage), quoted outside the retailer's rules, or no driver: the world said no."""
    refusals = [
        courier("o1", "zoomly", "quote_request_seen", T + 1),
        courier("o1", "zoomly", "quote_sent", T + 2, type="quote_declined", reason="out_of_area"),
        courier("o1", "dashly", "quote_request_seen", T + 1),
        courier("o1", "dashly", "quote_unanswered", T + 1, reason="outage"),
        courier("o1", "pedalo", "quote_request_seen", T + 1),
        courier("o1", "pedalo", "quote_sent", T + 2, type="quote", retailer_ok=False),
        courier("o1", "vanguard", "quote_request_seen", T + 1),
        courier("o1", "vanguard", "quote_sent", T + 2, type="quote", retailer_ok=True),
        courier("o1", "vanguard", "booking_answer_sent", T + 3, type="booking_rejected", reason="no_driver_available"),
    ]  # fmt: skip
    w = _world(accepted("o1"), *refusals, told("o1", "failed"))
    e, why = ending(w, "o1")
    assert e == REFUSED, why
    assert why == "dashly: outage, pedalo: unsuitable, vanguard: refused, zoomly: declined"


@pytest.mark.parametrize(
    ("last", "why"),
    [
        # The platform let the quote expire (a broker fault): its fault, not the courier's refusal.
        ({"type": "booking_rejected", "reason": "quote_expired"}, "zoomly: quote_expired"),
        # A suitable quote nobody booked.
        (None, "zoomly: quoted"),
    ],
)
def test_a_courier_left_with_a_live_or_expired_quote_means_abandoned(
    last: dict[str, Any] | None, why: str
) -> None:
    recs = [
        courier("o1", "zoomly", "quote_request_seen", T + 1),
        courier("o1", "zoomly", "quote_sent", T + 2, type="quote", retailer_ok=True),
    ]
    if last is not None:
        recs.append(courier("o1", "zoomly", "booking_answer_sent", T + 20, **last))
    w = _world(accepted("o1"), *recs, told("o1", "failed"))
    assert ending(w, "o1") == (ABANDONED, why)


def test_the_couriers_last_word_counts_across_rounds() -> None:
    """Round 1: quote expired during an outage. Round 2: a fresh quote, then no driver: refused."""
    recs = [
        courier("o1", "zoomly", "quote_sent", T + 2, type="quote"),
        courier("o1", "zoomly", "booking_answer_sent", T + 20, type="booking_rejected", reason="quote_expired"),
        courier("o1", "zoomly", "quote_request_seen", T + 21),
        courier("o1", "zoomly", "quote_sent", T + 22, type="quote"),
        courier("o1", "zoomly", "booking_answer_sent", T + 23, type="booking_rejected", reason="no_capacity"),
    ]  # fmt: skip
    w = _world(accepted("o1"), *reversed(recs), told("o1", "failed"))  # any order of records
    assert ending(w, "o1") == (REFUSED, "zoomly: refused")


def test_no_courier_asked_is_abandoned_and_no_end_is_unfinished() -> None:
    w = _world(accepted("o1"), told("o1", "failed"), accepted("o2"))
    assert ending(w, "o1") == (ABANDONED, "no courier was asked")
    assert ending(w, "o2")[0] == UNFINISHED


def test_the_check_fails_on_abandoned_orders_and_breaks_down_by_window() -> None:
    w = _world(
        accepted("o1", T), told("o1", "delivered"),
        accepted("o2", T + 10), courier("o2", "zoomly", "quote_sent", T + 11, type="quote"), told("o2", "failed"),
        accepted("o3", T + 12), {"kind": "cancel_sent", "t": T + 13, "order_ref": "o3"}, told("o3", "cancelled"),
    )  # fmt: skip
    service = classify(w, ["o1", "o2", "o3"], [Window("fault 1: kill_node 2", T + 5, T + 15)])
    check = service_check(service)
    assert check.status == "failed" and check.counts[ABANDONED] == 1 and check.samples["abandoned"] == ["o2"]
    assert check.message.startswith(
        "1 of 3 accepted order(s) ABANDONED by the platform (the asked couriers' last words: quoted 1)"
    )
    assert service.served_share == 0.5  # 1 delivered of 2 serviceable (o3 was cancelled)
    ((_window, counts),) = service.by_window
    assert (counts[ABANDONED], counts[CANCELLED], counts[DELIVERED]) == (1, 1, 0)
    doc = service.to_dict()
    assert (
        doc["by_window"][0]["label"] == "fault 1: kill_node 2" and doc["by_window"][0]["served_share"] == 0.0
    )
    json.dumps(doc, allow_nan=False)
    clean = classify(_world(accepted("o1"), told("o1", "delivered")), ["o1"])
    assert service_check(clean).status == "passed"
    assert service_check(None).status == "skipped"


@pytest.mark.parametrize(
    ("statuses", "outcome", "code"),
    [
        (["passed", "skipped"], Outcome.PASS, EXIT_PASS),
        (["passed", "failed"], Outcome.FAIL, EXIT_FAIL),
        (["error", "passed"], Outcome.INCONCLUSIVE, EXIT_INCONCLUSIVE),
        # Harness trouble makes every other finding untrustworthy: INCONCLUSIVE, failures listed beside it.
        (["failed", "error"], Outcome.INCONCLUSIVE, EXIT_INCONCLUSIVE),
    ],
)
def test_three_outcomes_and_their_exit_codes(statuses: list[str], outcome: Outcome, code: int) -> None:
    checks = [CheckResult(f"c{i}", s, "m") for i, s in enumerate(statuses)]  # type: ignore[arg-type]
    assert decide(checks) is outcome and outcome.exit_code == code


def _run_with_ledger(tmp_path: Path, extra: list[dict[str, Any]]) -> Path:
    run = tmp_path / "20261207T010737Z-kill-leader"
    (run / "simulator").mkdir(parents=True)
    recs = [
        {"kind": "order_sent", "t": T - 0.01, "order_ref": "o1"},
        accepted("o1"),
        told("o1", "delivered"),
        {"kind": "order_sent", "t": T + 1, "order_ref": "o2"},
        accepted("o2", T + 1.01),
        courier("o2", "zoomly", "quote_request_seen", T + 2),
        courier("o2", "zoomly", "quote_sent", T + 3, type="quote", retailer_ok=True),
        courier("o2", "zoomly", "booking_answer_sent", T + 30, type="booking_rejected", reason="quote_expired"),
        told("o2", "failed"),
        *extra,
    ]  # fmt: skip
    lines = [json.dumps({"t": r["t"], "kind": r["kind"], **{k: v for k, v in r.items() if k not in ("t", "kind")}},
                        separators=(",", ":")) for r in recs]  # fmt: skip
    (run / "simulator" / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_an_abandoned_order_fails_the_run_and_the_report_says_so_first(tmp_path: Path) -> None:
    report = audit_run(_run_with_ledger(tmp_path, []))
    assert report.outcome is Outcome.FAIL and report.abandoned == 1
    assert "VERDICT: FAIL lost=0 abandoned=1 " in report.verdict_line()
    first = headline(report)[0]
    assert (
        first
        == "FAIL: the platform broke 1 promise — 1 accepted order was ABANDONED by the platform (no_order_abandoned)."
    )
    root = ET.fromstring(junit_xml(report))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "drill.kill-leader" and suite.get("errors") == "0"
    case = root.find(".//testcase[@name='no_order_abandoned']")
    assert (
        case is not None and case.get("classname") == "drill.kill-leader" and case.find("failure") is not None
    )


def test_a_simulator_that_dropped_its_own_message_makes_the_run_inconclusive(tmp_path: Path) -> None:
    """The harness's trouble is never the platform's failure: an <error> in JUnit, exit 3, and the first
    sentence says whose trouble it was, with the platform's failures listed as possibly caused by it."""
    fault = {"kind": "harness_fault", "t": T + 40, "source": "simulator", "what": "courier_message_dropped",
             "detail": "a booking answer of o2 was dropped", "order_ref": "o2"}  # fmt: skip
    report = audit_run(_run_with_ledger(tmp_path, [fault]))
    assert report.outcome is Outcome.INCONCLUSIVE and report.exit_code == EXIT_INCONCLUSIVE
    first = headline(report)[0]
    assert first.startswith("INCONCLUSIVE: the harness could not carry out its plan")
    assert "the simulator misbehaved (its own messages)" in first and "possibly because of that" in first
    root = ET.fromstring(junit_xml(report))
    case = root.find(".//testcase[@name='harness[traffic]']")
    assert case is not None and case.find("error") is not None and case.find("failure") is None
    suite = root.find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    assert "harness_errors=harness[traffic]" in report.verdict_line()
