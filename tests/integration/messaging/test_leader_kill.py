"""20k messages through the outbox while the queue's leader node is SIGKILLed, then restarted."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from rig.cluster import LocalCluster

from .conftest import DeclaredTopology, Procs, env_for, query, scalar, settings_for, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 20_000


def loss_report(producer_db: Path, consumer_db: Path) -> dict[str, int]:
    """Jepsen-style counts: committed outbox rows vs effects applied by the consumer."""
    committed = {str(r[0]) for r in query(producer_db, "SELECT message_id FROM outbox")}
    effects = [str(r[0]) for r in query(consumer_db, "SELECT message_id FROM effects")]
    seen = set(effects)
    return {
        "committed": len(committed),
        "consumed": len(seen),
        "lost": len(committed - seen),
        "unexpected": len(seen - committed),
        "duplicated_effects": len(effects) - len(seen),
        "duplicated_deliveries": scalar(consumer_db, "SELECT COUNT(*) FROM inbox_duplicates"),
        "redelivered": scalar(consumer_db, "SELECT COUNT(*) FROM effects WHERE redelivered = 1"),
    }


def test_outbox_20k_survives_leader_sigkill(
    local_cluster: LocalCluster, topo: DeclaredTopology, procs: Procs, tmp_path: Path
) -> None:
    # Both failover paths, deterministically: the consumer starts on the leader's node (its connection
    # dies with it), the producer on a surviving node (its channel sees the election's nacks).
    leader = local_cluster.queue_leader(topo.queue)
    others = [local_cluster.amqp_url(n) for n in local_cluster.node_indices if n != leader]
    leader_first = settings_for(local_cluster, amqp_urls=[local_cluster.amqp_url(leader), *others])
    survivor_first = settings_for(local_cluster, amqp_urls=[*others, local_cluster.amqp_url(leader)])
    in_order = {"DRILL_MSG_RANDOM_START_NODE": "false"}
    producer_db, consumer_db, ready = tmp_path / "producer.db", tmp_path / "consumer.db", tmp_path / "ready"
    consumer_args = ["--db", str(consumer_db), "--prefix", topo.prefix, "--ready-file", str(ready)]
    consumer = procs.start("consumer", "consume", *consumer_args, env=env_for(leader_first, **in_order))
    wait_for(ready.exists, 30, "the consumer to start consuming")
    producer_args = [
        "--db",
        str(producer_db),
        "--count",
        str(COUNT),
        "--exchange",
        topo.exchange,
        "--pad",
        "400",
    ]
    producer = procs.start("producer", "produce", *producer_args, env=env_for(survivor_first, **in_order))

    def consumed() -> int:
        return scalar(consumer_db, "SELECT COUNT(*) FROM effects")

    wait_for(lambda: consumed() >= COUNT // 5, 90, "a fifth of the messages to be consumed")
    assert local_cluster.queue_leader(topo.queue) == leader, "the leader moved before the kill"
    local_cluster.kill(leader)
    at_kill = consumed()
    assert producer.poll() is None, "the producer finished before the kill: the test would prove nothing"
    t_kill = time.monotonic()
    wait_for(lambda: consumed() >= at_kill + 1000, 90, "consumption to resume without the old leader")
    print(
        f"\nleader node {leader} SIGKILLed at {at_kill} consumed; +1000 after {time.monotonic() - t_kill:.1f} s"
    )
    local_cluster.restart(leader)

    assert producer.wait(timeout=180) == 0, "the producer (outbox relay) failed"
    committed = scalar(producer_db, "SELECT COUNT(*) FROM outbox")
    pending = scalar(producer_db, "SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
    assert committed == COUNT and pending == 0
    wait_for(lambda: consumed() >= committed, 120, "every committed message to be consumed", period=0.2)
    consumer.send_signal(signal.SIGTERM)
    assert consumer.wait(timeout=30) == 0, "graceful consumer shutdown failed"

    report = loss_report(producer_db, consumer_db)
    relay_stats = [
        ln for ln in (procs.log_dir / "producer.log").read_text().splitlines() if '"published"' in ln
    ]
    print("producer:", relay_stats[-1] if relay_stats else "?")
    print("loss report:", " ".join(f"{k}={v}" for k, v in report.items()))
    assert report["lost"] == 0
    assert report["duplicated_effects"] == 0
    assert report["unexpected"] == 0
