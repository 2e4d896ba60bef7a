"""Phase "cluster": start a local rig (the drill's own, stopped at the end), reuse a running one or the
cluster given by the caller, or connect to an external one; and the fault injector that heals it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import rundir
from harness.drill.run import DEFAULT_CLUSTER_DIR, DrillError, DrillRun
from harness.drill.scenario import LoadedScenario
from rig import procs
from rig.cluster import Cluster, ClusterSpec, ExternalCluster, LocalCluster
from rig.cluster import state as cluster_state

if TYPE_CHECKING:
    from chaos.injector import FaultInjector


def describe_cluster(
    sc: LoadedScenario, cluster_dir: Path | None, given: Cluster | None = None
) -> tuple[str, bool]:
    """(what the cluster phase will do, whether it starts a cluster) — without touching anything."""
    m = sc.model.cluster
    if given is not None:
        return f"use the {given.provider} cluster given ({len(given.node_indices)} nodes)", False
    if m.provider == "external":
        return f"external cluster: {len(m.amqp_urls)} node(s) (not started nor stopped by the drill)", False
    where = cluster_dir or DEFAULT_CLUSTER_DIR
    st = cluster_state.load(where) if where.is_dir() else None
    if st is not None and any(procs.alive(p) for p in st.owned_pids()):
        return (
            f"reuse the local rig running from {where} ({len(st.nodes)} nodes, broker {st.broker}; left running)",
            False,
        )
    return f"start {m.nodes} local RabbitMQ node(s) in {where} (broker {m.broker}; stopped at the end)", True


def make_injector(cluster: Cluster | None, journal: Path, allow_external: bool) -> FaultInjector:
    """The run's fault injector, journaling into ``journal``."""
    from chaos.injector import FaultInjector
    from chaos.journal import Journal

    return FaultInjector(cluster, Journal(journal), allow_external)


def start_cluster(
    run: DrillRun,
    starts: bool,
    *,
    local: type[LocalCluster] = LocalCluster,
    external: type[ExternalCluster] = ExternalCluster,
    injector: Callable[[Cluster | None, Path, bool], FaultInjector] = make_injector,
) -> None:
    """The cluster of the run (``starts``: as :func:`describe_cluster` said) into ``run.cluster``; a
    cluster this run started is recorded (``pids.json``) and stopped at the end. The fault injector is
    made when the cluster runs here (the heal sweeps it) or the drill has an experiment."""
    m = run.m.cluster
    if run.given_cluster is not None:
        run.cluster = run.given_cluster
    elif m.provider == "external":
        ext = external(m.amqp_urls, m.management_urls, run.allow_external)
        ext.start()
        run.cluster = ext
    else:
        spec = ClusterSpec(
            run_dir=(run.cluster_dir or DEFAULT_CLUSTER_DIR).resolve(), nodes=m.nodes, broker=m.broker
        )
        # Where the rig lives, so `drill cluster down` after a SIGKILLed runner finds it.
        run.pids["cluster_dir"] = str(spec.run_dir)
        run.save_pids()
        if not starts:
            running = local.attach(spec)
            if running.state.broker != m.broker:
                raise DrillError(
                    f"the rig running from {spec.run_dir} runs broker {running.state.broker!r}, the drill asks "
                    f"for {m.broker!r}: stop it (`./drill cluster down`) or give another --cluster-dir"
                )
            run.cluster = running
        else:
            lc = local(spec)
            lc.say = run.say  # building a broker's Debian root says what it does on the drill's console
            t0 = time.monotonic()
            try:
                lc.start()  # a failed or interrupted start stops what it started itself
            finally:
                if lc.is_running():
                    run.started_cluster = True
                    run.cluster = lc
                    run.pids["cluster"] = lc.state.owned_pids()
                    run.save_pids()
            run.say(f"{len(lc.node_indices)} nodes up and clustered in {time.monotonic() - t0:.1f} s")
    if run.cluster is not None:
        run.broker_version = _reported_version(run.cluster)
        run.say(f"broker: RabbitMQ {run.broker_version or 'version unknown (no node answered)'}")
    if (run.cluster is not None and run.cluster.runs_here) or run.sc.experiment is not None:
        run.injector = injector(run.cluster, run.run_dir / rundir.JOURNAL, run.allow_external)


def _reported_version(cluster: Cluster) -> str | None:
    """The version the nodes report, for the run's record and its report: informational, so a cluster
    that cannot say (an external one without management access) never stops the drill."""
    try:
        return cluster.broker_version()
    except Exception:
        return None
