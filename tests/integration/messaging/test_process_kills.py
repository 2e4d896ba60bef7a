"""SIGKILL of real service processes: a consumer with unacked messages, a relay between commit and record."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from rig.cluster import Cluster

from .conftest import DeclaredTopology, Procs, env_for, scalar, settings_for, wait_for
from .test_leader_kill import loss_report

pytestmark = pytest.mark.integration


def test_consumer_sigkill_with_unacked_messages_loses_and_duplicates_nothing(
    cluster: Cluster, topo: DeclaredTopology, procs: Procs, tmp_path: Path
) -> None:
    count = 3000
    env = env_for(settings_for(cluster))
    producer_db, consumer_db = tmp_path / "producer.db", tmp_path / "consumer.db"
    producer = procs.start(
        "producer",
        "produce",
        "--db",
        str(producer_db),
        "--count",
        str(count),
        "--exchange",
        topo.exchange,
        "--per-tx",
        "50",
        env=env,
    )
    assert producer.wait(timeout=120) == 0
    # A slow handler keeps a full prefetch window unacked inside the process when it dies.
    first = procs.start(
        "consumer1",
        "consume",
        "--db",
        str(consumer_db),
        "--prefix",
        topo.prefix,
        "--handler-delay-ms",
        "3",
        env=env,
    )

    def consumed() -> int:
        return scalar(consumer_db, "SELECT COUNT(*) FROM effects")

    wait_for(lambda: consumed() >= 500, 60, "the first consumer to make progress")
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    at_kill = consumed()
    assert at_kill < count, "everything was consumed before the kill: the test would prove nothing"

    second = procs.start("consumer2", "consume", "--db", str(consumer_db), "--prefix", topo.prefix, env=env)
    wait_for(lambda: consumed() >= count, 60, "the second consumer to finish the queue", period=0.2)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0

    report = loss_report(producer_db, consumer_db)
    print("\nconsumer SIGKILL at", at_kill, "effects:", " ".join(f"{k}={v}" for k, v in report.items()))
    assert report["lost"] == 0 and report["unexpected"] == 0
    assert report["duplicated_effects"] == 0
    # The messages the dead consumer held unacked came back to the second one, flagged redelivered.
    assert report["redelivered"] > 0


def test_relay_sigkill_between_commit_and_confirm_record_republishes(
    cluster: Cluster, topo: DeclaredTopology, procs: Procs, tmp_path: Path
) -> None:
    count, halt_at = 2000, 700
    settings = settings_for(cluster)
    producer_db, consumer_db = tmp_path / "producer.db", tmp_path / "consumer.db"
    marker, ready = tmp_path / "halted", tmp_path / "ready"
    consumer = procs.start(
        "consumer",
        "consume",
        "--db",
        str(consumer_db),
        "--prefix",
        topo.prefix,
        "--ready-file",
        str(ready),
        env=env_for(settings),
    )
    wait_for(ready.exists, 30, "the consumer to start")
    halting_env = env_for(
        settings, DRILL_MSG_TEST_HALT_AFTER_PUBLISH=str(halt_at), DRILL_MSG_TEST_HALT_MARKER=str(marker)
    )
    producer = procs.start(
        "producer1",
        "produce",
        "--db",
        str(producer_db),
        "--count",
        str(count),
        "--exchange",
        topo.exchange,
        "--per-tx",
        "20",
        env=halting_env,
    )
    wait_for(marker.exists, 60, "the relay to reach the halt point (confirmed, not yet recorded)")
    os.kill(producer.pid, signal.SIGKILL)
    assert producer.wait(10) == -signal.SIGKILL

    def consumed() -> int:
        return scalar(consumer_db, "SELECT COUNT(*) FROM effects")

    # Messages confirmed by the broker but still 'pending' in the outbox: they will be sent again.
    wait_for(lambda: consumed() >= halt_at, 30, "the confirmed messages to be consumed")
    pending = scalar(producer_db, "SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
    recorded = scalar(producer_db, "SELECT COUNT(*) FROM outbox WHERE status = 'sent'")
    assert recorded < halt_at <= consumed(), "the kill did not land between confirm and record"

    restarted = procs.start(
        "producer2",
        "produce",
        "--db",
        str(producer_db),
        "--count",
        str(count),
        "--exchange",
        topo.exchange,
        "--per-tx",
        "20",
        env=env_for(settings),
    )
    assert restarted.wait(timeout=120) == 0
    wait_for(lambda: consumed() >= count, 60, "every message to be consumed", period=0.2)
    consumer.send_signal(signal.SIGTERM)
    assert consumer.wait(30) == 0

    report = loss_report(producer_db, consumer_db)
    print(
        f"\nrelay SIGKILL with {pending} rows pending ({recorded} recorded):",
        " ".join(f"{k}={v}" for k, v in report.items()),
    )
    assert report["committed"] == count
    assert report["lost"] == 0 and report["unexpected"] == 0
    assert report["duplicated_effects"] == 0
    # The republished copies of confirmed-but-unrecorded rows were absorbed by the inbox.
    assert report["duplicated_deliveries"] > 0
