"""A provisioned platform vhost per test: the platform's exchanges and queues, one user per service.

Each test gets a fresh vhost on the session's cluster (deleted afterwards), so messages a test leaves in
a queue never reach the next one, and the per-service users exist with their least-privilege grants.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.provision import admin_urls, provision_platform, unprovision


@dataclass(frozen=True)
class PlatformVhost:
    """What a platform test needs: the vhost, the admin's URLs into it, the secrets file, a run dir."""

    vhost: str
    admin_urls: list[str]
    secrets: Path
    run_dir: Path
    cluster: Cluster


@pytest.fixture
def platform_vhost(cluster: Cluster, tmp_path: Path) -> Iterator[PlatformVhost]:
    vhost = f"t-{uuid.uuid4().hex[:8]}"
    provisioned = provision_platform(cluster, tmp_path, vhost=vhost)
    try:
        yield PlatformVhost(vhost, admin_urls(cluster, vhost), provisioned.secrets_path, tmp_path, cluster)
    finally:
        unprovision(cluster, vhost)
