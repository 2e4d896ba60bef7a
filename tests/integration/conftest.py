"""The broker for integration tests: ONE real 3-node cluster per test session.

Tests restart nodes rather than recreating the cluster; after every test that used it the ``cluster``
fixture mends what the test broke (paused nodes resumed, dead ones restarted, alarms cleared), so the
next test starts from a healthy cluster.

Provider, by ``DRILL_TEST_PROVIDER``: ``local`` (default: processes started here), ``external``
(``DRILL_TEST_AMQP_URLS`` / ``DRILL_TEST_MANAGEMENT_URLS``, comma separated; destructive tests skip),
``testcontainers`` (skips with the reason when no Docker engine answers).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.cluster import (
    Cluster,
    ClusterSpec,
    ContainerCluster,
    ExternalCluster,
    LocalCluster,
    ProviderUnavailable,
)
from rig.ports import port_free

# Candidate layouts, so that two test sessions on one machine (or a user's own `./drill cluster up`)
# do not collide: the first whose ports are all free wins.
CANDIDATE_PORT_BASES = [6100, 6200, 6300, 6400, 6500, 6600]


def _free_layout(tmp: Path) -> ClusterSpec:
    for i, base in enumerate(CANDIDATE_PORT_BASES):
        spec = ClusterSpec(run_dir=tmp, port_base=base, address_block=20 + i, nodes=3)
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
def cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
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
    spec = _free_layout(tmp_path_factory.mktemp("cluster"))
    local = LocalCluster(spec)
    t0 = time.monotonic()
    local.start()
    print(f"\n[rig] 3-node cluster up in {time.monotonic() - t0:.1f} s at {spec.run_dir}")
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
