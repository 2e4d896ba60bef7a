"""Parsing Locust's CSV / JSON output, and merging the per-process ledgers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests.runner import merge_ledgers, parse_history_csv, parse_stats_csv, parse_stats_json, percentile

PCT = "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
STATS_CSV = f"""Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,{PCT}
GET,GET /v1/deliveries/{{id}},120,0,3,3.5,1,40,52.0,24.0,0.0,3,3,4,4,5,7,9,12,40,40,40
POST,POST /v1/deliveries,400,4,5,6.25,2,90,45.0,80.0,0.8,5,6,6,7,8,11,15,20,90,90,90
POST,"shopify orders/create [bad hmac]",0,0,0,0.0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A
,Aggregated,520,4,5,5.6,1,90,46.7,104.0,0.8,5,5,6,6,8,10,14,19,90,90,90
"""


def test_parse_stats_csv(tmp_path: Path) -> None:
    path = tmp_path / "s_stats.csv"
    path.write_text(STATS_CSV)
    total, rows = parse_stats_csv(path)
    assert total is not None
    assert (total.requests, total.failures, total.rps, total.p95_ms, total.p99_ms) == (520, 4, 104.0, 10, 19)
    assert [r.name for r in rows] == [
        "GET /v1/deliveries/{id}",
        "POST /v1/deliveries",
        "shopify orders/create [bad hmac]",
    ]
    post = rows[1]
    assert (post.type, post.requests, post.failures, post.median_ms, post.avg_ms) == ("POST", 400, 4, 5, 6.25)
    assert rows[2].p95_ms is None  # "N/A" when nothing was sent


def test_parse_history_keeps_aggregated_rows(tmp_path: Path) -> None:
    head = (
        f"Timestamp,User Count,Type,Name,Requests/s,Failures/s,{PCT},Total Request Count,Total Failure Count,"
        "Total Median Response Time,Total Average Response Time,Total Min Response Time,"
        "Total Max Response Time,Total Average Content Size"
    )
    na = ",".join(["N/A"] * 11)
    nums = ",".join(["3"] * 11)
    path = tmp_path / "h.csv"
    path.write_text(
        f"{head}\n"
        f"100,0,,Aggregated,0.000000,0.000000,{na},0,0,0,0.0,0,0,0\n"
        f"101,4,POST,POST /v1/deliveries,10.000000,0.000000,{nums},10,0,3,3.0,1,9,40\n"
        f"101,4,,Aggregated,12.500000,0.500000,{nums},25,1,3,3.0,1,9,40\n"
        f"102,8,,Aggregated,20.000000,0.000000,{nums},45,1,3,3.0,1,9,40\n"
    )
    rows = parse_history_csv(path)
    assert [(r.timestamp, r.user_count, r.requests, r.failures) for r in rows] == [
        (100, 0, 0, 0),
        (101, 4, 25, 1),
        (102, 8, 45, 1),
    ]
    assert rows[1].rps == 12.5 and rows[1].failures_per_s == 0.5


def _entry(name: str, method: str, hist: dict[int, int], failures: int = 0) -> dict[str, object]:
    n = sum(hist.values())
    return {
        "name": name,
        "method": method,
        "last_request_timestamp": 110.0,
        "start_time": 100.0,
        "num_requests": n,
        "num_none_requests": 0,
        "num_failures": failures,
        "total_response_time": sum(ms * c for ms, c in hist.items()),
        "max_response_time": max(hist),
        "min_response_time": min(hist),
        "total_content_length": 0,
        # JSON turns the int keys into strings, as Locust's --json-file does.
        "response_times": {str(k): v for k, v in hist.items()},
        "num_reqs_per_sec": {},
        "num_fail_per_sec": {},
    }


def test_parse_stats_json_totals_and_percentiles(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    doc = [_entry("a", "GET", {1: 90, 10: 9, 100: 1}), _entry("b", "POST", {2: 50}, failures=5)]
    path.write_text(json.dumps(doc))
    total, rows = parse_stats_json(path)
    assert total is not None
    assert (total.requests, total.failures) == (150, 5)
    assert total.rps == pytest.approx(15.0) and total.failures_per_s == pytest.approx(0.5)
    a = rows[0]
    assert (a.name, a.type, a.requests, a.median_ms, a.p95_ms, a.p99_ms, a.max_ms) == (
        "a", "GET", 100, 1.0, 10.0, 100.0, 100.0
    )  # fmt: skip
    assert a.avg_ms == pytest.approx((90 + 90 + 100) / 100)


def test_percentile_follows_locust() -> None:
    # Locust's rule (locust.stats.calculate_response_time_percentile, not imported: it would
    # monkey-patch this process): the smallest bucket with at most count*(1-share) requests above it.
    hist = {1: 3, 4: 10, 7: 5, 30: 2, 250: 1}
    n = sum(hist.values())
    assert [percentile(hist, n, s) for s in (0.1, 0.5, 0.66, 0.9, 0.95, 0.99, 1.0)] == [
        1.0, 4.0, 7.0, 30.0, 30.0, 250.0, 250.0,
    ]  # fmt: skip
    assert percentile({}, 0, 0.5) == 0.0


def test_merge_ledgers(tmp_path: Path) -> None:
    d = tmp_path / "locust"
    d.mkdir()
    (d / "ledger-11.jsonl").write_text('{"kind":"order_sent"}\n{"kind":"order_answer"}\n')
    (d / "ledger-22.jsonl").write_text('{"kind":"order_sent"}')  # killed before its newline
    path, records = merge_ledgers(d)
    assert path == d / "ledger.jsonl" and records == 3
    assert path.read_text().count("\n") == 3
    assert not list(d.glob("ledger-*.jsonl"))
    # A second merge with nothing new keeps the file as it is.
    assert merge_ledgers(d) == (path, 3)


def test_merge_without_ledgers(tmp_path: Path) -> None:
    assert merge_ledgers(tmp_path) == (None, 0)
