"""The whole platform as real processes against the session's cluster, driven by the simulator.

Used by the end-to-end tests: the supervisor runs ``system/services.toml`` (every service, its replicas)
in a provisioned vhost; the simulator plays retailers (REST, Shopify, ePOS), the courier companies over
AMQP (as the ``couriers`` user) and the customers' phones (the notification receiver), then lingers
until the couriers are idle; the audit reads the simulator's ledger.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from reports.audit import AuditReport, audit_run, load_config, write_platform_config
from reports.slo import load_slo
from rig.ports import port_free
from rig.supervisor import SystemHandle, load_spec
from simulator.config import load_scenario
from simulator.world import build_retailers, write_retailers_file
from system.platform.settings import amqp_urls_from_secrets

from .conftest import PlatformVhost

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / "system" / "services.toml"


def free_port_base(count: int) -> int:
    for _ in range(200):
        base = random.randrange(20000, 40000)
        if all(port_free("127.0.0.1", base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} free consecutive ports")


@dataclass
class RunningPlatform:
    """The supervised platform of one test."""

    handle: SystemHandle
    run_dir: Path
    intake_url: str
    notify_port: int
    retailers: Path
    couriers_url: str
    replicas: dict[str, int]

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Every replica of every service consumes (its ready marker exists), or fail naming the missing."""
        deadline = time.monotonic() + timeout
        # Every replica writes the ready file the supervisor names, <run>/ready/<service>.<replica>: the
        # ServiceRuntime once it consumes, intake's HTTP replicas once they listen, the relay once it relays.
        want = {f"{s}.{i}" for s, n in self.replicas.items() for i in range(n)}
        while True:
            ready = (
                {p.name for p in (self.run_dir / "ready").glob("*")}
                if (self.run_dir / "ready").exists()
                else set()
            )
            missing = sorted(want - ready)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not ready after {timeout:.0f} s: {missing}; logs in {self.run_dir / 'logs'}"
                )
            time.sleep(0.2)

    def kill(self, service: str, index: int = 0) -> int:
        """SIGKILL one replica (the supervisor restarts it with backoff)."""
        return self.handle.signal(service, index, signal.SIGKILL)


@contextmanager
def running_platform(
    pv: PlatformVhost,
    monkeypatch: pytest.MonkeyPatch,
    *,
    seed: int,
    scenario: str,
    env: dict[str, str] | None = None,
) -> Iterator[RunningPlatform]:
    run = pv.run_dir
    retailers = run / "secrets" / "retailers.json"
    write_retailers_file(retailers, seed, build_retailers(seed, load_scenario(scenario)))
    base = free_port_base(4)
    notify_port = base + 3
    spec = run / "services.toml"
    spec.write_text(re.sub(r"\{port:8080\+replica\}", f"{{port:{base}+replica}}", SPEC.read_text()))
    replicas = {s.name: s.replicas for s in load_spec(spec)}
    for key, value in {
        "DRILL_PLATFORM_SECRETS": str(pv.secrets),
        "DRILL_RETAILERS": str(retailers),
        "DRILL_NOTIFICATIONS_NOTIFY_URL": f"http://127.0.0.1:{notify_port}",
        "DRILL_MSG_RECONNECT_MAX_S": "1.0",
        **(env or {}),
    }.items():
        monkeypatch.setenv(key, value)
    # The couriers know every node (they fail over), the retailers every intake replica (a balancer).
    couriers = ",".join(amqp_urls_from_secrets(json.loads(pv.secrets.read_text()), "couriers"))
    handle = SystemHandle.start(run, spec, timeout=60)
    intake = ",".join(f"http://127.0.0.1:{base + i}" for i in range(replicas["intake"]))
    platform = RunningPlatform(handle, run, intake, notify_port, retailers, couriers, replicas)
    try:
        platform.wait_ready()
        yield platform
    finally:
        handle.stop()


def simulate(
    platform: RunningPlatform,
    *,
    seed: int,
    scenario: str,
    duration_s: float,
    rate: float,
    linger_s: float = 240.0,
    during: Callable[[float], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the simulator against the platform; ``during(elapsed_s)`` is called about every 0.5 s while it
    runs (the chaos of a test). Returns the finished process (its stdout has the summary line)."""
    argv = [
        sys.executable, "-m", "simulator", "simulate",
        "--scenario", scenario, "--seed", str(seed), "--duration", f"{duration_s:g}s", "--rate", f"{rate:g}",
        "--target", platform.intake_url, "--retailers", str(platform.retailers),
        "--listen", f"127.0.0.1:{platform.notify_port}", "--amqp", platform.couriers_url,
        "--run-dir", str(platform.run_dir), "--linger", f"{linger_s:g}s",
    ]  # fmt: skip
    out = platform.run_dir / "simulator.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
        t0 = time.monotonic()
        limit = duration_s + linger_s + 120
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - t0
                if elapsed > limit:
                    raise AssertionError(f"the simulator ran past {limit:.0f} s; see {out}")
                if during is not None:
                    during(elapsed)
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = out.read_text()
    assert proc.returncode == 0, f"simulator exited {proc.returncode}:\n{text[-3000:]}"
    return subprocess.CompletedProcess(argv, proc.returncode, text, "")


def audit(run_dir: Path) -> AuditReport:
    write_platform_config(run_dir)  # notifications: exactly once against what the service owed
    return audit_run(run_dir, load_config(run_dir), load_slo(run_dir))


def check(report: AuditReport, name: str) -> dict[str, int]:
    """The counts of one check, asserting it passed (the message names what failed)."""
    by_name = {c.name: c for c in report.checks}
    result = by_name[name]
    assert result.status == "passed", (
        f"{name}: {result.status}: {result.message} {result.counts} {result.samples}"
    )
    return dict(result.counts)
