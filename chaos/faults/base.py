"""What every fault is, and the registry heal uses to undo a journaled fault by its kind."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from rig.cluster import Cluster, ClusterError, LocalCluster


class FaultError(Exception):
    """A fault cannot be applied (bad target, unsafe, unsupported here): the message says why."""


FAULTS: dict[str, type[Fault]] = {}


class Fault(ABC):
    """One fault against one target.

    Subclasses set ``kind``; ``instant`` faults (a kill, closing connections) have nothing to hold
    open, but still journal an undo (a kill's undo restarts the node).
    """

    kind: ClassVar[str]
    instant: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "kind" in cls.__dict__:
            FAULTS[cls.kind] = cls

    def __init__(self, target: str = "", **params: Any) -> None:
        self.target = target
        self.params = params

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}({self.target}{' ' + extra if extra else ''})"

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        """The undo record, computed before anything changes. Default: nothing to remember."""
        return {}

    @abstractmethod
    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        """Break the thing. Returns details for the journal (what was observed while applying)."""

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        """Put it back, from the undo record alone. Must be safe to call twice."""
        return {}


def local(cluster: Cluster | None, what: str) -> LocalCluster:
    """Process-level faults need a cluster whose processes are ours."""
    if not isinstance(cluster, LocalCluster):
        have = cluster.provider if cluster is not None else "no cluster"
        raise FaultError(f"{what} needs the local provider (this run has {have})")
    return cluster


def resolve_node(cluster: Cluster | None, target: str) -> int:
    """``node:N`` | ``N`` | ``leader:[vhost/]queue`` | ``most-leaders`` -> a node index."""
    lc = local(cluster, f"target {target!r}")
    if target.isdigit() or target.startswith("node:"):
        n = int(target.removeprefix("node:"))
        if n not in lc.node_indices:
            raise FaultError(f"no node {n}: the cluster has nodes {lc.node_indices}")
        return n
    if target.startswith("leader:"):
        ref = target.removeprefix("leader:")
        vhost, _, queue = ref.rpartition("/")
        try:
            return lc.queue_leader(queue, vhost or "/")
        except ClusterError as exc:
            raise FaultError(f"cannot find the leader of {ref!r}: {exc}") from exc
    if target == "most-leaders":
        up = [s for s in lc.status() if s.state == "up"]
        if not up:
            raise FaultError("no node is up")
        return max(up, key=lambda s: (len(s.leaders), -s.index)).index
    raise FaultError(f"unknown node target {target!r}: use N, node:N, leader:[vhost/]queue or most-leaders")
