"""Phase "drain": :func:`rig.drain.drain` — the vhost's queues and the services' outboxes empty, every
notification sent (with a deadline), written to ``drain.json``; then the simulator's notification
receiver is released (SIGINT, exit 0)."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import rundir
from harness.drill.observers import DRAIN_IGNORE
from harness.drill.phases.stop_traffic import STOP_GRACE_S
from harness.drill.run import DrillRun
from rig.drain import drain as rig_drain
from rundir.records import write_json


def drain(run: DrillRun, *, drainer: Callable[..., Any] = rig_drain) -> None:
    """Wait for the platform to drain (the receiver, while up, takes every notification still owed)."""
    assert run.cluster is not None
    cluster = run.cluster
    outboxes = sorted(run.run_dir.glob("*.db"))
    receiver_up = run.simulator is not None and run.simulator.poll() is None
    result = drainer(
        [cluster.management_url(n) for n in cluster.node_indices],
        cluster.admin,
        outboxes,
        run.run_dir,
        amqp_urls=cluster.amqp_urls,
        deadline_s=run.m.drain_deadline,
        only=f"^{re.escape(run.vhost)}/",
        ignore=DRAIN_IGNORE,
        receiver_up=receiver_up,
    )
    run.drain_doc = result.to_json()
    write_json(run.run_dir / rundir.DRAIN, run.drain_doc)
    run.say(
        f"drained in {result.seconds:.1f} s ({len(outboxes)} outbox file(s))"
        if result.drained
        else f"NOT drained after {result.seconds:.1f} s: {result.leftover}"
    )


def release_receiver(run: DrillRun) -> None:
    """Stop the simulator's notification receiver once the platform has drained (the run itself ended
    before): SIGINT, and it exits 0 — a planned stop, not the drill cutting the traffic short."""
    p = run.simulator
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        run.notes.append("the simulator's receiver did not stop on SIGINT: killed")
        run.simulator_stopped = True
        p.kill()
        p.wait(timeout=10)
