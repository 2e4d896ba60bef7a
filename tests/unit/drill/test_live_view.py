"""The live view: the simulator's progress read incrementally, open faults, and the text it shows."""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness.drill.live import (
    BrokerFigures,
    LedgerTail,
    Progress,
    Snapshot,
    faults_applied,
    format_lines,
    open_faults,
    replica_counts,
    status_line,
)


def _progress(**counts: float) -> str:
    return json.dumps({"t": 1.0, "kind": "progress", "order_ref": None, **counts}) + "\n"


def test_the_ledger_tail_reads_only_what_is_new_and_waits_for_a_cut_line(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    tail = LedgerTail(ledger)
    assert tail.poll() == Progress()  # no file yet
    line = _progress(run_s=1.0, sent=10, accepted=9, rejected=0, unknown=1, delivered=0, sent_rate=10.0)
    ledger.write_text('{"t":0.5,"kind":"order_sent","order_ref":"s1-1"}\n' + line[:20])
    assert tail.poll().sent == 0  # the progress line is cut: not read yet
    with ledger.open("a") as fh:
        fh.write(line[20:])
    p = tail.poll()
    assert (p.sent, p.accepted, p.unknown, p.answered) == (10, 9, 1, 10)
    assert p.availability == 0.9
    with ledger.open("a") as fh:
        fh.write("not json\n" + _progress(sent=20, accepted=20, delivered=3))
        fh.write(json.dumps({"kind": "run_finished", "sent": 25, "accepted": 24, "unknown": 1}) + "\n")
    p = tail.poll()
    assert (p.sent, p.accepted, p.delivered) == (25, 24, 3)
    assert tail.finished and tail.records == 4


def test_open_faults_and_applied_counts_come_from_the_journal(tmp_path: Path) -> None:
    from chaos.journal import Journal

    path = tmp_path / "journal.jsonl"
    assert open_faults(path) == [] and faults_applied(path) == 0
    j = Journal(path)
    j.write("apply", "f-1", "kill_node", target="2", undo={"node": 2})
    j.write("applied", "f-1", "kill_node")
    j.write("apply", "f-2", "memory_alarm", target="", undo={})
    j.write("applied", "f-2", "memory_alarm")
    j.write("undo", "f-1", "kill_node")
    now = time.time() + 3
    assert [f.split(" (")[0] for f in open_faults(path, now)] == ["memory_alarm"]
    assert faults_applied(path) == 2


def test_the_view_shows_every_figure() -> None:
    s = Snapshot(
        phase="drill demo",
        elapsed_s=75.0,
        duration_s=120.0,
        progress=Progress(
            run_s=75, sent=1500, accepted=1497, rejected=1, unknown=2, delivered=800, sent_rate=20.0
        ),
        broker=BrokerFigures(depth=42, publish_rate=310.4, node=2),
        faults=("kill_node 2 (4 s)",),
        faults_applied=3,
        chaos="running",
        replicas_running=12,
        replicas_wanted=13,
        restarts=2,
    )
    lines = format_lines(s)
    text = "\n".join(lines)
    assert lines[0] == "drill demo  1:15 / 2:00"
    assert "sent 1500  accepted 1497  delivered 800" in text
    assert "availability so far 99.80% (accepted / answered, 1500 answered)" in text
    assert "310 msgs/s published, 42 messages queued (node 2)" in text
    assert "12/13 replicas running, 2 restart(s)" in text
    assert "chaos    running; 3 fault(s) applied; now: kill_node 2 (4 s)" in text
    line = status_line(s)
    assert line.startswith("[1:15/2:00] sent=1500 accepted=1497 delivered=800 avail=99.80%")
    assert "msgs/s=310 depth=42 replicas=12/13 fault=kill_node 2" in line


def test_the_view_before_anything_is_known_and_after_the_traffic() -> None:
    lines = format_lines(
        Snapshot(phase="p", elapsed_s=130, duration_s=120, broker=BrokerFigures(error="node 1: ConnectError"))
    )
    text = "\n".join(lines)
    assert "traffic 2:00 done; couriers finishing" in lines[0]
    assert "availability so far - " in text
    assert "no management API answered: node 1: ConnectError" in text
    assert "chaos" not in text  # no experiment, no chaos line
    assert "fault=-" in status_line(Snapshot(phase="p", elapsed_s=1, duration_s=2))


def test_replica_counts_from_system_json() -> None:
    st = {"replicas": [
        {"service": "a", "index": 0, "state": "running", "restarts": 1},
        {"service": "a", "index": 1, "state": "backoff", "restarts": 2},
        {"service": "b", "index": 0, "state": "stopped", "restarts": 0},
    ]}  # fmt: skip
    assert replica_counts(st) == (1, 2, 3)
    assert replica_counts(None) == (0, 0, 0)
