"""``drill bench platform``: the highest order rate the whole platform sustains at zero loss on the
3-node cluster, beside the brokers' own ceiling measured in the same run.

One cluster, one provisioned platform, one system; then steps of rising offered load, each a simulator
run of its own (own run dir, same retailers) followed by the audit of that step. A step is *sustained*
when the audit is valid (nothing lost, nothing unexpected, no duplicated effect), every order got an
answer (no unknown outcome), and the couriers finished every delivery within the linger. The ceiling is
raw aio-pika on the same cluster (``system.messaging.bench.bench_raw``: confirm window, manual acks, a
quorum queue), measured before the steps. The last line is the ratio of the messages the platform moved
per second at its best sustained step (the vhost's publish count, management API) to that ceiling.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Step:
    """One offered rate and what the audit said about it."""

    rate: float
    orders: int
    accepted: int
    unknown: int
    lost: int
    valid: bool
    finished: bool
    published_per_s: float

    @property
    def sustained(self) -> bool:
        return self.valid and self.unknown == 0 and self.finished and self.accepted > 0


def _vhost_publishes(cluster: Any, vhost: str) -> int:
    from harness.cluster._management import ManagementClient

    user, password = cluster.admin
    for node in cluster.node_indices:
        try:
            with ManagementClient(cluster.management_url(node), user, password, timeout=10) as mc:
                stats = mc.get(f"vhosts/{vhost}").get("message_stats") or {}
                return int(stats.get("publish", 0))
        except Exception:  # a node not answering: ask the next
            continue
    return 0


def run_bench(
    cluster: Any,
    run_dir: Path,
    rates: list[float],
    step_s: float,
    say: Any,
    vhost: str = "drill",
) -> tuple[float, list[Step], float]:
    """Returns (raw ceiling msgs/s, steps, best sustained orders/s)."""
    from harness.drill.runner import free_port_base
    from harness.provision import provision_platform
    from harness.supervisor import SystemHandle, load_spec
    from reports.audit import audit_run, load_config
    from reports.slo import load_slo
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
    retailers = run_dir / "secrets" / "retailers.json"
    write_retailers_file(retailers, 1, build_retailers(1, load_scenario("steady-quick")))
    base = free_port_base(4)
    spec = run_dir / "services.toml"
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
        _wait_ready(run_dir, replicas)
        intake = ",".join(f"http://127.0.0.1:{base + i}" for i in range(replicas["intake"]))
        couriers = ",".join(amqp_urls_from_secrets(secrets, "couriers"))
        for i, rate in enumerate(rates):
            step_dir = run_dir / f"step-{i}-{rate:g}"
            say(f"step {i + 1}/{len(rates)}: {rate:g} orders/s for {step_s:g} s")
            before, t0 = _vhost_publishes(cluster, vhost), time.monotonic()
            argv = [sys.executable, "-m", "simulator", "simulate", "--scenario", "steady-quick", "--seed", str(100 + i),
                    "--duration", f"{step_s:g}s", "--rate", f"{rate:g}", "--target", intake,
                    "--retailers", str(retailers), "--listen", f"127.0.0.1:{base + 3}", "--amqp", couriers,
                    "--run-dir", str(step_dir), "--linger", "90s"]  # fmt: skip
            step_dir.mkdir(parents=True, exist_ok=True)
            with open(step_dir / "simulator.out", "wb") as out:
                subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, check=False
                )
            moved = (_vhost_publishes(cluster, vhost) - before) / max(time.monotonic() - t0, 1e-9)
            report = audit_run(step_dir, load_config(step_dir), load_slo(step_dir))
            orders = report.flows.get("orders")
            summary = json.loads((step_dir / "simulator" / "summary.json").read_text())
            finished = '"idle": false' not in (step_dir / "simulator" / "ledger.jsonl").read_text()[-4000:]
            step = Step(
                rate=rate,
                orders=int(summary.get("orders", 0)),
                accepted=int(summary["counts"].get("accepted", 0)),
                unknown=int(summary["counts"].get("unknown", 0)),
                lost=len(orders.lost) if orders is not None else 0,
                valid=report.valid,
                finished=finished,
                published_per_s=moved,
            )
            steps.append(step)
            say(
                f"  accepted {step.accepted}/{step.orders}, unknown {step.unknown}, lost {step.lost}, "
                f"{'finished' if finished else 'NOT finished within the linger'}; platform moved {moved:,.0f} msgs/s"
                f" -> {'sustained' if step.sustained else 'NOT sustained'}"
            )
            if not step.sustained:
                break
    finally:
        handle.stop()
    best = max((s.rate for s in steps if s.sustained), default=0.0)
    return ceiling, steps, best


def _wait_ready(run_dir: Path, replicas: dict[str, int], timeout: float = 120.0) -> None:
    want = {f"{s}.{i}" for s, n in replicas.items() if not s.startswith("intake") for i in range(n)}
    deadline = time.monotonic() + timeout
    while True:
        ready = {p.name for p in (run_dir / "ready").glob("*")} if (run_dir / "ready").exists() else set()
        if want <= ready:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout:.0f} s: {sorted(want - ready)}")
        time.sleep(0.2)
