"""The interface every broker provider implements (local processes, an external cluster, containers).

Example::

    from rig.cluster import LocalCluster, ClusterSpec

    cluster = LocalCluster(ClusterSpec(nodes=3))
    cluster.start()                  # 3 nodes, one cluster, healthy
    cluster.kill(2)                  # SIGKILL of node 2's Erlang VM
    cluster.restart(2)               # back, rejoined
    print(cluster.amqp_urls)
    cluster.stop()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class NodeStatus:
    index: int
    name: str
    state: str  # up | down | paused | starting | unknown
    pid: int | None
    amqp_url: str
    management_url: str
    mem_alarm: bool = False
    disk_free_alarm: bool = False
    partitions: list[str] = field(default_factory=list)
    leaders: list[str] = field(default_factory=list)
    version: str | None = None  # the node's RabbitMQ version, as its management API reports it


class Cluster(ABC):
    """A RabbitMQ cluster the drill can use, and (for providers that own it) break and mend."""

    provider: str = "abstract"
    #: False for clusters the project did not start: destructive actions need ``allow_external``.
    owned: bool = True
    #: True when the nodes are processes the rig started on this machine (the local provider): the
    #: drill then heals the rig after its faults, replaces a leftover vhost, samples the nodes' VMs and
    #: stops the cluster it started; a cluster it only connects to is never touched that way.
    runs_here: bool = False

    @property
    @abstractmethod
    def amqp_urls(self) -> list[str]:
        """One AMQP URL per node (admin credentials, default vhost)."""

    @abstractmethod
    def management_url(self, node: int) -> str:
        """Base URL of the node's management HTTP API (no trailing slash)."""

    @property
    @abstractmethod
    def admin(self) -> tuple[str, str]:
        """(user, password) of the administrator the rig uses (never the services)."""

    @property
    @abstractmethod
    def node_indices(self) -> list[int]: ...

    def amqp_url(self, node: int) -> str:
        return self.amqp_urls[self.node_indices.index(node)]

    def vm_pids(self) -> dict[int, int | None]:
        """Node -> the PID of its VM on this machine (None: not running), for providers that
        :attr:`runs_here`; empty for the others."""
        return {}

    def broker_version(self) -> str | None:
        """The RabbitMQ version the cluster reports (management ``overview``), None when no node answers."""
        from rig.cluster._management import ManagementClient

        for node in self.node_indices:
            try:
                with ManagementClient(self.management_url(node), *self.admin, timeout=3.0) as mc:
                    return str(mc.get("overview")["rabbitmq_version"])
            except Exception:  # a node down or shutting down: ask the next
                continue
        return None

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None:
        """Tear down everything this provider started."""

    @abstractmethod
    def status(self) -> list[NodeStatus]: ...

    @abstractmethod
    def kill(self, node: int) -> None:
        """SIGKILL the node's VM (a crash: no goodbye to its peers)."""

    @abstractmethod
    def stop_node(self, node: int) -> None:
        """Graceful stop of one node."""

    @abstractmethod
    def restart(self, node: int) -> None:
        """Start the node again (stopping it first if it runs) and wait until it has rejoined."""

    @abstractmethod
    def pause(self, node: int) -> None:
        """Freeze the VM (SIGSTOP): alive to the kernel, silent to its peers."""

    @abstractmethod
    def resume(self, node: int) -> None: ...
