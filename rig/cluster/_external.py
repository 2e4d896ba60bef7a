"""A cluster someone else runs, given by its AMQP and management URLs.

The drill may use it for traffic and audits, but every destructive action is refused unless the user
said ``--allow-external``; and even then only what can be done remotely is offered (no SIGKILL of a
process on another host).
"""

from __future__ import annotations

from urllib.parse import urlparse

from rig.cluster._errors import ExternalClusterRefused, UnknownNode
from rig.cluster._management import ManagementClient
from rig.cluster.abc import Cluster, NodeStatus


class ExternalCluster(Cluster):
    provider = "external"
    owned = False

    def __init__(
        self, amqp_urls: list[str], management_urls: list[str], allow_external: bool = False
    ) -> None:
        if not amqp_urls:
            raise ValueError("an external cluster needs at least one AMQP URL")
        self._amqp = list(amqp_urls)
        self._mgmt = list(management_urls)
        self.allow_external = allow_external
        first = urlparse(self._amqp[0])
        self._admin = (first.username or "guest", first.password or "guest")

    @property
    def amqp_urls(self) -> list[str]:
        return list(self._amqp)

    @property
    def admin(self) -> tuple[str, str]:
        return self._admin

    @property
    def node_indices(self) -> list[int]:
        return list(range(1, len(self._amqp) + 1))

    def management_url(self, node: int) -> str:
        if not 1 <= node <= len(self._mgmt):
            raise UnknownNode(f"no management URL for node {node} (given: {len(self._mgmt)})")
        return self._mgmt[node - 1].rstrip("/")

    def start(self) -> None:
        """Nothing to start: the cluster is someone else's. Checks it answers."""
        self.status()

    def stop(self) -> None:
        """Nothing to stop: we did not start it."""

    def status(self) -> list[NodeStatus]:
        out = [
            NodeStatus(
                index=i,
                name="?",
                state="unknown",
                pid=None,
                amqp_url=u,
                management_url=self._mgmt[i - 1] if i <= len(self._mgmt) else "",
            )
            for i, u in enumerate(self._amqp, start=1)
        ]
        for url in self._mgmt:
            try:
                with ManagementClient(url, *self._admin) as mc:
                    nodes = mc.nodes()
                    leaders = mc.quorum_leaders()
            except Exception:
                continue
            for s, h in zip(out, nodes, strict=False):
                s.name, s.state = h.name, "up" if h.running else "down"
                s.mem_alarm, s.disk_free_alarm, s.partitions = h.mem_alarm, h.disk_free_alarm, h.partitions
                s.leaders = leaders.get(h.name, [])
            break
        return out

    def _refuse(self, what: str) -> None:
        if not self.allow_external:
            raise ExternalClusterRefused(
                f"refusing to {what} on an external cluster we did not start; pass --allow-external to insist"
            )
        raise ExternalClusterRefused(f"cannot {what} on an external cluster: it needs the local provider")

    def kill(self, node: int) -> None:
        self._refuse(f"SIGKILL node {node}")

    def stop_node(self, node: int) -> None:
        self._refuse(f"stop node {node}")

    def restart(self, node: int) -> None:
        self._refuse(f"restart node {node}")

    def pause(self, node: int) -> None:
        self._refuse(f"pause node {node}")

    def resume(self, node: int) -> None:
        self._refuse(f"resume node {node}")
