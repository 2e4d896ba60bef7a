"""Phase "stop": the system, the link proxies and the cluster if this run started them, by PID — in a
thread that starts with the audit (the audit reads files only, and the two together take half the time).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from harness.drill.run import DrillRun
from rig.supervisor import SupervisorError, SystemHandle

log = logging.getLogger(__name__)


def stop_system(run: DrillRun, *, handle: Any = None) -> bool:
    """Stop the supervisor and its replicas (True when there was a system to stop)."""
    if not run.system_started:
        return False
    handle = handle or SystemHandle(run.run_dir)
    # A supervisor spawned just before an interrupt writes its state within a moment.
    deadline = time.monotonic() + 5.0
    while handle.state() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    run.record_system_pids(handle.state())
    try:
        handle.stop()
    except SupervisorError as exc:
        run.notes.append(f"system: {exc}")
        return False
    return True


def stop_links(run: DrillRun) -> bool:
    """Stop the link proxies this run started."""
    if run.links is None:
        return False
    run.links.stop()
    return True


def stop_cluster(run: DrillRun) -> bool:
    """Stop the cluster this run started (a reused or external one is left alone)."""
    if not (run.started_cluster and run.cluster is not None and run.cluster.runs_here):
        return False
    run.cluster.stop()
    return True


def start_stopping(run: DrillRun, *, system: Callable[[DrillRun], bool] = stop_system) -> threading.Thread:
    """Stop the system, then the link proxies and the cluster side by side, in a thread; each stop that
    did something adds a line to ``run.stopped``, each that failed a note."""

    def one(what: str, fn: Callable[[], bool]) -> None:
        t0 = time.monotonic()
        try:
            if fn():
                run.stopped.append(f"{what} stopped in {time.monotonic() - t0:.1f} s")
                log.info("%s stopped in %.1f s", what, time.monotonic() - t0)
        except Exception as exc:
            log.error("stopping the %s failed:\n%s", what, traceback.format_exc())
            run.notes.append(f"stopping the {what} failed: {type(exc).__name__}: {exc}")

    def body() -> None:
        # The services first (they would only reconnect in a loop to brokers going away), then the
        # proxies and the brokers side by side (the proxy server may take its full grace to exit).
        one("system", lambda: system(run))
        links = threading.Thread(
            target=one, args=("link proxies", lambda: stop_links(run)), name="drill-stop-links"
        )
        links.start()
        one("cluster", lambda: stop_cluster(run))
        links.join()

    th = threading.Thread(target=body, name="drill-stop")
    th.start()
    return th


def finish_stopping(run: DrillRun, stopper: threading.Thread) -> None:
    """Wait for the stopping thread; say what it stopped and which PIDs of the run are still alive."""
    stopper.join()
    for line in run.stopped or ["nothing of this run was left to stop"]:
        run.say(line)
    left = run.alive_pids()
    if left:
        run.notes.append(f"PIDs of the run still alive: {left}")
        run.say(f"[red]PIDs of the run still alive:[/] {left}", markup=True)
