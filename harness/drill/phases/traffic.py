"""Phase "traffic": the simulator as a subprocess (its ledger in ``<run>/simulator/``), Locust in a thread
(:func:`loadtests.runner.run_locust`, ``<run>/locust/``) when asked, the chaos experiment in a thread
(:class:`~harness.drill.chaos_thread.ChaosThread`, journal ``<run>/chaos/journal.jsonl``) from its offset;
then the observers (:mod:`harness.drill.observers`: samples and the live view) until the simulator has
finished its run (duration + linger). It keeps only its notification receiver (the customers' phones) up
from then on, until the drain has released it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import rundir
from harness.drill.chaos_thread import ChaosThread
from harness.drill.observers import observe
from harness.drill.run import DrillRun
from harness.drill.scenario import ROOT
from rig import procs

log = logging.getLogger(__name__)


def simulator_argv(run: DrillRun, couriers: str) -> list[str]:
    """The simulator's command line: its scenario, seed and duration, every intake replica, the
    retailers, its notification receiver, the couriers' broker URLs (``couriers``), the run directory."""
    t = run.m.traffic
    argv = [
        sys.executable, "-m", "simulator", "simulate",
        "--scenario", str(run.sc.traffic_path), "--seed", str(t.seed),
        "--duration", f"{run.m.duration:g}s", "--target", ",".join(run.intake_urls),
        "--retailers", str(run.retailers), "--listen", f"127.0.0.1:{run.notify_port}",
        "--amqp", couriers, "--run-dir", str(run.run_dir), "--hold-receiver",
    ]  # fmt: skip
    if t.rate is not None:
        argv += ["--rate", f"{t.rate:g}"]
    if t.linger > 0:
        argv += ["--linger", f"{t.linger:g}s"]
    return argv


def start_simulator(
    run: DrillRun, *, popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen
) -> None:
    """Spawn the simulator (its PID in pids.json before anything else can interrupt)."""
    import json

    from system.platform.settings import amqp_urls_from_secrets

    assert run.platform_secrets is not None
    # The couriers are the outside world: straight to the nodes (they fail over between them),
    # never through the link proxies.
    doc = json.loads(run.platform_secrets.read_text())
    argv = simulator_argv(run, ",".join(amqp_urls_from_secrets(doc, "couriers")))
    out = open(run.run_dir / rundir.SIMULATOR_OUT, "wb")  # noqa: SIM115 - the child keeps its own copy
    try:
        with procs.interrupts_deferred():
            # Its own session: a Ctrl-C in the terminal reaches the drill only; the drill stops
            # the simulator itself, so its ledger is flushed and the order of shutdown is ours.
            run.simulator = popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            run.pids["simulator"] = run.simulator.pid
            run.save_pids()
    finally:
        out.close()


def _run_locust(*args: Any, **kwargs: Any) -> Any:
    from loadtests.runner import run_locust

    return run_locust(*args, **kwargs)


def start_locust(run: DrillRun, *, locust: Callable[..., Any] = _run_locust) -> None:
    """Locust against the first intake replica, in a thread (its result or error kept on ``run``)."""
    lc = run.m.traffic.locust
    assert lc is not None and run.retailers is not None
    retailers = run.retailers

    def body() -> None:
        try:
            run.locust_result = locust(
                ROOT / "loadtests" / "intake.py",
                run.intake_url,
                run.run_dir,
                lc.users,
                lc.spawn_rate,
                run.m.duration,
                shape=lc.shape,
                workers=lc.workers,
                env={"DRILL_RETAILERS": str(retailers), "DRILL_SEED": str(run.m.traffic.seed)},
                deadline_s=run.m.duration + 60.0,
            )
        except Exception as exc:
            log.exception("locust failed")
            run.locust_error = f"{type(exc).__name__}: {exc}"

    run.locust = threading.Thread(target=body, name="drill-locust", daemon=True)
    run.locust.start()


def start_chaos(run: DrillRun) -> None:
    """The experiment in its thread, from the scenario's chaos offset."""
    assert run.injector is not None and run.sc.experiment is not None
    run.chaos = ChaosThread(
        run.sc.experiment, run.injector, run.m.chaos.start, run.run_dir / rundir.CHAOS_RESULT
    )
    (run.run_dir / rundir.CHAOS_DIR).mkdir(exist_ok=True)
    run.chaos.start()


def describe(run: DrillRun) -> str:
    """What the phase does, for its heading."""
    t = run.m.traffic
    return f"simulator {run.sc.traffic.name} for {run.m.duration:g} s + linger ≤ {t.linger:g} s" + (
        ", chaos in parallel" if run.sc.experiment is not None else ""
    )


def traffic(
    run: DrillRun,
    *,
    popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    locust: Callable[..., Any] = _run_locust,
    watch: Callable[[DrillRun, float], None] = observe,
) -> None:
    """Start the traffic and the chaos, then watch until the simulator has played its run."""
    assert run.secrets is not None and run.retailers is not None and run.cluster is not None
    start_simulator(run, popen=popen)
    t_start = time.monotonic()
    if run.m.traffic.locust is not None:
        start_locust(run, locust=locust)
    if run.sc.experiment is not None:
        start_chaos(run)
    watch(run, t_start)
