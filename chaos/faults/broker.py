"""Faults of broker nodes and broker resources, against the rig's own processes and CLI."""

from __future__ import annotations

import time
from typing import Any

from chaos.faults.base import PROVIDERS, Fault, FaultError, local, resolve_node
from rig import procs
from rig.cluster import Cluster, ClusterError, ManagementClient


class KillNode(Fault):
    """SIGKILL of a node's Erlang VM; it stays down for the fault's duration. Undo: start it, wait until it rejoined."""

    kind = "kill_node"

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        return {"node": resolve_node(cluster, self.target or "1")}

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        lc = local(cluster, "kill_node")
        pid = lc.beam_pid(undo["node"])
        lc.kill(undo["node"])
        return {"node": undo["node"], "pid": pid}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        lc = local(cluster, "kill_node undo")
        if lc.node_state(undo["node"]) == "down":
            t0 = time.monotonic()
            lc.restart(undo["node"])
            return {"restarted": undo["node"], "seconds": round(time.monotonic() - t0, 2)}
        return {"already_up": undo["node"]}


class StopNode(KillNode):
    """Graceful stop of a node (a maintenance shutdown). Undo: start it."""

    kind = "stop_node"

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        local(cluster, "stop_node").stop_node(undo["node"])
        return {"node": undo["node"]}


class RestartNode(KillNode):
    """Graceful restart of one node, done within apply; undo only makes sure it is up."""

    kind = "restart_node"
    instant = True

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        t0 = time.monotonic()
        local(cluster, "restart_node").restart(undo["node"])
        return {"node": undo["node"], "seconds": round(time.monotonic() - t0, 2)}


class PauseNode(Fault):
    """SIGSTOP of a node's VM: alive to the kernel, silent to peers and clients. Undo: SIGCONT."""

    kind = "pause_node"

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        node = resolve_node(cluster, self.target or "1")
        return {"node": node, "pid": local(cluster, "pause_node").beam_pid(node)}

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        local(cluster, "pause_node").pause(undo["node"])
        return {"node": undo["node"]}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        lc = local(cluster, "pause_node undo")
        # Only the very PID we froze: a node restarted since then is not ours to signal.
        if undo.get("pid") and lc.beam_pid(undo["node"]) == undo["pid"] and procs.stopped(undo["pid"]):
            lc.resume(undo["node"])
            return {"resumed": undo["node"]}
        return {"not_paused": undo["node"]}


class FullOutage(Fault):
    """Every node down at once (``mode=stop`` graceful, ``mode=kill`` SIGKILL). Undo: start them together."""

    kind = "full_outage"

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        lc = local(cluster, "full_outage")
        mode = self.params.get("mode", "stop")
        if mode not in ("stop", "kill"):
            raise FaultError(f"full_outage mode must be stop or kill, not {mode!r}")
        return {"nodes": lc.node_indices, "mode": mode}

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        lc = local(cluster, "full_outage")
        if undo["mode"] == "kill":
            for n in undo["nodes"]:
                if lc.node_state(n) != "down":
                    lc.kill(n)
        else:
            lc.stop_nodes([n for n in undo["nodes"] if lc.node_state(n) != "down"])
        # The outage must be total: a node still alive here (a stop that hung) is killed.
        lingering = [n for n in undo["nodes"] if lc.node_state(n) != "down"]
        for n in lingering:
            lc.kill(n)
        return {"nodes": undo["nodes"], "forced": lingering}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        lc = local(cluster, "full_outage undo")
        down = [n for n in undo["nodes"] if lc.node_state(n) == "down"]
        t0 = time.monotonic()
        if down == list(undo["nodes"]):
            try:
                # Together: a node that was not the last to stop waits for its peers' tables.
                lc.start_nodes(down)
            except ClusterError:
                lc.restart_all()
        else:
            lc.ensure_healthy()  # some came back by other means (e.g. heal after a crash): mend the rest
        return {"started": down, "seconds": round(time.monotonic() - t0, 2)}


class RollingRestart(Fault):
    """An upgrade: each node in turn waits for quorum+1, stops gracefully, starts, rejoins."""

    kind = "rolling_restart"
    instant = True

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        return {"nodes": local(cluster, "rolling_restart").node_indices}

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        lc = local(cluster, "rolling_restart")
        took: dict[str, float] = {}
        for n in undo["nodes"]:
            t0 = time.monotonic()
            try:
                # Never take down a node whose absence would cost a quorum queue its majority.
                lc.ctl(n, "await_online_quorum_plus_one", "-t", "120", tool="rabbitmq-upgrade", timeout=130)
            except ClusterError as exc:
                raise FaultError(f"rolling restart stopped before node {n}: {exc}") from exc
            lc.restart(n)
            took[str(n)] = round(time.monotonic() - t0, 2)
        return {"seconds_per_node": took}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        lc = local(cluster, "rolling_restart undo")
        down = [n for n in undo["nodes"] if lc.node_state(n) == "down"]
        if down:
            lc.start_nodes(down)
        return {"started": down}


class MemoryAlarm(Fault):
    """The memory alarm on every node (watermark 1 byte): publishers block cluster-wide. Undo: clear."""

    kind = "memory_alarm"

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        local(cluster, "memory_alarm").set_memory_alarm(True)
        return {}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        local(cluster, "memory_alarm undo").set_memory_alarm(False)
        return {}


class DiskAlarm(Fault):
    """The disk-free alarm on every node (limit far above the free space). Undo: the configured limit."""

    kind = "disk_alarm"

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        local(cluster, "disk_alarm").set_disk_alarm(True)
        return {}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        local(cluster, "disk_alarm undo").set_disk_alarm(False)
        return {}


class CloseConnections(Fault):
    """Force-close every client connection (optionally only those of one user), as an operator would."""

    kind = "close_connections"
    instant = True
    # Only the management API: works wherever it answers, a cluster we did not start included.
    providers = PROVIDERS

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        if cluster is None:
            raise FaultError("close_connections needs a cluster")
        user_filter = self.params.get("user")
        closed: list[str] = []
        for n in cluster.node_indices:
            try:
                mc = ManagementClient(cluster.management_url(n), *cluster.admin)
                conns = mc.get("connections")
            except Exception:
                continue  # a down node: ask the next
            with mc:
                for c in conns:
                    if user_filter and c.get("user") != user_filter:
                        continue
                    resp = mc._client.delete(
                        f"{mc.base_url}/api/connections/{c['name']}", headers={"X-Reason": "drill chaos"}
                    )
                    if resp.status_code in (204, 404):
                        closed.append(c["name"])
            break
        return {"closed": len(closed), "user": user_filter}


class MoveLeader(Fault):
    """Move a quorum queue's leader off its node: remove that node's member, then add it back."""

    kind = "move_leader"
    instant = True

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        ref = self.target.removeprefix("queue:")
        if not ref:
            raise FaultError("move_leader needs a target queue:[vhost/]name")
        vhost, _, queue = ref.rpartition("/")
        return {"vhost": vhost or "/", "queue": queue, "from": resolve_node(cluster, f"leader:{ref}")}

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        lc = local(cluster, "move_leader")
        old, q, vhost = undo["from"], undo["queue"], undo["vhost"]
        other = next(n for n in lc.node_indices if n != old and lc.node_state(n) == "up")
        node_name = lc.state.node(old).name
        lc.ctl(other, "delete_member", "--vhost", vhost, q, node_name, tool="rabbitmq-queues")
        lc.ctl(other, "add_member", "--vhost", vhost, q, node_name, tool="rabbitmq-queues")
        return {"from": old, "to": lc.queue_leader(q, vhost)}
