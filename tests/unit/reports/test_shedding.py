"""Shed requests (intake's 503 + Retry-After) in the audit: never accepted, so neither lost nor abandoned,
outside availability, and counted on their own line (report.json, summary, VERDICT line, HTML)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from reports.audit import audit_run
from reports.outcome import Outcome
from reports.service import Service, Shedding, WorldRecord, classify
from reports.story import headline, shed_sentence
from reports.writers.html import report_html
from reports.writers.markdown import summary_markdown

T = 1_000.0


def sent(ref: str, t: float, attempt: int = 1, req: int = 1) -> dict[str, Any]:
    return {"t": t, "kind": "order_sent", "order_ref": ref, "req": req, "attempt": attempt, "key": f"k-{ref}"}


def shed(ref: str, t: float, attempt: int = 1, reason: str = "queue_depth") -> dict[str, Any]:
    return {"t": t, "kind": "order_shed", "order_ref": ref, "req": attempt, "attempt": attempt,
            "http_status": 503, "retry_after_s": 2.0, "reason": reason, "latency_ms": 1.5}  # fmt: skip


def answer(ref: str, t: float, attempt: int = 1) -> dict[str, Any]:
    return {"t": t, "kind": "order_answer", "order_ref": ref, "req": attempt, "attempt": attempt,
            "outcome": "accepted", "http_status": 202, "delivery_id": f"d-{ref}", "latency_ms": 3.0}  # fmt: skip


def given_up(ref: str, t: float, sheds: int) -> dict[str, Any]:
    return {"t": t, "kind": "order_given_up_shed", "order_ref": ref, "attempts": sheds, "shed": sheds,
            "reason": "queue_depth", "retry_after_s": 2.0, "waited_s": 9.0, "why": f"shed {sheds} times"}  # fmt: skip


def delivered(ref: str, t: float) -> dict[str, Any]:
    return {"t": t, "kind": "notification_received", "order_ref": ref, "state": "delivered",
            "audience": "customer", "delivery_id": f"d-{ref}", "to": "+44", "channel": "sms",
            "notification_id": f"n-{ref}"}  # fmt: skip


def ledger() -> list[dict[str, Any]]:
    """o1 accepted at once; o2 shed twice, then accepted; o3 shed three times and given up; every accepted
    order delivered."""
    return [
        sent("o1", T), answer("o1", T + 0.01),
        sent("o2", T + 1), shed("o2", T + 1.01), sent("o2", T + 3, 2), shed("o2", T + 3.01, 2, "outbox_age"),
        sent("o2", T + 5, 3), answer("o2", T + 5.01, 3),
        sent("o3", T + 2), shed("o3", T + 2.01), sent("o3", T + 4, 2), shed("o3", T + 4.01, 2),
        sent("o3", T + 6, 3), shed("o3", T + 6.01, 3), given_up("o3", T + 6.02, 3),
        delivered("o1", T + 30), delivered("o2", T + 35),
    ]  # fmt: skip


def _run(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    run = tmp_path / "20261207T010737Z-double-load"
    (run / "simulator").mkdir(parents=True)
    lines = [json.dumps(r, separators=(",", ":")) for r in records]
    (run / "simulator" / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_world_counts_the_shed_line() -> None:
    world = WorldRecord()
    for r in ledger():
        world.feed(r, {})
    sh = classify(world, ["o1", "o2"]).shedding
    assert (sh.offered, sh.requests, sh.shed_requests) == (3, 7, 5)
    assert (sh.shed_orders, sh.accepted_after_shed, sh.given_up_after_shed, sh.unresolved) == (2, 1, 1, 0)
    assert sh.reasons == Counter(queue_depth=4, outbox_age=1) and sh.given_up_why == Counter(
        {"shed 3 times": 1}
    )
    assert sh.shed_share == 2 / 3 and sh.request_share == 5 / 7


def test_shed_orders_are_neither_lost_nor_abandoned_nor_unavailability(tmp_path: Path) -> None:
    report = audit_run(_run(tmp_path, ledger()))
    orders = report.flows["orders"]
    counts = orders.counts()
    assert (
        counts["lost"] == 0 and counts["indeterminate"] == 0 and counts["failed"] == 1
    )  # o3: shed, given up
    assert report.abandoned == 0 and report.service is not None and report.service.accepted == 2
    check = next(c for c in report.checks if c.name == "no_order_abandoned")
    assert check.status == "passed"
    assert not [c.name for c in report.checks if c.status == "failed" and "availability" in c.name]
    assert report.performance is not None
    intake = report.performance.to_dict()["intake"]
    assert intake["requests"] == 2 and intake["unavailable"] == 0  # the two accepted answers only
    ignored = report.sources[0].ignored
    assert ignored["order_given_up_shed"] == 1 and not any(k.startswith("unrecognised") for k in ignored)
    assert report.verdict_line().split(" checks=")[0].endswith(" shed=5")
    doc = report.to_dict()["service"]["shedding"]
    assert doc["shed_requests"] == 5 and doc["accepted_after_shed"] == 1 and doc["given_up_after_shed"] == 1
    assert doc["reasons"] == {"queue_depth": 4, "outbox_age": 1}


def test_the_shed_line_is_in_the_headline_summary_and_html(tmp_path: Path) -> None:
    report = audit_run(_run(tmp_path, ledger()))
    line = shed_sentence(report.service)
    assert line == (
        "Intake shed 5 requests for load (2 of the 3 orders offered, 66.66%, were shed at least once; why: "
        "queue_depth 4, outbox_age 1): 1 accepted when sent again, 1 given up after shedding."
    )
    assert line in headline(report)
    assert f"**Shed:** {line}" in summary_markdown(report)
    assert 'id="shed"' in report_html(report)


def test_no_shed_no_line(tmp_path: Path) -> None:
    report = audit_run(_run(tmp_path, [*ledger()[:2], delivered("o1", T + 30)]))
    assert shed_sentence(report.service) is None
    assert " shed=" not in report.verdict_line() and "**Shed:**" not in summary_markdown(report)
    assert shed_sentence(Service([], shedding=Shedding())) is None


def test_a_shed_order_observed_anyway_is_caught(tmp_path: Path) -> None:
    """Intake answered 503 + Retry-After (nothing stored) for an order the customer then heard about."""
    records = [sent("o9", T), shed("o9", T + 0.01), given_up("o9", T + 0.02, 1), delivered("o9", T + 30)]
    report = audit_run(_run(tmp_path, records))
    assert report.flows["orders"].counts()["failed_but_observed"] == 1
    assert report.outcome is Outcome.FAIL
