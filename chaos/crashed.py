"""Heal what a crashed drill run left applied: the open faults of its own journal, its rig, its replicas.

The run is found by :mod:`rig.crashed` (runner gone, no verdict). Its journal's open faults are
undone against the cluster the run used (when that still runs); a fault whose target is gone — its
cluster stopped, its supervisor gone — has nothing left to undo and is closed in the journal as such
(``"detail": {"moot": ...}``), so a later heal does not report it again. Replicas left SIGSTOPped are
resumed whatever the journal says. The run's link proxies (:func:`stop_links`) and the iptables chain a
partition left (:func:`remove_partition_chain`) are stopped and removed here too: the rig knows neither.
"""

from __future__ import annotations

import signal
from pathlib import Path

import rundir
from chaos.faults import FAULTS, FaultError
from chaos.faults.partition import chain_exists, heal_chain
from chaos.injector import FaultInjector, HealReport
from chaos.journal import Journal, OpenFault
from chaos.links import STATE as LINKS_STATE
from chaos.links import LinkProxies
from rig import procs
from rig.cluster import ClusterSpec, LocalCluster
from rig.cluster import state as cluster_state
from rig.crashed import CrashedRun, Outcome, stop_pids, verify_claimed
from rig.supervisor import SystemHandle


def run_cluster(run: CrashedRun) -> LocalCluster | None:
    """The local rig the run used, when its state file is there and one of its processes still runs."""
    if run.cluster_dir is None:
        return None
    st = cluster_state.load(run.cluster_dir)
    if st is None or st.provider != "local" or not any(procs.alive(p) for p in st.owned_pids()):
        return None
    return LocalCluster.attach(ClusterSpec(run_dir=run.cluster_dir))


def moot(fault: OpenFault, cluster: LocalCluster | None, run: CrashedRun) -> str | None:
    """Why an open fault has nothing left to undo (what it broke is gone), or None."""
    cls = FAULTS.get(fault.kind)
    if cls is None:
        return None
    module = cls.__module__.rsplit(".", 1)[-1]
    if module in ("broker", "link") and cluster is None:
        return "the run's cluster is not running"
    if module == "link" and cluster is not None and not (cluster.spec.run_dir / LINKS_STATE).exists():
        return "the run's link proxies are gone"
    if module == "service":
        system_dir = Path(str(fault.undo.get("system_dir") or run.run_dir))
        st = SystemHandle(system_dir).state()
        if st is None:
            return "the run's system is down"
        if not procs.alive(st.get("supervisor_pid")):
            return "the run's supervisor is gone (`./drill system down` stops what is left)"
    return None


def heal_crashed_run(run: CrashedRun) -> HealReport:
    """Undo the run's open faults (or close those with nothing left to undo), then sweep its rig and
    its system: the same heal a runner does at its end."""
    cluster = run_cluster(run)
    journal = Journal(run.journal)
    report = HealReport()
    for f in journal.open_faults():
        why = moot(f, cluster, run)
        if why is not None:
            journal.write("undo", f.fault_id, f.kind, detail={"moot": why}, reason="heal of a crashed run")
            report.did(f"closed {f.kind} {f.target} ({f.fault_id}): nothing left to undo, {why}")
    system_dirs = [run.run_dir] if (run.run_dir / rundir.SYSTEM).exists() else []
    # The run's own injector: the faults were the run's, on a rig the run was allowed to break.
    report.merge(FaultInjector(cluster, journal, allow_external=True).heal(system_dirs=system_dirs))
    if cluster is None and run.cluster_dir is not None:
        report.did(f"the run's cluster in {run.cluster_dir} is not running: nothing to mend there")
    return report


def stop_links(run: CrashedRun) -> Outcome:
    """The link proxy server the run started (pids.json ``links``), its proxies and its state file."""
    out = Outcome()
    pids = verify_claimed(run, run.pid_list("links"), "links", out)
    links = LinkProxies.attach(run.cluster_dir) if run.cluster_dir is not None else None
    if links is not None and links.state.pid is not None and links.state.pid in pids:
        links.stop()  # deletes the proxies, stops the server by its recorded PID, removes links.json
        out.done.append(f"stopped the run's link proxies (PID {links.state.pid})")
        pids.remove(links.state.pid)
    if pids:
        left = stop_pids(pids, signal.SIGTERM, 10.0)
        if left:
            out.failed.append(f"the run's link proxy server survived SIGKILL: PID {left}")
        else:
            out.done.append(f"stopped the run's link proxy server (PID {', '.join(map(str, pids))})")
    return out


def remove_partition_chain(address_block: int, node_host: str | None) -> list[str]:
    """Delete the rig's iptables chain ``DRILL<block>`` and its hook, when a partition left them."""
    chain = f"DRILL{address_block}"
    subnet = f"{node_host.rsplit('.', 1)[0]}.0/24" if node_host else f"127.0.{address_block}.0/24"
    try:
        if not chain_exists(chain):
            return []
        heal_chain(chain, subnet)
    except FaultError as exc:  # iptables missing: then no partition can have been cut either
        return [f"iptables chain {chain}: {exc}"]
    return [f"removed the iptables chain {chain} a partition left"]
