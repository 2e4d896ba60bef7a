"""Readers: generic JSON lines, the simulator ledger adapter, the SQLite table adapter."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reports.ops import Collector, Op, OpError
from reports.readers.jsonl import iter_ops, read_jsonl
from reports.readers.ledger import read_ledger
from reports.readers.sqlite import TableMap, read_sqlite
from reports.taxonomy import classify


def write_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# --- generic JSON lines ------------------------------------------------------------------------------


def test_jsonl_reads_ops_and_tracks_the_span(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "ops.jsonl",
        [
            {"t": 10.5, "kind": "attempt", "id": "m1", "flow": "q"},
            {"t": 11, "kind": "ack", "id": "m1", "flow": "q"},
            {"t": 12.0, "kind": "observe", "id": "m1", "flow": "q"},
            {"t": 9.0, "kind": "parked", "id": "m2", "flow": "q", "reason": "poison"},
            {"kind": "effect", "id": "m1", "flow": "sms", "key": ["m1", "delivered"]},
        ],
    )
    collector = Collector()
    stats = read_jsonl(path, collector)
    assert (stats.records, stats.ops, stats.malformed) == (5, 5, 0)
    assert (collector.t_min, collector.t_max) == (9.0, 12.0)
    assert classify(collector.flow("q")).ok == {"m1"}
    assert collector.flow("sms").effects == [("m1", ("m1", "delivered"))]


def test_jsonl_counts_malformed_lines_and_skips_blank_ones(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "ops.jsonl",
        [
            {"kind": "ack", "id": "m1", "flow": "q"},
            "",
            "{not json",
            {"kind": "teleport", "id": "m2"},
            '{"kind": "ack", "id": "m3", "flow": "q"',  # truncated by a killed writer
            "   ",
        ],
    )
    collector = Collector()
    stats = read_jsonl(path, collector)
    assert (stats.records, stats.ops, stats.malformed) == (4, 1, 3)
    assert [e.split(":")[1] for e in stats.errors] == ["3", "4", "5"]
    assert collector.flow("q").ids["ack"] == ["m1"]


def test_iter_ops_yields_typed_ops_and_raises_with_the_line(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "ops.jsonl",
        [{"t": 1.0, "kind": "parked", "id": "m1", "flow": "q", "reason": "poison"}, "[1]"],
    )
    ops = iter_ops(path)
    assert next(ops) == Op("parked", "m1", "q", 1.0, None, {"reason": "poison"})
    with pytest.raises(OpError, match=r"ops\.jsonl:2"):
        next(ops)


# --- simulator ledger --------------------------------------------------------------------------------


def ledger_collector(tmp_path: Path, records: list[Any]) -> tuple[Collector, Any]:
    path = write_lines(tmp_path / "ledger.jsonl", records)
    collector = Collector()
    return collector, read_ledger(path, collector)


def notified(ref: str | None, state: str, *, audience: str = "customer", **extra: Any) -> dict[str, Any]:
    """A ``notification_received`` record as simulator/notify.py writes it."""
    return {"t": 5.0, "kind": "notification_received", "order_ref": ref, "audience": audience, "channel": "sms",
            "state": state, "to": "+447700900786", "delivery_id": f"d{ref}", "notification_id": "n1", **extra}  # fmt: skip


def test_ledger_maps_orders_onto_the_taxonomy(tmp_path: Path) -> None:
    collector, stats = ledger_collector(
        tmp_path,
        [
            {"t": 0, "kind": "run_started", "order_ref": None, "seed": 1},
            {"t": 1, "kind": "order_sent", "order_ref": "A", "req": 1, "attempt": 1, "channel": "rest"},
            {"t": 2, "kind": "order_answer", "order_ref": "A", "req": 1, "outcome": "accepted", "delivery_id": "dA"},
            notified("A", "picked_up"),
            notified("A", "delivered", audience="driver"),  # a driver message is not the customer's
            notified("A", "delivered"),
            {"t": 1, "kind": "order_sent", "order_ref": "B", "req": 2, "channel": "shopify"},
            {"t": 2, "kind": "duplicate_sent", "order_ref": "B", "req": 3, "channel": "shopify"},
            {"t": 3, "kind": "order_answer", "order_ref": "B", "req": 2, "outcome": "unknown"},
            {"t": 4, "kind": "duplicate_answer", "order_ref": "B", "req": 3, "outcome": "accepted", "delivery_id": "dB"},
            {"t": 1, "kind": "order_sent", "order_ref": "C", "req": 4, "channel": "epos"},
            {"t": 2, "kind": "order_answer", "order_ref": "C", "req": 4, "outcome": "rejected", "http_status": 422},
            {"t": 1, "kind": "order_sent", "order_ref": "D", "req": 5, "channel": "rest"},
            {"t": 2, "kind": "order_answer", "order_ref": "D", "req": 5, "outcome": "unknown"},
            notified("D", "cancelled"),
            {"t": 6, "kind": "status_sent", "order_ref": "A", "canonical": "delivered"},
            {"t": 7, "kind": "progress", "order_ref": None, "run_s": 1.0},
            {"t": 9, "kind": "weather_changed", "order_ref": None},
        ],
    )  # fmt: skip
    assert stats.malformed == 0
    assert stats.ignored == {
        "run_started": 1,
        "status_sent": 1,
        "progress": 1,
        "unrecognised:weather_changed": 1,
    }
    orders = classify(collector.flow("orders"))
    assert (orders.ok, orders.lost, orders.failed, orders.recovered) == ({"A"}, {"B"}, {"C"}, {"D"})
    assert orders.attempt_records == 5
    assert orders.observe_records == 2  # the customer's terminal notifications only
    assert collector.flow("notification").effects[0] == (
        "A",
        ("dA", "picked_up", "customer", "+447700900786", "sms"),
    )
    assert len(collector.flow("notification").effects) == 4


def test_a_resend_of_the_same_notification_id_is_not_a_second_notification(tmp_path: Path) -> None:
    collector, stats = ledger_collector(
        tmp_path,
        [
            {"t": 1, "kind": "order_sent", "order_ref": "A", "req": 1, "channel": "rest"},
            {"t": 2, "kind": "order_answer", "order_ref": "A", "req": 1, "outcome": "accepted", "delivery_id": "dA"},
            notified("A", "picked_up"),
            notified("A", "picked_up", duplicate=True),  # the provider saw this id before
            notified("A", "picked_up", notification_id="n2"),  # a second, different notification
        ],
    )  # fmt: skip
    assert stats.ignored["notification_received(resend)"] == 1
    effects = collector.flow("notification").effects
    assert len(effects) == 2 and effects[0] == effects[1]  # the audit sees a duplicated effect


def test_ledger_maps_by_delivery_when_the_order_ref_is_missing(tmp_path: Path) -> None:
    collector, stats = ledger_collector(
        tmp_path,
        [
            # Written before the answer line: still mapped to order A (the ledger is read in full first).
            {**notified(None, "delivered"), "delivery_id": "dA"},
            {"t": 2, "kind": "order_answer", "order_ref": "A", "outcome": "accepted", "delivery_id": "dA"},
        ],
    )
    assert stats.malformed == 0
    assert collector.flow("orders").ids["observe"] == ["A"]
    assert collector.flow("notification").effects == [
        ("A", ("dA", "delivered", "customer", "+447700900786", "sms"))
    ]


def test_ledger_counts_one_booking_per_courier_job(tmp_path: Path) -> None:
    def answer(type_: str, job: str | None = None, courier: str = "dashly") -> dict[str, Any]:
        rec = {"t": 3, "kind": "booking_answer_sent", "order_ref": "A", "type": type_, "courier": courier}
        return rec if job is None else {**rec, "courier_job_id": job}

    collector, stats = ledger_collector(
        tmp_path,
        [
            {"t": 1, "kind": "booking_seen", "order_ref": "A", "courier": "dashly", "quote_id": "q1"},
            answer("booking_rejected"),
            answer("booking_accepted", "dashly-job-1"),
            answer("booking_accepted", "dashly-job-1"),  # the desk re-answers a republished request
            answer("booking_accepted", "zoomy-job-7", courier="zoomy"),  # a second driver: a real bug
        ],
    )
    assert stats.malformed == 0
    assert stats.ignored == {
        "booking_seen": 1,
        "booking_answer_sent(not accepted)": 1,
        "booking_answer_sent(repeat)": 1,
    }
    assert collector.flow("booking").effects == [
        ("A", ("A", "dashly", "dashly-job-1")),
        ("A", ("A", "zoomy", "zoomy-job-7")),
    ]


def test_a_redelivered_cancel_request_accepted_again_releases_the_job_once(tmp_path: Path) -> None:
    """Seen in a partition drill: the same cancel request (one message id) reached the courier twice."""

    def released(t: float, job: str = "dashly-job-1") -> dict[str, Any]:
        return {"t": t, "kind": "cancel_answer_sent", "order_ref": "A", "type": "cancel_accepted",
                "courier": "dashly", "courier_job_id": job}  # fmt: skip

    collector, stats = ledger_collector(tmp_path, [released(1), released(4), released(5, "dashly-job-2")])
    assert stats.ignored["cancel_answer_sent(repeat)"] == 1
    assert collector.flow("booking_released").effects == [
        ("A", ("A", "dashly", "dashly-job-1")),
        ("A", ("A", "dashly", "dashly-job-2")),
    ]


def test_ledger_passes_generic_ops_through_and_rejects_incomplete_records(tmp_path: Path) -> None:
    collector, stats = ledger_collector(
        tmp_path,
        [
            {"t": 1, "kind": "order_sent", "order_ref": "A"},
            {"t": 2, "kind": "order_answer", "order_ref": "A", "outcome": "accepted"},
            {"t": 9, "kind": "inflight", "order_ref": "A"},
            {"t": 1, "kind": "order_sent", "order_ref": None},
            {"t": 2, "kind": "order_answer", "order_ref": "X", "outcome": "maybe"},
            {"t": 3, "kind": "notification_received", "order_ref": "A", "audience": "customer"},
            {"t": 3, "kind": "booking_answer_sent", "order_ref": "A", "type": "booking_accepted"},
            "garbage",
            [1, 2],
        ],
    )
    assert stats.records == 9
    assert stats.malformed == 6
    assert classify(collector.flow("orders")).inflight_acked == {"A"}


# --- SQLite ------------------------------------------------------------------------------------------


@pytest.fixture
def platform_db(tmp_path: Path) -> Path:
    path = tmp_path / "platform.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE outbox (message_id TEXT, status TEXT, confirmed_at TEXT);
            CREATE TABLE inbox (message_id TEXT, received_at REAL);
            CREATE TABLE "parked lot" (message_id TEXT, reason TEXT);
            CREATE TABLE notifications (delivery_id TEXT, state TEXT, recipient TEXT, channel TEXT);
            INSERT INTO outbox VALUES ('m1', 'confirmed', '2026-11-29T01:00:00'),
                                      ('m2', 'confirmed', '2026-11-29T01:00:01+00:00'),
                                      ('m3', 'pending', NULL),
                                      ('m4', 'confirmed', NULL);
            INSERT INTO inbox VALUES ('m1', 1795914000.5);
            INSERT INTO "parked lot" VALUES ('m4', 'delivery_limit');
            INSERT INTO notifications VALUES ('d1', 'booked', 'customer', 'sms'),
                                             ('d1', 'booked', 'customer', 'sms');
            """
        )
    return path


MAPS = (
    TableMap(
        "outbox", "message_id", "ack", "dispatch", t_column="confirmed_at", where="status = 'confirmed'"
    ),
    TableMap("outbox", "message_id", "attempt", "dispatch", where="status = 'pending'"),
    TableMap("outbox", "message_id", "inflight", "dispatch", where="status = 'pending'"),
    TableMap("inbox", "message_id", "observe", "dispatch", t_column="received_at"),
    TableMap("parked lot", "message_id", "parked", "dispatch", reason_column="reason"),
    TableMap(
        "notifications",
        "delivery_id",
        "effect",
        "notification",
        key_columns=("delivery_id", "state", "recipient", "channel"),
    ),
)


@pytest.fixture
def not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local zone other than UTC, so "naive ISO text is UTC" is really tested on a UTC machine."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("not_utc")
def test_sqlite_tables_feed_the_audit(platform_db: Path) -> None:
    collector = Collector()
    stats = read_sqlite(platform_db, MAPS, collector)
    assert (stats.records, stats.ops, stats.malformed) == (9, 9, 0)
    dispatch = classify(collector.flow("dispatch"))
    assert (dispatch.ok, dispatch.lost, dispatch.parked_acked, dispatch.inflight_unacked) == (
        {"m1"},
        {"m2"},
        {"m4"},
        {"m3"},
    )
    assert dispatch.parked_reasons == {"delivery_limit": 1}
    assert classify(collector.flow("notification")).duplicated_effects == {
        ("d1", "booked", "customer", "sms"): 2
    }
    assert collector.t_min == 1795914000.0  # 2026-11-29T01:00:00: ISO text without a zone is UTC
    assert collector.t_max == 1795914001.0


def test_sqlite_missing_table_is_a_source_error_and_the_file_is_untouched(platform_db: Path) -> None:
    before = platform_db.read_bytes()
    collector = Collector()
    stats = read_sqlite(platform_db, [TableMap("outbox_v2", "message_id", "ack", "dispatch")], collector)
    assert stats.malformed == 1
    assert "no such table" in stats.errors[0]
    assert platform_db.read_bytes() == before
    missing = read_sqlite(platform_db.with_name("nope.db"), MAPS, Collector())
    assert missing.malformed == 1
    assert not platform_db.with_name("nope.db").exists()


def test_table_map_validation() -> None:
    with pytest.raises(ValueError, match="unknown op kind"):
        TableMap("t", "id", "teleport", "f")
    with pytest.raises(ValueError, match="key_columns"):
        TableMap("t", "id", "effect", "f")
    with pytest.raises(ValueError, match="unknown table-map field"):
        TableMap.from_dict({"table": "t", "id_column": "id", "kind": "ack", "flow": "f", "colour": "red"})
    parsed = TableMap.from_dict(
        {"table": 't"x', "id_column": "id", "kind": "effect", "flow": "f", "key_columns": ["a", "b"]}
    )
    assert parsed.key_columns == ("a", "b")
    assert parsed.query() == 'SELECT "id", NULL, NULL, "a", "b" FROM "t""x"'


def test_contract_with_the_simulator_ledger_writer(tmp_path: Path) -> None:
    """Records written by the simulator's own writer read back as the ops this adapter documents.

    A rename of ``order_ref`` or of a kind in simulator/ledger.py shows up here first.
    """
    ledger_mod = pytest.importorskip("simulator.ledger")
    path = tmp_path / "simulator" / "ledger.jsonl"
    ticks = iter(range(100))
    path.parent.mkdir()
    led = ledger_mod.Ledger(path.open("w", encoding="utf-8"), clock=lambda: float(next(ticks)))
    led.write("run_started", None, seed=1)
    led.write("order_sent", "s1-1", req=1, attempt=1, channel="rest")
    led.write("order_answer", "s1-1", req=1, attempt=1, outcome="accepted", delivery_id="dlv_1")
    led.write("booking_answer_sent", "s1-1", type="booking_accepted", courier="dashly", courier_job_id="j1")
    led.write("notification_received", "s1-1", audience="customer", channel="sms", state="delivered",
              to="+44", delivery_id="dlv_1", notification_id="n1")  # fmt: skip
    led.close()
    collector = Collector()
    stats = read_ledger(path, collector)
    assert (stats.records, stats.ops, stats.malformed) == (5, 5, 0)
    assert classify(collector.flow("orders")).ok == {"s1-1"}
    assert collector.flow("booking").effects == [("s1-1", ("s1-1", "dashly", "j1"))]
    assert (collector.t_min, collector.t_max) == (1.0, 4.0)  # run_started is not an op


def test_the_locust_ledger_is_audited_beside_the_simulators(tmp_path: Path) -> None:
    from reports.audit import audit_run

    (tmp_path / "simulator").mkdir()
    (tmp_path / "locust").mkdir()
    write_lines(
        tmp_path / "simulator" / "ledger.jsonl",
        [
            {"t": 1, "kind": "order_sent", "order_ref": "S1", "req": 1, "channel": "rest"},
            {"t": 2, "kind": "order_answer", "order_ref": "S1", "req": 1, "outcome": "accepted", "delivery_id": "d1"},
        ],
    )  # fmt: skip
    write_lines(
        tmp_path / "locust" / "ledger.jsonl",
        [
            {"t": 1, "kind": "order_sent", "order_ref": "L1", "req": "9:1", "channel": "rest", "source": "locust"},
            {"t": 2, "kind": "order_answer", "order_ref": "L1", "req": "9:1", "outcome": "accepted",
             "delivery_id": "d2", "source": "locust"},
            {"t": 3, "kind": "track_read", "order_ref": "L1", "delivery_id": "d2", "outcome": "accepted",
             "source": "locust"},
        ],
    )  # fmt: skip
    report = audit_run(tmp_path)
    assert len(report.sources) == 2
    assert report.flows["orders"].acknowledged == {"S1", "L1"}
    assert all("unrecognised:track_read" not in s.ignored for s in report.sources)


def test_a_cancel_the_courier_accepted_releases_that_job(tmp_path: Path) -> None:
    collector, stats = ledger_collector(
        tmp_path,
        [
            {"t": 1, "kind": "order_sent", "order_ref": "A", "req": 1, "channel": "rest"},
            {"t": 2, "kind": "order_answer", "order_ref": "A", "req": 1, "outcome": "accepted", "delivery_id": "dA"},
            {"t": 3, "kind": "booking_answer_sent", "order_ref": "A", "type": "booking_accepted", "courier": "z",
             "courier_job_id": "j1"},
            {"t": 4, "kind": "cancel_answer_sent", "order_ref": "A", "type": "cancel_accepted", "courier": "z",
             "courier_job_id": "j1"},
            {"t": 4, "kind": "cancel_answer_sent", "order_ref": "A", "type": "cancel_rejected", "courier": "z",
             "courier_job_id": "j1"},
        ],
    )  # fmt: skip
    assert collector.flow("booking_released").effects == [("A", ("A", "z", "j1"))]
    assert collector.flow("booking").effects == [("A", ("A", "z", "j1"))]
    assert stats.ignored["cancel_answer_sent(not accepted)"] == 1


def test_the_platform_config_checks_notifications_exactly_once_against_what_was_owed(tmp_path: Path) -> None:
    """notifications.db rows (what the service owed) against the receiver's ledger, key for key."""
    import sqlite3

    from reports.audit import CONFIG_FILE, audit_run, write_platform_config
    from reports.checks import ONE_NOTIFICATION

    with sqlite3.connect(tmp_path / "notifications.db") as db:
        db.execute(
            "CREATE TABLE notifications (notification_id TEXT PRIMARY KEY, delivery_id TEXT, state TEXT,"
            " audience TEXT, channel TEXT, order_reference TEXT, recipient TEXT, status TEXT)"
        )
        db.executemany(
            "INSERT INTO notifications VALUES (?, ?, ?, 'customer', 'sms', ?, '+447700900786', 'sent')",
            [
                ("n1", "dA", "picked_up", "A"),
                ("n2", "dA", "delivered", "A"),
                ("n3", "dB", "delivered", "B"),
                ("n4", "dC", "picked_up", "C"),
            ],
        )
    ledger = tmp_path / "simulator" / "ledger.jsonl"
    ledger.parent.mkdir()
    records = [
        {"t": 1, "kind": "order_sent", "order_ref": "A", "req": 1, "attempt": 1, "channel": "rest"},
        {"t": 2, "kind": "order_answer", "order_ref": "A", "req": 1, "outcome": "accepted", "delivery_id": "dA"},
        {"t": 1, "kind": "order_sent", "order_ref": "B", "req": 2, "attempt": 1, "channel": "rest"},
        {"t": 2, "kind": "order_answer", "order_ref": "B", "req": 2, "outcome": "accepted", "delivery_id": "dB"},
        notified("A", "picked_up"),
        notified("A", "delivered", notification_id="n2"),
        # dB's delivered notification was owed and never arrived; a store notification nobody owed did.
        notified("B", "booked", audience="store", notification_id="n9"),
        # C was still being delivered when the traffic stopped: what it was owed after is explained.
        {"t": 1, "kind": "order_sent", "order_ref": "C", "req": 3, "attempt": 1, "channel": "rest"},
        {"t": 2, "kind": "order_answer", "order_ref": "C", "req": 3, "outcome": "accepted", "delivery_id": "dC"},
        {"t": 9, "kind": "inflight", "order_ref": "C"},
    ]  # fmt: skip
    ledger.write_text("".join(json.dumps(r) + "\n" for r in records))

    assert write_platform_config(tmp_path) == tmp_path / CONFIG_FILE
    assert write_platform_config(tmp_path) is None  # never overwrites the run's own
    check = {c.name: c for c in audit_run(tmp_path).checks}[ONE_NOTIFICATION]
    assert check.status == "failed" and "checked exactly once" in check.message, check.message
    assert (check.counts["expected"], check.counts["missing"], check.counts["unowed"]) == (4, 1, 1)
    assert check.samples["missing"] == ["dB|delivered|customer|+447700900786|sms"]
    assert check.counts["missing_inflight"] == 1
    assert check.samples["missing_inflight"] == ["dC|picked_up|customer|+447700900786|sms"]
