"""The broker for integration tests: ONE real 3-node cluster per test session.

Tests restart nodes rather than recreating the cluster; after every test that used it the ``cluster``
fixture mends what the test broke (paused nodes resumed, dead ones restarted, alarms cleared), so the
next test starts from a healthy cluster.

Provider, by ``DRILL_TEST_PROVIDER``: ``local`` (default: processes started here), ``external``
(``DRILL_TEST_AMQP_URLS`` / ``DRILL_TEST_MANAGEMENT_URLS``, comma separated; destructive tests skip),
``testcontainers`` (skips with the reason when no Docker engine answers).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aio_pika
import pytest

from rig.cluster import (
    Cluster,
    ClusterSpec,
    ContainerCluster,
    ExternalCluster,
    LocalCluster,
    ManagementClient,
    ProviderUnavailable,
)
from rig.ports import port_free
from system.messaging.broker import server_version
from system.messaging.declare import declare_topology
from system.messaging.topology import Binding, Exchange, Service, Topology, WorkQueue

# Candidate layouts, so that two test sessions on one machine (or a user's own `./drill cluster up`)
# do not collide: the first whose ports are all free wins.
CANDIDATE_PORT_BASES = [6100, 6200, 6300, 6400, 6500, 6600]


def _free_layout(tmp: Path, broker: str | None = None) -> ClusterSpec:
    extra = {"broker": broker} if broker else {}
    for i, base in enumerate(CANDIDATE_PORT_BASES):
        spec = ClusterSpec(run_dir=tmp, port_base=base, address_block=20 + i, nodes=3, **extra)  # type: ignore[arg-type]
        ports = [
            (n.host, p)
            for n in spec.all_nodes()
            for p in (n.amqp_port, n.mgmt_port, n.prometheus_port, n.dist_port)
        ]
        ports.append(("127.0.0.1", spec.epmd_port))
        if all(port_free(h, p) for h, p in ports):
            return spec
    raise RuntimeError(f"no free port layout among bases {CANDIDATE_PORT_BASES}")


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> str | None:
    """``--broker``: the RabbitMQ the session's cluster runs (None: ``DRILL_CLUSTER_BROKER`` or the host's)."""
    value = request.config.getoption("--broker")
    return str(value) if value else None


@pytest.fixture(scope="session")
def cluster_session(tmp_path_factory: pytest.TempPathFactory, broker: str | None) -> Iterator[Cluster]:
    provider = os.environ.get("DRILL_TEST_PROVIDER", "local")
    if provider == "external":
        amqp = [u for u in os.environ.get("DRILL_TEST_AMQP_URLS", "").split(",") if u]
        mgmt = [u for u in os.environ.get("DRILL_TEST_MANAGEMENT_URLS", "").split(",") if u]
        yield ExternalCluster(amqp, mgmt)
        return
    if provider == "testcontainers":
        c = ContainerCluster()
        try:
            c.start()
        except ProviderUnavailable as exc:
            pytest.skip(str(exc))
        yield c
        c.stop()
        return
    spec = _free_layout(tmp_path_factory.mktemp("cluster"), broker)
    local = LocalCluster(spec)
    t0 = time.monotonic()
    local.start()
    print(
        f"\n[rig] 3-node cluster (broker {spec.broker}: RabbitMQ {local.broker_version()}) up in "
        f"{time.monotonic() - t0:.1f} s at {spec.run_dir}"
    )
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def cluster(cluster_session: Cluster) -> Iterator[Cluster]:
    """The session's cluster, healthy before the test and mended after it."""
    yield cluster_session
    if isinstance(cluster_session, LocalCluster):
        did = cluster_session.ensure_healthy()
        if did:
            print(f"[rig] after the test: {'; '.join(did)}")


@pytest.fixture
def local_cluster(cluster: Cluster) -> LocalCluster:
    """For tests that need to signal real processes: skips on external and container providers."""
    if not isinstance(cluster, LocalCluster):
        pytest.skip(f"needs the local provider (this session uses {cluster.provider})")
    return cluster


#: Returns of one parked message: more than RabbitMQ 4.x's default quorum-queue delivery limit (20).
LOOKS = 25


async def _parked_message_survives_looks(cluster: Cluster, name: str) -> tuple[str, dict[str, object], int]:
    """Declare a one-queue topology, park one message, return it ``LOOKS`` times; (the broker's version,
    the parking lot's arguments as the broker holds them, the messages left in it)."""
    url = cluster.amqp_urls[0]
    topo = Topology(
        exchanges=(Exchange(f"{name}.x"),),
        services=(Service(name, consumes=(WorkQueue(f"{name}.q", (Binding(f"{name}.x", "#"),)),)),),
    )
    parked = f"{name}.q.parked"
    connection = await aio_pika.connect(url)
    try:
        await declare_topology(connection, topo)
        version = server_version(connection)
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(b"poison", message_id="m-1"), routing_key=parked
        )
        lot = await channel.declare_queue(parked, passive=True)

        async def look() -> aio_pika.abc.AbstractIncomingMessage | None:
            for _ in range(50):  # a message just published or returned may take a moment to be ready
                msg = await lot.get(fail=False)
                if msg is not None:
                    return msg
                await asyncio.sleep(0.1)
            return None

        left = LOOKS
        for i in range(LOOKS):
            msg = await look()
            if msg is None:
                left = i
                break
            await msg.nack(requeue=True)
        # Still there after the returns? (a passive declare's count lags a return: a look is the truth)
        last = await look() if left == LOOKS else None
        left = 1 if last is not None else 0
        if last is not None:
            await last.ack()
        with ManagementClient(cluster.management_url(cluster.node_indices[0]), *cluster.admin) as mc:
            args = dict(mc.queue(parked)["arguments"])
        for q in (parked, f"{name}.q", *(f"{name}.q.retry.{s}" for s in ("1s", "5s", "25s"))):
            await channel.queue_delete(q)
        await channel.exchange_delete(f"{name}.x")
        return version, args, left
    finally:
        await connection.close()


@pytest.fixture
def parking_lot_looks() -> Callable[[Cluster, str], Awaitable[tuple[str, dict[str, object], int]]]:
    """``await f(cluster, name)``: a one-queue topology declared, one message parked and returned 25
    times; (the broker's version, the parking lot's arguments, the messages left in it)."""
    return _parked_message_survives_looks
