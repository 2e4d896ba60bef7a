"""Phase "provision": the vhost, one broker user per service, the topology, ``<run>/secrets/platform.json``.

A vhost left by a previous run on a rig that runs here is deleted first (its leftover messages must not
reach this run's services); on a cluster the rig only connects to, the run refuses instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from harness.drill.run import DrillError, DrillRun
from rig.cluster import Cluster, ManagementClient

if TYPE_CHECKING:
    from rig.provision import Provisioned

Provisioner = Callable[..., "Provisioned"]


def management(cluster: Cluster) -> ManagementClient:
    """A management API client on the first node that answers."""
    errors = []
    for n in cluster.node_indices:
        client = ManagementClient(cluster.management_url(n), *cluster.admin, timeout=10.0)
        try:
            client.get("overview")
            return client
        except Exception as exc:
            errors.append(f"node {n}: {exc}")
            client.close()
    raise DrillError("no management API answered: " + "; ".join(errors))


def vhost_exists(cluster: Cluster, vhost: str) -> bool:
    """Whether ``vhost`` is declared on the cluster."""
    import httpx

    with management(cluster) as mc:
        try:
            mc.get(f"vhosts/{quote(vhost, safe='')}")
            return True
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return False
            raise


def delete_vhost(cluster: Cluster, vhost: str) -> None:
    """Delete ``vhost`` and everything in it."""
    with management(cluster) as mc:
        mc.delete(f"vhosts/{quote(vhost, safe='')}")


def _provision(cluster: Cluster, run_dir: Path, *, vhost: str) -> Provisioned:
    from rig.provision import provision_platform

    return provision_platform(cluster, run_dir, vhost=vhost)


def provision(
    run: DrillRun,
    *,
    exists: Callable[[Cluster, str], bool] = vhost_exists,
    delete: Callable[[Cluster, str], None] = delete_vhost,
    provisioner: Provisioner = _provision,
) -> None:
    """Provision the platform on ``run.cluster``; ``run.secrets`` is then the secrets file."""
    assert run.cluster is not None
    if not run.started_cluster and exists(run.cluster, run.vhost):
        if run.cluster.runs_here:
            # A previous run's vhost: its leftover messages must not reach this run's services.
            run.say(f"vhost {run.vhost!r} exists (a previous run's): deleting it to start clean")
            delete(run.cluster, run.vhost)
        else:
            raise DrillError(
                f"vhost {run.vhost!r} already exists on the external cluster; pick another with --vhost"
            )
    t0 = time.monotonic()
    prov = provisioner(run.cluster, run.run_dir, vhost=run.vhost)
    run.secrets = run.platform_secrets = prov.secrets_path
    run.say(
        f"vhost {prov.vhost}: {prov.queues} queues, {len(prov.users)} service users, secrets in "
        f"{prov.secrets_path} ({time.monotonic() - t0:.1f} s)"
    )
