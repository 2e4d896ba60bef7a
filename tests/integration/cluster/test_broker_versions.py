"""A RabbitMQ 4.0 rig from a Debian root: booted, asked its version, a node SIGKILLed and restarted.

The root is built on first use (``.drill/brokers/trixie``, ~1-2 minutes, then cached); the test skips,
saying why, when it cannot be built (not root, no debootstrap, no network). With ``--broker 4.0`` the
session's cluster is that rig and is used as it is; otherwise the test starts one of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from rig import procs
from rig.cluster import Cluster, ClusterSpec, LocalCluster, ManagementClient, RootUnavailable, amqp_handshake
from rig.cluster.versions import BROKERS, host_codename
from rig.ports import port_free

pytestmark = pytest.mark.integration

#: Free of the session cluster's candidate layouts (6100-6600, blocks 20-25).
PORT_BASE, BLOCK = 6900, 40


@pytest.fixture(scope="module")
def rig_40(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, broker: str | None
) -> Iterator[LocalCluster]:
    """One 4.0 rig for the module: the session's with ``--broker 4.0``, else one of its own."""
    if broker == "4.0":
        session = request.getfixturevalue("cluster_session")
        if not isinstance(session, LocalCluster):
            pytest.skip(f"needs the local provider (this session uses {session.provider})")
        yield session
        session.ensure_healthy()
        return
    spec = ClusterSpec(
        run_dir=tmp_path_factory.mktemp("rig40"),
        port_base=PORT_BASE,
        address_block=BLOCK,
        nodes=3,
        broker="4.0",
    )
    if not all(port_free(n.host, n.amqp_port) for n in spec.all_nodes()):
        pytest.skip(f"ports {PORT_BASE + 1}-{PORT_BASE + 3} are taken by something else")
    rig = LocalCluster(spec)
    try:
        rig.start()
    except RootUnavailable as exc:
        pytest.skip(f"no RabbitMQ 4.0 here: {exc}")
    try:
        yield rig
    finally:
        rig.stop()


def test_a_40_rig_runs_40_and_survives_a_kill(rig_40: LocalCluster) -> None:
    rig = rig_40
    # The version the nodes report, each of them, and through the management API's overview.
    assert (rig.broker_version() or "").startswith("4.0."), rig.broker_version()
    deadline = time.monotonic() + 15  # the management API's node figures lag its first collection
    while {(s.version or "")[:4] for s in rig.status()} != {"4.0."}:
        assert time.monotonic() < deadline, [s.version for s in rig.status()]
        time.sleep(0.5)
    out = rig.ctl(1, "version").strip()
    assert out.startswith("4.0."), out  # the CLI runs from the same root: its version is the server's
    st = json.loads(rig.ctl(2, "cluster_status", "--formatter", "json"))
    assert len(st["running_nodes"]) == 3
    if host_codename() != BROKERS["4.0"].codename:  # served from a Debian 13 root on this host
        assert (rig.state.broker_root or "").endswith(BROKERS["4.0"].codename)
    # Rolling restarts wait on this command (chaos/faults/broker.py): it exists in 4.0's CLI.
    rig.ctl(1, "await_online_quorum_plus_one", "-t", "30", tool="rabbitmq-upgrade", timeout=40)

    # SIGKILL of the real VM: the recorded PID is the beam.smp inside the root.
    pid = rig.beam_pid(2)
    assert pid is not None and procs.comm(pid) == "beam.smp"
    rig.kill(2)
    assert not procs.alive(pid)
    node2 = rig.state.node(2)
    assert not amqp_handshake(node2.host, node2.amqp_port)
    deadline = time.monotonic() + 30
    while node2.name in rig.running_nodes(1):
        assert time.monotonic() < deadline, "node 1 still sees node 2 running 30 s after its SIGKILL"
        time.sleep(0.2)

    rig.restart(2)
    assert rig.node_state(2) == "up" and rig.beam_pid(2) != pid
    assert node2.name in rig.running_nodes(1)
    # The alarm commands the chaos faults use exist on 4.0 and act.
    rig.set_memory_alarm(True)
    try:
        deadline = time.monotonic() + 15
        while not all(s.mem_alarm for s in rig.status()):
            assert time.monotonic() < deadline, "memory alarm not raised on every node"
            time.sleep(0.5)
    finally:
        rig.set_memory_alarm(False)
    with ManagementClient(rig.management_url(1), *rig.admin) as mc:
        assert mc.get("overview")["rabbitmq_version"].startswith("4.0.")


async def test_a_40_parking_lot_keeps_a_message_returned_25_times(
    rig_40: LocalCluster,
    parking_lot_looks: Callable[[Cluster, str], Awaitable[tuple[str, dict[str, object], int]]],
) -> None:
    """4.0 gives quorum queues a delivery limit of 20 by default: the topology's explicit "no limit"
    (-1 on 4.x) keeps a parked message that `drill parked list` returned 25 times."""
    version, args, left = await parking_lot_looks(rig_40, "dlimit40")
    assert version.startswith("4.0.")
    assert args.get("x-delivery-limit") == -1
    assert left == 1
