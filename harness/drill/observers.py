"""What watches a drill while its traffic runs: the samplers and the live view.

- :class:`rig.resources.ResourceSampler` — CPU and memory of the machine and of each role, once a second
  (``resources.jsonl``), for the report's saturation finding;
- :class:`rig.queues.QueueDepthSampler` — every queue's depth and every outbox's pending rows every 2 s
  (``metrics/queues.jsonl``), for the report's per-fault drain time;
- :class:`harness.drill.live.BrokerPoller` and the live view — a rich ``Live`` panel on a terminal, one
  plain line every few seconds otherwise.

:func:`observe` runs them until the simulator has played its run (or ran past its time: then it is
stopped), and stops them whatever happens.
"""

from __future__ import annotations

import time

from rich.panel import Panel
from rich.text import Text

import rundir
from harness.drill.live import (
    BrokerFigures,
    BrokerPoller,
    LedgerTail,
    Snapshot,
    faults_applied,
    format_lines,
    open_faults,
    replica_counts,
    status_line,
)
from harness.drill.phases.stop_traffic import stop_simulator
from harness.drill.run import DrillRun
from rig.drain import DEFAULT_IGNORE
from rig.queues import QueueDepthSampler
from rig.resources import ResourceSampler, drill_roles
from rig.supervisor import SystemHandle

#: Past duration + linger, the simulator gets this long before the drill stops it.
SIMULATOR_GRACE_S = 180.0
LIVE_EVERY_S = 0.5
LOG_EVERY_S = 5.0
#: Not waited for by the drain nor sampled: parking lots (rig.drain's default), and the
#: couriers' request queues — the couriers are the simulator, gone once the traffic is over, so what the
#: platform asks them afterwards stays there by definition.
DRAIN_IGNORE = DEFAULT_IGNORE + r"|^courier\."


def snapshot(run: DrillRun, t_start: float, tail: LedgerTail, poller: BrokerPoller | None) -> Snapshot:
    """What the live view shows now (and the PIDs it learns on the way go into pids.json)."""
    st = run.record_system_pids(SystemHandle(run.run_dir).state())
    running, wanted, restarts = replica_counts(st)
    journal = run.run_dir / rundir.JOURNAL
    locust = ""
    if run.locust is not None:
        pids = run.locust_pids()
        if run.locust.is_alive():
            locust = f"running ({run.m.traffic.locust.shape if run.m.traffic.locust else ''}, PIDs {pids})"
        else:
            locust = "done" if run.locust_error is None else f"failed: {run.locust_error}"
        if pids and run.pids.get("locust") != pids:
            run.pids["locust"] = pids
            run.save_pids()
    return Snapshot(
        phase=f"drill {run.m.name}",
        elapsed_s=time.monotonic() - t_start,
        duration_s=run.m.duration,
        progress=tail.poll(),
        broker=poller.figures if poller is not None else BrokerFigures(),
        faults=tuple(open_faults(journal)),
        faults_applied=faults_applied(journal),
        chaos=run.chaos.state if run.chaos is not None else "",
        replicas_running=running,
        replicas_wanted=wanted,
        restarts=restarts,
        locust=locust,
    )


def traffic_running(run: DrillRun) -> bool:
    """The simulator still plays its run: alive, and not yet only holding its notification receiver."""
    assert run.simulator is not None
    if run.simulator.poll() is not None:
        return False
    return not (run.run_dir / rundir.RECEIVER_HOLDING).exists()


def overdue(run: DrillRun, t_start: float, limit: float) -> bool:
    """The simulator ran past ``limit`` seconds: it is stopped (and the run notes it)."""
    if time.monotonic() - t_start <= limit:
        return False
    run.notes.append(f"the simulator ran past {limit:.0f} s: stopped by the drill")
    run.say(f"[yellow]the simulator ran past {limit:.0f} s: stopping it[/]", markup=True)
    stop_simulator(run)
    return True


def _panel(s: Snapshot) -> Panel:
    return Panel(Text("\n".join(format_lines(s))), title="live", expand=False)


def observe(run: DrillRun, t_start: float) -> None:
    """Sample and show the run until the simulator has played it; the samplers stop whatever happens."""
    from rich.live import Live

    assert run.simulator is not None and run.cluster is not None
    cluster = run.cluster
    urls = [cluster.management_url(n) for n in cluster.node_indices]
    tail = LedgerTail(run.run_dir / rundir.SIMULATOR_LEDGER)
    poller = BrokerPoller(urls, cluster.admin, run.vhost)
    poller.start()
    # CPU and memory of the machine and of each role, 1/s, for the report's saturation finding.
    sampler = ResourceSampler(
        run.run_dir / rundir.RESOURCES, drill_roles(cluster, run.run_dir, run.own_roles)
    )
    sampler.start()
    # Queue depths before, during and after each fault: the report's per-fault drain time.
    depths = QueueDepthSampler(
        run.run_dir, urls, cluster.admin, cluster.amqp_urls, run.vhost, ignore=DRAIN_IGNORE
    )
    depths.start()
    limit = run.m.duration + run.m.traffic.linger + SIMULATOR_GRACE_S
    try:
        if run.console.is_terminal:
            with Live(console=run.console, refresh_per_second=2, transient=False) as live:
                while traffic_running(run) and not overdue(run, t_start, limit):
                    live.update(_panel(snapshot(run, t_start, tail, poller)))
                    time.sleep(LIVE_EVERY_S)
                live.update(_panel(snapshot(run, t_start, tail, poller)))
        else:
            last = 0.0
            while traffic_running(run) and not overdue(run, t_start, limit):
                if time.monotonic() - last >= LOG_EVERY_S:
                    last = time.monotonic()
                    run.say(status_line(snapshot(run, t_start, tail, poller)))
                time.sleep(LIVE_EVERY_S)
            for line in format_lines(snapshot(run, t_start, tail, poller)):
                run.say(line)
    finally:
        poller.stop()
        sampler.stop()
        depths.stop()
    rc = run.simulator.poll()
    how = f"exit {rc}" if rc is not None else "its receiver stays up until the platform drained"
    run.say(f"simulator finished ({how}) after {time.monotonic() - t_start:.1f} s")
