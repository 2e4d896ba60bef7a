"""The broker rig against real RabbitMQ nodes: up, kill, restart, pause, alarms, providers, errors."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rig import procs
from rig.cluster import (
    ClusterAlreadyRunning,
    ClusterSpec,
    ContainerCluster,
    ExternalCluster,
    ExternalClusterRefused,
    LocalCluster,
    ManagementClient,
    PortInUse,
    ProviderUnavailable,
    amqp_handshake,
    docker_available,
)
from rig.cluster.versions import installed_version

pytestmark = pytest.mark.integration


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def running_names(c: LocalCluster, via: int) -> set[str]:
    return set(c.running_nodes(via))


def test_three_nodes_form_one_named_cluster(local_cluster: LocalCluster) -> None:
    states = {s.index: s.state for s in local_cluster.status()}
    assert states == {1: "up", 2: "up", 3: "up"}
    names = {n.name for n in local_cluster.state.nodes}
    for i in (1, 2, 3):
        assert running_names(local_cluster, i) == names
    with ManagementClient(local_cluster.management_url(1), *local_cluster.admin) as mc:
        assert mc.get("cluster-name")["name"] == local_cluster.spec.cluster_name
        overview = mc.get("overview")
    # the version the rig was asked for (--broker), or the host's package
    broker = local_cluster.spec.broker
    expected = installed_version(local_cluster.spec.rabbitmq_bin) if broker == "system" else broker + "."
    assert expected and overview["rabbitmq_version"].startswith(expected), (
        overview["rabbitmq_version"],
        broker,
    )
    # the services never use guest: the rig's admin is its own user
    assert local_cluster.admin[0] != "guest"
    # each node listens on its own loopback address
    hosts = {n.host for n in local_cluster.state.nodes}
    assert len(hosts) == 3 and all(h.startswith("127.0.") for h in hosts)


def test_kill_is_a_real_sigkill_and_restart_rejoins(local_cluster: LocalCluster) -> None:
    pid = local_cluster.beam_pid(2)
    assert pid is not None and procs.comm(pid) == "beam.smp"
    local_cluster.kill(2)
    assert not procs.alive(pid)
    assert local_cluster.node_state(2) == "down"
    node2 = local_cluster.state.node(2)
    assert not amqp_handshake(node2.host, node2.amqp_port)
    wait_for(lambda: node2.name not in running_names(local_cluster, 1), 30, "node 1 to see node 2 gone")

    local_cluster.restart(2)
    assert local_cluster.node_state(2) == "up"
    assert local_cluster.beam_pid(2) != pid
    assert node2.name in running_names(local_cluster, 1)


def test_graceful_stop_then_restart(local_cluster: LocalCluster) -> None:
    local_cluster.stop_node(3)
    assert local_cluster.node_state(3) == "down"
    local_cluster.restart(3)
    assert local_cluster.node_state(3) == "up"


def test_a_vm_that_dies_while_booting_is_started_again(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a full stop, a node's VM can exit during boot (seen in CI: node 3 in rabbit_feature_flags);
    start_nodes starts it again instead of failing the whole recovery."""
    killed: list[int] = []
    spawn = local_cluster._spawn_node

    def spawn_then_kill_the_first_boot(index: int) -> None:
        spawn(index)
        if not killed:
            pid = local_cluster.beam_pid(index)
            assert pid is not None
            procs.send(pid, signal.SIGKILL)  # dies before it could serve AMQP
            killed.append(pid)

    local_cluster.stop_node(3)
    monkeypatch.setattr(local_cluster, "_spawn_node", spawn_then_kill_the_first_boot)
    local_cluster.start_nodes([3])
    assert len(killed) == 1 and not procs.alive(killed[0])
    assert local_cluster.node_state(3) == "up"
    assert local_cluster.beam_pid(3) != killed[0]
    assert local_cluster.state.node(3).name in running_names(local_cluster, 1)


def test_pause_freezes_the_vm_and_resume_thaws_it(local_cluster: LocalCluster) -> None:
    pid = local_cluster.beam_pid(3)
    assert pid is not None
    local_cluster.pause(3)
    assert procs.proc_state(pid) == "T"
    assert local_cluster.node_state(3) == "paused"
    node3 = local_cluster.state.node(3)
    # a frozen VM accepts the TCP connection in the kernel but never answers the protocol
    assert not amqp_handshake(node3.host, node3.amqp_port, timeout=0.5)
    local_cluster.resume(3)
    wait_for(lambda: local_cluster.node_state(3) == "up", 30, "node 3 to answer again")
    assert local_cluster.beam_pid(3) == pid  # the same VM, thawed, not restarted


def test_memory_alarm_is_raised_seen_and_cleared(local_cluster: LocalCluster) -> None:
    local_cluster.set_memory_alarm(True)
    wait_for(lambda: all(s.mem_alarm for s in local_cluster.status()), 30, "memory alarms on all nodes")
    local_cluster.set_memory_alarm(False)
    wait_for(lambda: not any(s.mem_alarm for s in local_cluster.status()), 30, "alarms cleared")


def test_quorum_queue_leader_is_reported(local_cluster: LocalCluster) -> None:
    import asyncio

    import aio_pika

    name = f"rig-leader-{os.getpid()}-{time.time_ns()}"

    async def declare(delete: bool) -> None:
        conn = await aio_pika.connect(local_cluster.amqp_urls[0])
        async with conn:
            ch = await conn.channel()
            if delete:
                await ch.queue_delete(name)
            else:
                await ch.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})

    asyncio.run(declare(False))
    try:
        leader = local_cluster.queue_leader(name)
        assert leader in (1, 2, 3)
        by_node = {s.index: s.leaders for s in local_cluster.status()}
        assert f"//{name}" in by_node[leader]
    finally:
        asyncio.run(declare(True))


def test_second_up_on_a_running_cluster_is_refused(local_cluster: LocalCluster) -> None:
    before = local_cluster.state.owned_pids()
    with pytest.raises(ClusterAlreadyRunning, match="cluster down"):
        LocalCluster(local_cluster.spec).start()
    assert all(procs.alive(p) for p in before)  # the running cluster was not touched


def test_port_taken_gives_the_port_and_the_fix(tmp_path: Path) -> None:
    spec = ClusterSpec(run_dir=tmp_path / "c", port_base=7300, address_block=77, nodes=1)
    holder = socket.socket()
    holder.bind((spec.node(1).host, spec.node(1).amqp_port))
    holder.listen()
    try:
        with pytest.raises(PortInUse) as info:
            LocalCluster(spec).start()
    finally:
        holder.close()
    assert f"{spec.node(1).host}:{spec.node(1).amqp_port}" in str(info.value)
    assert "--port-base" in str(info.value)


def test_external_provider_observes_but_refuses_destruction(local_cluster: LocalCluster) -> None:
    ext = ExternalCluster(local_cluster.amqp_urls, [local_cluster.management_url(i) for i in (1, 2, 3)])
    assert [s.state for s in ext.status()] == ["up", "up", "up"]
    with pytest.raises(ExternalClusterRefused, match="--allow-external"):
        ext.kill(1)
    assert local_cluster.node_state(1) == "up"
    allowed = ExternalCluster(local_cluster.amqp_urls, [], allow_external=True)
    with pytest.raises(ExternalClusterRefused, match="local provider"):
        allowed.pause(1)


def test_testcontainers_provider_skips_cleanly_without_docker() -> None:
    ok, why = docker_available()
    if ok:
        pytest.skip(f"a Docker engine answers ({why}); the no-engine path is not reachable here")
    t0 = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="no Docker engine answers"):
        ContainerCluster().start()
    assert time.monotonic() - t0 < 10, "detection must not hang"


def test_sigterm_of_a_frozen_cluster_still_tears_down(tmp_path: Path) -> None:
    """down works on a cluster whose node is paused (SIGCONT before SIGTERM)."""
    spec = ClusterSpec(run_dir=tmp_path / "c", port_base=7400, address_block=78, nodes=1)
    c = LocalCluster(spec)
    c.start()
    pids = c.state.owned_pids()
    c.pause(1)
    c.stop()
    assert not any(procs.alive(p) for p in pids)
    assert not (spec.run_dir / "state.json").exists()
