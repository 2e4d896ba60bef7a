"""Every broker fault against the live rig: applied (an observable effect), undone, journaled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aio_pika
import pytest

from chaos.faults import (
    CloseConnections,
    DiskAlarm,
    FullOutage,
    KillNode,
    MemoryAlarm,
    MoveLeader,
    Partition,
    PauseNode,
    RestartNode,
    RollingRestart,
    StopNode,
)
from chaos.faults.base import resolve_node
from chaos.faults.partition import chain_exists
from chaos.injector import FaultInjector
from chaos.journal import Journal
from rig.cluster import ClusterError, LocalCluster, amqp_handshake

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def leader_or_none(lc: LocalCluster, queue: str) -> int | None:
    """None while an election is under way (the management API shows no leader then)."""
    try:
        return lc.queue_leader(queue)
    except ClusterError:
        return None


def nodes_seen_down(lc: LocalCluster, via: int) -> set[str]:
    """Nodes that ``via``'s management API reports not running (CLI calls can hang in a partition)."""
    from rig.cluster import ManagementClient

    try:
        with ManagementClient(lc.management_url(via), *lc.admin, timeout=3) as mc:
            return {h.name for h in mc.nodes() if not h.running}
    except Exception:
        return set()


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "chaos" / "journal.jsonl")


@pytest.fixture
def injector(local_cluster: LocalCluster, journal: Journal) -> FaultInjector:
    return FaultInjector(local_cluster, journal)


def assert_journaled(journal: Journal, kind: str) -> None:
    events = [(r["event"], r["kind"]) for r in journal.records()]
    assert ("apply", kind) in events and ("applied", kind) in events and ("undo", kind) in events, events
    assert journal.open_faults() == []


@pytest.fixture
def quorum_queue(local_cluster: LocalCluster) -> Iterator[str]:
    name = f"chaos-q-{os.getpid()}-{time.time_ns()}"

    async def run(delete: bool) -> None:
        conn = await aio_pika.connect(local_cluster.amqp_urls[0])
        async with conn:
            ch = await conn.channel()
            if delete:
                await ch.queue_delete(name)
            else:
                await ch.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})

    asyncio.run(run(False))
    yield name
    local_cluster.ensure_healthy()
    asyncio.run(run(True))


def test_kill_the_leader_of_a_queue(injector: FaultInjector, journal: Journal, quorum_queue: str) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)
    old = lc.queue_leader(quorum_queue)
    with injector.applied(KillNode(f"leader:{quorum_queue}")) as active:
        assert active.undo_record["node"] == old
        assert lc.node_state(old) == "down"
        wait_for(
            lambda: leader_or_none(lc, quorum_queue) not in (None, old), 30, "a new leader on the survivors"
        )
    assert lc.node_state(old) == "up"
    assert_journaled(journal, "kill_node")


def test_most_leaders_names_the_busiest_node(injector: FaultInjector, quorum_queue: str) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)
    counts = {s.index: len(s.leaders) for s in lc.status()}
    assert counts[resolve_node(lc, "most-leaders")] == max(counts.values()) >= 1


def test_graceful_stop(injector: FaultInjector, journal: Journal) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)
    with injector.applied(StopNode("3")):
        assert lc.node_state(3) == "down"
    assert lc.node_state(3) == "up"
    assert_journaled(journal, "stop_node")


def test_graceful_restart(injector: FaultInjector, journal: Journal) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)
    before = lc.beam_pid(1)
    with injector.applied(RestartNode("1")) as active:
        assert active.detail["node"] == 1
    assert lc.node_state(1) == "up" and lc.beam_pid(1) != before
    assert lc.state.node(1).name in lc.running_nodes(2)
    assert_journaled(journal, "restart_node")


def test_pause(injector: FaultInjector, journal: Journal) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)
    with injector.applied(PauseNode("2")):
        assert lc.node_state(2) == "paused"
    wait_for(lambda: lc.node_state(2) == "up", 30, "node 2 thawed")
    assert_journaled(journal, "pause_node")


def test_full_outage_and_recovery(injector: FaultInjector, journal: Journal) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)
    with injector.applied(FullOutage(mode="stop")):
        assert all(lc.node_state(n) == "down" for n in lc.node_indices)
        assert not any(amqp_handshake(n.host, n.amqp_port) for n in lc.state.nodes)
    assert all(lc.node_state(n) == "up" for n in lc.node_indices)
    assert set(lc.running_nodes(1)) == {n.name for n in lc.state.nodes}
    assert_journaled(journal, "full_outage")


def test_rolling_restart_keeps_queued_messages(
    injector: FaultInjector, journal: Journal, quorum_queue: str
) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)
    before = {n.index: n.beam_pid for n in lc.state.nodes}

    async def publish() -> None:
        conn = await aio_pika.connect(lc.amqp_urls[0])
        async with conn:
            ch = await conn.channel()
            for i in range(50):
                await ch.default_exchange.publish(
                    aio_pika.Message(str(i).encode(), delivery_mode=2), quorum_queue
                )

    async def count() -> int:
        conn = await aio_pika.connect_robust(lc.amqp_urls[0])
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue(quorum_queue, passive=True)
            return int(q.declaration_result.message_count or 0)

    asyncio.run(publish())
    with injector.applied(RollingRestart()) as active:
        assert set(active.detail["seconds_per_node"]) == {"1", "2", "3"}
    after = {n.index: n.beam_pid for n in lc.state.nodes}
    assert all(before[i] != after[i] for i in before), "every node was restarted"
    assert asyncio.run(count()) == 50
    assert_journaled(journal, "rolling_restart")


def test_memory_and_disk_alarms(injector: FaultInjector, journal: Journal) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)
    with injector.applied(MemoryAlarm()):
        wait_for(lambda: all(s.mem_alarm for s in lc.status()), 30, "memory alarms")
    wait_for(lambda: not any(s.mem_alarm for s in lc.status()), 30, "memory alarms cleared")
    with injector.applied(DiskAlarm()):
        wait_for(lambda: all(s.disk_free_alarm for s in lc.status()), 30, "disk alarms")
    wait_for(lambda: not any(s.disk_free_alarm for s in lc.status()), 30, "disk alarms cleared")
    assert_journaled(journal, "memory_alarm")
    assert_journaled(journal, "disk_alarm")


def test_close_connections(injector: FaultInjector, journal: Journal) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)

    async def scenario() -> int:
        conn = await aio_pika.connect(lc.amqp_urls[1])
        await conn.channel()
        # aio-pika leaves is_closed False on a broker-forced close; its close callbacks do fire
        closed_by_broker = asyncio.Event()
        conn.close_callbacks.add(lambda *_: closed_by_broker.set())

        def seen() -> bool:
            from rig.cluster import ManagementClient

            with ManagementClient(lc.management_url(1), *lc.admin) as mc:
                return len(mc.get("connections")) >= 1

        # the management API learns of new connections with a short delay
        deadline = time.monotonic() + 15
        while not await asyncio.to_thread(seen):
            assert time.monotonic() < deadline, "connection never listed"
            await asyncio.sleep(0.2)
        active = await asyncio.to_thread(injector.inject, CloseConnections())
        await asyncio.wait_for(closed_by_broker.wait(), timeout=15)
        assert not conn.connected.is_set()
        await asyncio.to_thread(injector.undo, active)
        return int(active.detail["closed"])

    assert asyncio.run(scenario()) >= 1
    assert_journaled(journal, "close_connections")


def test_move_leader(injector: FaultInjector, journal: Journal, quorum_queue: str) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)
    old = lc.queue_leader(quorum_queue)
    with injector.applied(MoveLeader(f"queue:{quorum_queue}")) as active:
        assert active.detail["from"] == old and active.detail["to"] != old
    members = lc.ctl(1, "quorum_status", quorum_queue, "--formatter", "json", tool="rabbitmq-queues")
    assert len(json.loads(members)) == 3, "the moved member was added back"
    assert_journaled(journal, "move_leader")


def test_partition_isolates_a_node_and_heals(injector: FaultInjector, journal: Journal) -> None:
    lc = injector.cluster
    assert isinstance(lc, LocalCluster)
    name3 = lc.state.node(3).name
    with injector.applied(Partition("isolate:3")) as active:
        assert chain_exists(active.undo_record["chain"])
        wait_for(lambda: name3 in nodes_seen_down(lc, 1), 60, "node 1 to see node 3 gone")
    assert not chain_exists(active.undo_record["chain"])
    lc.ensure_healthy()  # pause_minority: the isolated node paused itself; it restarts after heal
    assert set(lc.running_nodes(1)) == {n.name for n in lc.state.nodes}
    assert_journaled(journal, "partition")


def _runner(lc: LocalCluster, journal: Journal, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "chaos", "apply", *args, "--duration", "300",
         "--run-dir", str(lc.spec.run_dir), "--journal", str(journal.path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_applied(journal: Journal, proc: subprocess.Popen[str]) -> None:
    wait_for(
        lambda: any(r["event"] == "applied" for r in journal.records()) or proc.poll() is not None,
        60,
        "the runner to apply its fault",
    )
    assert proc.poll() is None, proc.communicate()


def test_sigint_of_the_runner_undoes_its_fault(local_cluster: LocalCluster, journal: Journal) -> None:
    proc = _runner(local_cluster, journal, "pause_node", "2")
    _wait_applied(journal, proc)
    assert local_cluster.node_state(2) == "paused"
    proc.send_signal(signal.SIGINT)
    out, errs = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), out + errs
    assert "undone" in out or "interrupted" in out, out + errs
    assert [r["event"] for r in journal.records()] == ["apply", "applied", "undoing", "undo"]
    assert journal.open_faults() == []
    wait_for(lambda: local_cluster.node_state(2) == "up", 30, "node 2 resumed")


def test_sigkill_of_the_runner_then_heal(local_cluster: LocalCluster, journal: Journal) -> None:
    proc = _runner(local_cluster, journal, "partition", "isolate:2")
    _wait_applied(journal, proc)
    chain = f"DRILL{local_cluster.spec.address_block}"
    assert chain_exists(chain)
    proc.kill()
    proc.wait(timeout=10)
    assert chain_exists(chain), "a SIGKILLed runner cannot clean up"
    assert [f.kind for f in journal.open_faults()] == ["partition"]

    heal = subprocess.run(
        [sys.executable, "-m", "harness", "chaos", "heal", "--run-dir", str(local_cluster.spec.run_dir),
         "--journal", str(journal.path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert heal.returncode == 0, heal.stderr
    assert "undid partition" in heal.stdout
    assert not chain_exists(chain)
    assert journal.open_faults() == []
    assert all(local_cluster.node_state(n) == "up" for n in local_cluster.node_indices)
