"""The provisioned platform for the tests: ONE vhost per session, emptied before every test.

Provisioning declares 106 quorum queues (each a Raft group on three nodes): 10-25 s on this machine, and
as long again to delete them. So the vhost, its topology and the per-service users (least-privilege
grants) are made once per session; before each test every queue of the vhost is purged, so messages a
test left behind never reach the next one. Each test gets its own run dir with a copy of the secrets file.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rig.cluster import Cluster
from rig.provision import admin_urls, provision_platform, unprovision
from system.platform.topology import platform_topology


@dataclass(frozen=True)
class PlatformVhost:
    """What a platform test needs: the vhost, the admin's URLs into it, the secrets file, a run dir."""

    vhost: str
    admin_urls: list[str]
    secrets: Path
    run_dir: Path
    cluster: Cluster


@dataclass(frozen=True)
class _Provisioned:
    vhost: str
    secrets: Path


@pytest.fixture(scope="session")
def platform_session(
    cluster_session: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Provisioned]:
    vhost = f"t-{uuid.uuid4().hex[:8]}"
    run = tmp_path_factory.mktemp("platform")
    provisioned = provision_platform(cluster_session, run, vhost=vhost)
    try:
        yield _Provisioned(vhost, provisioned.secrets_path)
    finally:
        unprovision(cluster_session, vhost)


async def _purge_all(urls: list[str], vhost: str) -> None:
    import aio_pika

    names = [q.name for q in platform_topology(vhost).declared_queues()]
    last: Exception | None = None
    for url in urls:  # any node that answers (a previous test may have left one restarting)
        try:
            conn = await aio_pika.connect(url, timeout=10)
        except Exception as exc:
            last = exc
            continue
        try:
            channel = await conn.channel()
            underlay = await channel.get_underlay_channel()
            for name in names:
                await underlay.queue_purge(name)
            return
        finally:
            await conn.close()
    raise RuntimeError(f"no node answered to purge the test vhost: {last!r}")


@pytest.fixture
def platform_vhost(cluster: Cluster, platform_session: _Provisioned, tmp_path: Path) -> PlatformVhost:
    urls = admin_urls(cluster, platform_session.vhost)
    asyncio.run(_purge_all(urls, platform_session.vhost))
    secrets = tmp_path / "secrets" / "platform.json"
    secrets.parent.mkdir(mode=0o700)
    shutil.copy2(platform_session.secrets, secrets)
    return PlatformVhost(platform_session.vhost, urls, secrets, tmp_path, cluster)
