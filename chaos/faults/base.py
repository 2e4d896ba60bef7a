"""What every fault is, and the registry heal uses to undo a journaled fault by its kind."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

from rig.cluster import Cluster, ClusterError, ContainerCluster, ExternalCluster, LocalCluster


class FaultError(Exception):
    """A fault cannot be applied (bad target, unsafe, unsupported here): the message says why."""


class UnsupportedFault(FaultError):
    """The cluster's provider cannot perform a fault (e.g. ``kill_node`` on an external cluster)."""


FAULTS: dict[str, type[Fault]] = {}

#: Every cluster provider of the rig (``rig/cluster``), in the order ``drill chaos list`` shows them.
PROVIDERS: tuple[str, ...] = (LocalCluster.provider, ExternalCluster.provider, ContainerCluster.provider)
#: Faults that signal the nodes' processes, run rabbitmqctl on them or cut this machine's network.
LOCAL_ONLY: tuple[str, ...] = (LocalCluster.provider,)


class Fault(ABC):
    """One fault against one target.

    Subclasses set ``kind``; ``instant`` faults (a kill, closing connections) have nothing to hold
    open, but still journal an undo (a kill's undo restarts the node). ``providers`` names the cluster
    providers that can perform it: the local rig only unless a subclass says more, so a new fault is
    refused on a cluster it was never written for rather than failing half-applied.
    """

    kind: ClassVar[str]
    instant: ClassVar[bool] = False
    providers: ClassVar[tuple[str, ...]] = LOCAL_ONLY

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


def unsupported(kinds: Iterable[str], provider: str) -> list[str]:
    """One sentence per fault kind that ``provider`` cannot perform (empty: all can run).

    Unknown kinds are left to the callers' own validation.
    """
    out = []
    for kind in dict.fromkeys(kinds):  # each kind once, in the order given
        cls = FAULTS.get(kind)
        if cls is not None and provider not in cls.providers:
            out.append(
                f"fault {kind} cannot run on the {provider} provider: it needs {' or '.join(cls.providers)}"
            )
    return out


def require_supported(kinds: Iterable[str], provider: str) -> None:
    """Raise :class:`UnsupportedFault` naming every fault ``provider`` cannot perform."""
    problems = unsupported(kinds, provider)
    if problems:
        raise UnsupportedFault("; ".join(problems))


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
