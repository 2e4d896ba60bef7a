"""``drill bench platform``: the highest order rate the whole platform sustains at zero loss on the
3-node cluster, beside the brokers' own ceiling measured in the same run.

One cluster, one provisioned platform, one system; then steps of rising offered load, each a simulator
run of its own (own run dir, same retailers) followed by the audit of that step. A step is *sustained*
when the audit is valid (nothing lost, nothing unexpected, no duplicated effect), every order got an
answer (no unknown outcome), the couriers finished every delivery within the linger, and the share of
accepted orders that got a courier held (at least ``BOOKED_SHARE_KEPT`` of the first step's: an order
that ends "no courier" because quotes came after the deadline is terminal, not lost, but the platform
did not keep up). The ceiling is
raw aio-pika on the same cluster (``system.messaging.bench.bench_raw``: confirm window, manual acks, a
quorum queue), measured before the steps. The last line is the ratio of the messages the platform moved
per second at its best sustained step (every confirmed publish: the services' outbox rows sent and the
couriers' messages) to that ceiling.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rundir
from reports.slo import BOOKED_SHARE_KEPT

if TYPE_CHECKING:
    from rig.supervisor import SystemHandle

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Step:
    """One offered rate and what the audit said about it."""

    rate: float
    orders: int
    accepted: int
    rejected: int
    unknown: int
    lost: int
    valid: bool
    finished: bool
    published_per_s: float
    booked: int = 0
    #: the first step's booked share, the baseline this step is held to
    baseline_share: float | None = None

    @property
    def booked_share(self) -> float:
        return self.booked / self.accepted if self.accepted else 0.0

    @property
    def kept_booking(self) -> bool:
        base = self.baseline_share if self.baseline_share is not None else self.booked_share
        return self.booked_share >= BOOKED_SHARE_KEPT * base

    @property
    def sustained(self) -> bool:
        return (
            self.valid
            and self.unknown == 0
            and self.rejected == 0
            and self.finished
            and self.accepted > 0
            and self.kept_booking
        )


_COURIER_PUBLISHES = (
    "quote_sent",
    "booking_answer_sent",
    "cancel_answer_sent",
    "status_sent",
    "location_sent",
)


def _messages_moved(run_dir: Path, step_dir: Path, t0: float, t1: float) -> int:
    """Messages confirmed by the brokers during [t0, t1]: every service's outbox rows marked sent (the
    intake relay's included), plus what the couriers published (the simulator's ledger)."""
    import sqlite3

    total = 0
    for db in run_dir.glob("*.db"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
                row = conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND sent_at BETWEEN ? AND ?", (t0, t1)
                ).fetchone()
                total += int(row[0])
        except sqlite3.Error:
            continue  # a DB without an outbox
    ledger = step_dir / rundir.SIMULATOR_LEDGER
    if ledger.exists():
        with open(ledger, "rb") as fh:
            total += sum(
                1 for line in fh if any(f'"kind":"{k}"'.encode() in line for k in _COURIER_PUBLISHES)
            )
    return total


def run_bench(
    cluster: Any,
    run_dir: Path,
    rates: list[float],
    step_s: float,
    say: Any,
    vhost: str = "drill",
) -> tuple[float, list[Step], float]:
    """Returns (raw ceiling msgs/s, steps, best sustained orders/s)."""
    from reports.audit import audit_run, load_config
    from reports.checks import ONE_BOOKING
    from reports.slo import load_slo
    from rig.ports import free_port_base
    from rig.provision import provision_platform
    from rig.supervisor import SystemHandle, load_spec
    from simulator.config import load_scenario
    from simulator.world import build_retailers, write_retailers_file
    from system.messaging.bench import bench_raw
    from system.messaging.settings import MessagingSettings
    from system.platform.settings import amqp_urls_from_secrets

    run_dir.mkdir(parents=True, exist_ok=True)
    say("brokers' ceiling: raw aio-pika, 20 000 persistent messages through a quorum queue")
    ceiling = asyncio.run(bench_raw(MessagingSettings(amqp_urls=cluster.amqp_urls), 20_000, 512))
    say(f"  {ceiling:,.0f} msgs/s")
    provisioned = provision_platform(cluster, run_dir, vhost=vhost)
    secrets = json.loads(provisioned.secrets_path.read_text())
    retailers = run_dir / rundir.RETAILERS
    base = free_port_base(4)
    spec = run_dir / rundir.SERVICES
    spec.write_text(
        re.sub(
            r"\{port:8080\+replica\}",
            f"{{port:{base}+replica}}",
            (ROOT / "system" / "services.toml").read_text(),
        )
    )
    replicas = {s.name: s.replicas for s in load_spec(spec)}
    env = {
        "DRILL_PLATFORM_SECRETS": str(provisioned.secrets_path),
        "DRILL_RETAILERS": str(retailers),
        "DRILL_NOTIFICATIONS_NOTIFY_URL": f"http://127.0.0.1:{base + 3}",
        "DRILL_MSG_RECONNECT_MAX_S": "1.0",
    }
    handle = SystemHandle.start(run_dir, spec, timeout=60, env=env)
    steps: list[Step] = []
    try:
        _wait_ready(handle)
        intake = ",".join(f"http://127.0.0.1:{base + i}" for i in range(replicas["intake"]))
        couriers = ",".join(amqp_urls_from_secrets(secrets, "couriers"))
        for i, rate in enumerate(rates):
            step_dir = run_dir / f"step-{i}-{rate:g}"
            seed = 100 + i
            # New orders every step (a new seed), so the platform's retailers must be that seed's: the
            # intake and quoting replicas reload the file when it changes.
            write_retailers_file(retailers, seed, build_retailers(seed, load_scenario("steady-quick")))
            time.sleep(2.5)
            say(f"step {i + 1}/{len(rates)}: {rate:g} orders/s for {step_s:g} s")
            t0, wall0 = time.monotonic(), time.time()
            argv = [sys.executable, "-m", "simulator", "simulate", "--scenario", "steady-quick", "--seed", str(seed),
                    "--duration", f"{step_s:g}s", "--rate", f"{rate:g}", "--target", intake,
                    "--retailers", str(retailers), "--listen", f"127.0.0.1:{base + 3}", "--amqp", couriers,
                    "--run-dir", str(step_dir), "--linger", "90s"]  # fmt: skip
            step_dir.mkdir(parents=True, exist_ok=True)
            with open(step_dir / rundir.SIMULATOR_OUT, "wb") as out:
                subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, check=False
                )
            moved = _messages_moved(run_dir, step_dir, wall0, time.time()) / max(time.monotonic() - t0, 1e-9)
            report = audit_run(step_dir, load_config(step_dir), load_slo(step_dir))
            orders = report.flows.get("orders")
            booking = next((c for c in report.checks if c.name == ONE_BOOKING), None)
            booked = int(booking.counts.get("orders_booked", 0)) if booking is not None else 0
            summary = json.loads((step_dir / rundir.SIMULATOR_SUMMARY).read_text())
            finished = '"idle": false' not in (step_dir / rundir.SIMULATOR_LEDGER).read_text()[-4000:]
            step = Step(
                rate=rate,
                orders=int(summary.get("orders", 0)),
                accepted=int(summary["counts"].get("accepted", 0)),
                rejected=int(summary["counts"].get("rejected", 0)),
                unknown=int(summary["counts"].get("unknown", 0)),
                lost=len(orders.lost) if orders is not None else 0,
                valid=report.valid,
                finished=finished,
                published_per_s=moved,
                booked=booked,
                baseline_share=steps[0].booked_share if steps else None,
            )
            steps.append(step)
            say(
                f"  accepted {step.accepted}/{step.orders}, rejected {step.rejected}, unknown {step.unknown}, "
                f"lost {step.lost}, got a courier {step.booked_share:.0%}"
                f"{'' if step.kept_booking else ' (fell behind the first step)'}, "
                f"{'finished' if finished else 'NOT finished within the linger'}; platform moved {moved:,.0f} msgs/s"
                f" -> {'sustained' if step.sustained else 'NOT sustained'}"
            )
            if not step.sustained:
                break
    finally:
        handle.stop()
    best = max((s.rate for s in steps if s.sustained), default=0.0)
    return ceiling, steps, best


def _wait_ready(handle: SystemHandle, timeout: float = 120.0) -> None:
    """Until every replica runs and has written its ready marker (intake's HTTP replicas included:
    they write theirs once they listen), by the supervisor's own rule (:meth:`SystemHandle.is_ready`)."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = [f"{r['service']}#{r['index']}" for r in handle.replicas() if not handle.is_ready(r)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout:.0f} s: {', '.join(waiting)}")
        time.sleep(0.2)
