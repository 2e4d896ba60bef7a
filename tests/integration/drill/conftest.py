"""Fixtures of the drill's own tests: a vhost of its own per test on the session's cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from rig.cluster import LocalCluster, ManagementClient


@pytest.fixture
def vhost(local_cluster: LocalCluster) -> Iterator[str]:
    """A fresh vhost name for one drill run (the drill provisions it); deleted after the test."""
    name = f"drill-t-{uuid.uuid4().hex[:8]}"
    yield name
    with ManagementClient(local_cluster.management_url(1), *local_cluster.admin, timeout=10) as mc:
        mc.delete(f"vhosts/{quote(name, safe='')}")
