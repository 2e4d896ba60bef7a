"""Phase "stop traffic": wait for Locust, stop the chaos experiment (held faults are undone by their own
threads, then its rollbacks). Interrupted, the simulator is stopped too (SIGINT: it flushes its ledger)."""

from __future__ import annotations

import signal
import subprocess

from harness.drill.checks import first_line
from harness.drill.run import DrillRun
from rig import procs

#: How long a stopped simulator / Locust gets to write its ledger before SIGKILL.
STOP_GRACE_S = 20.0
#: Undoing held faults (a node restart, a whole cluster start) can take this long.
CHAOS_STOP_S = 300.0


def stop_simulator(run: DrillRun) -> None:
    """Cut the simulator short (SIGINT, then SIGKILL after :data:`STOP_GRACE_S`)."""
    p = run.simulator
    if p is None or p.poll() is not None:
        return
    run.simulator_stopped = True
    # SIGINT: asyncio.run cancels the run, which records run_aborted and flushes the ledger.
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)


def stop_locust(run: DrillRun, interrupted: bool) -> None:
    """Wait for Locust to end its run (not when interrupted), then stop what is left of it."""
    th = run.locust
    if th is None:
        return
    if not interrupted:
        th.join(timeout=run.m.duration + 90.0)
    if th.is_alive():
        pids = run.locust_pids()
        if pids:
            # The master first: it stops its users and tells the workers; run_locust then stops the rest.
            procs.send(pids[0], signal.SIGTERM)
        th.join(timeout=STOP_GRACE_S + 10)
        for pid in pids:
            if procs.alive(pid):
                procs.send(pid, signal.SIGKILL)
        th.join(timeout=10)


def stop_traffic_and_chaos(run: DrillRun, *, interrupted: bool) -> None:
    """Stop the traffic (interrupted: the simulator too) and the chaos; say how each fault ended."""
    if interrupted:
        stop_simulator(run)
    stop_locust(run, interrupted)
    if run.chaos is not None and run.chaos.is_alive():
        if not interrupted:
            run.say("the traffic is over: stopping the chaos experiment (held faults are undone)")
        run.chaos.halt()
        run.chaos.join(timeout=CHAOS_STOP_S)
        if run.chaos.is_alive():
            run.notes.append(f"the chaos thread did not finish within {CHAOS_STOP_S:.0f} s")
    if run.chaos is not None and run.chaos.result is not None:
        for f in run.chaos.result.faults:
            state = first_line(f.error or f.skipped or "applied and undone")
            run.say(f"fault {f.index}: {f.kind} {f.target} -> {state}")
