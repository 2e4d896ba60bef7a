"""SIGTERM of a consumer mid-stream: in-flight handlers finish, their messages are acked, the process exits 0.

Against a SIGKILL (test_process_kills), the difference is observable: after a graceful stop nothing the
first consumer processed comes back to the next one as a duplicate, because all of it was acked.

Acks are not confirmed in AMQP, so "acked" needs care: RabbitMQ 3.10 stashes a channel's settles for a
quorum queue while more than 32 of its commands are unapplied and drops the stash when the channel
closes. With one ack per message that happened on loaded machines (8 and 17 acked messages came back);
the consumer now acks each batch with one ``multiple`` ack (10 of 10 runs clean with both cores busy).

One kind of duplicate is not the consumer's doing: a publish whose confirm timed out is sent again (at
least once), so the queue can hold two copies of a message. CI saw 8 such copies on a loaded machine;
they are told apart by the producer's "republishing" log lines, which name the message ids.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from rig.cluster import Cluster

from .conftest import DeclaredTopology, Procs, env_for, scalar, settings_for, wait_for
from .test_leader_kill import loss_report

pytestmark = pytest.mark.integration


def stats_of(log: Path) -> dict[str, int]:
    """The consumer's counters, printed as one JSON object on its way out."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{") and '"duplicates"' in line:
            stats: dict[str, int] = json.loads(line)
            return stats
    raise AssertionError(f"no stats line in {log}")


def logged_ids(log: Path, msg: str) -> set[str]:
    """The message ids of a process's JSON log lines whose ``msg`` is ``msg``."""
    ids: set[str] = set()
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == msg and "message_id" in entry:
                ids.add(str(entry["message_id"]))
    return ids


def test_sigterm_finishes_in_flight_work_and_acks_it(
    cluster: Cluster, topo: DeclaredTopology, procs: Procs, tmp_path: Path
) -> None:
    count = 2000
    env = env_for(settings_for(cluster))
    producer_db, consumer_db = tmp_path / "producer.db", tmp_path / "consumer.db"
    producer = procs.start("producer", "produce", "--db", str(producer_db), "--count", str(count),
                           "--exchange", topo.exchange, "--per-tx", "50", env=env)  # fmt: skip
    assert producer.wait(timeout=120) == 0
    first = procs.start("consumer1", "consume", "--db", str(consumer_db), "--prefix", topo.prefix,
                        "--handler-delay-ms", "3", env=env)  # fmt: skip

    def consumed() -> int:
        return scalar(consumer_db, "SELECT COUNT(*) FROM effects")

    wait_for(lambda: consumed() >= 300, 60, "the first consumer to make progress")
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0, "a graceful stop exits 0"
    at_stop = consumed()
    assert at_stop < count, "everything was consumed before the stop: the test would prove nothing"

    second = procs.start("consumer2", "consume", "--db", str(consumer_db), "--prefix", topo.prefix, env=env)
    wait_for(lambda: consumed() >= count, 60, "the second consumer to finish the queue", period=0.2)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0

    report = loss_report(producer_db, consumer_db)
    dup_at_second = stats_of(procs.log_dir / "consumer2.log")["duplicates"]
    dup_ids = logged_ids(procs.log_dir / "consumer2.log", "duplicate delivery ignored")
    republished = logged_ids(procs.log_dir / "producer.log", "publish outcome unknown, republishing")
    print(f"\ngraceful stop at {at_stop}: second consumer saw {dup_at_second} already-processed messages",
          f"({len(dup_ids & republished)} of them published twice by the producer);",
          " ".join(f"{k}={v}" for k, v in report.items()))  # fmt: skip
    assert report["lost"] == 0 and report["unexpected"] == 0 and report["duplicated_effects"] == 0
    assert len(dup_ids) == dup_at_second, "every duplicate the second consumer counted is in its log"
    unacked = sorted(dup_ids - republished)
    assert not unacked, f"processed by the first consumer but not acked before it exited: {unacked[:10]}"
