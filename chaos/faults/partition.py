"""Broker ↔ broker network partitions with iptables, the kinds RabbitMQ's own Jepsen suite runs.

Each node of the rig has its own loopback address (127.0.<block>.N) and binds its outgoing Erlang
distribution connections to it, so a DROP rule by source and destination address cuts exactly one
link. The rules live in a chain of our own, ``DRILL<block>``, hooked from INPUT for the rig's /24 only
(on loopback both directions pass INPUT). Clients and the CLI connect from 127.0.0.1: unaffected.
Heal = delete the hook, flush and delete the chain.

Kinds (``target``):
- ``isolate:N``   node N cut from every other node
- ``halves``      the nodes split in two (smaller half first; ``seed`` shuffles who goes where)
- ``ring``        majorities ring: every node sees a majority, no two see the same one (for 3 or 4
                  nodes this is a bridge: the first and last nodes cut, the middle one sees both)
- ``groups:1,2|3`` explicit components
"""

from __future__ import annotations

import ipaddress
import random
import shutil
import subprocess
from itertools import combinations
from typing import Any

from chaos.faults.base import Fault, FaultError, local
from rig.cluster import Cluster


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("iptables")
    if exe is None:
        raise FaultError("iptables is not installed; install it with `apt-get install -y iptables`")
    res = subprocess.run([exe, "-w", "5", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and res.returncode != 0:
        raise FaultError(f"iptables {' '.join(args)} failed: {res.stderr.strip()}")
    return res


def components(target: str, nodes: list[int], seed: int | None = None) -> list[set[int]]:
    """The connected components a partition target means (pure: unit-tested)."""
    if target.startswith("isolate:"):
        n = int(target.removeprefix("isolate:"))
        if n not in nodes:
            raise FaultError(f"no node {n} to isolate (nodes {nodes})")
        return [{n}, set(nodes) - {n}]
    if target == "halves":
        order = list(nodes)
        if seed is not None:
            random.Random(seed).shuffle(order)
        k = len(order) // 2
        return [set(order[:k]), set(order[k:])]
    if target.startswith("groups:"):
        groups = [{int(x) for x in g.split(",") if x} for g in target.removeprefix("groups:").split("|")]
        seen = [n for g in groups for n in g]
        if sorted(seen) != sorted(set(seen)) or not set(seen) <= set(nodes):
            raise FaultError(f"groups must be disjoint subsets of the nodes {nodes}: {target!r}")
        rest = set(nodes) - set(seen)
        return [*groups, rest] if rest else groups
    raise FaultError(f"unknown partition {target!r}: use isolate:N, halves, ring or groups:1,2|3")


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def cut_links(target: str, nodes: list[int], seed: int | None = None) -> set[tuple[int, int]]:
    """Unordered node pairs (a < b) whose link is cut."""
    if target == "ring":
        order = list(nodes)
        if seed is not None:
            random.Random(seed).shuffle(order)
        n = len(order)
        if n < 3:
            raise FaultError("a majorities ring needs at least 3 nodes")
        if n <= 4:
            return {_pair(order[0], order[-1])}
        reach = (n // 2 + 1) // 2  # neighbours on each side: self + 2*reach >= a majority
        keep = {_pair(order[i], order[(i + d) % n]) for i in range(n) for d in range(1, reach + 1)}
        return {_pair(a, b) for a, b in combinations(order, 2)} - keep
    comps = components(target, nodes, seed)
    where = {n: i for i, c in enumerate(comps) for n in c}
    return {(a, b) for a, b in combinations(sorted(nodes), 2) if where[a] != where[b]}


class Partition(Fault):
    """Cut links between broker nodes. Undo: remove the rig's chain (heals every link)."""

    kind = "partition"

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        lc = local(cluster, "partition")
        links = sorted(cut_links(self.target or "isolate:1", lc.node_indices, self.params.get("seed")))
        hosts = {n.index: n.host for n in lc.state.nodes}
        for h in hosts.values():
            if not ipaddress.ip_address(h).is_loopback:
                raise FaultError(f"refusing to cut {h}: only loopback addresses of the rig are ours")
        block = hosts[lc.node_indices[0]].rsplit(".", 1)[0]
        return {
            "chain": f"DRILL{lc.spec.address_block}",
            "subnet": f"{block}.0/24",
            "links": [[a, b] for a, b in links],
            "pairs": [[hosts[a], hosts[b]] for a, b in links],
        }

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        chain, subnet = undo["chain"], undo["subnet"]
        if iptables("-S", chain, check=False).returncode == 0:
            raise FaultError(f"a partition is already applied (chain {chain} exists); heal it first")
        iptables("-N", chain)
        for a, b in undo["pairs"]:
            iptables("-A", chain, "-s", a, "-d", b, "-j", "DROP")
            iptables("-A", chain, "-s", b, "-d", a, "-j", "DROP")
        iptables("-I", "INPUT", "-s", subnet, "-d", subnet, "-j", chain)
        return {"links_cut": undo["links"]}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        return heal_chain(undo["chain"], undo["subnet"])


def heal_chain(chain: str, subnet: str) -> dict[str, Any]:
    """Remove our hook and chain; harmless when they are already gone."""
    removed_hooks = 0
    while iptables("-D", "INPUT", "-s", subnet, "-d", subnet, "-j", chain, check=False).returncode == 0:
        removed_hooks += 1
    existed = iptables("-F", chain, check=False).returncode == 0
    if existed:
        iptables("-X", chain)
    return {"chain_removed": existed, "hooks_removed": removed_hooks}


def chain_exists(chain: str) -> bool:
    return iptables("-S", chain, check=False).returncode == 0
