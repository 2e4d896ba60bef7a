"""Phase "system": ``<run>/services.toml`` (free ports, replicas, env, broken switches), the supervisor
(:class:`rig.supervisor.SystemHandle`) in ``<run>``, and every replica ready.

A replica is ready when the supervisor runs it and it says so: its ``GET /readyz`` answers 200 (HTTP
services) or it wrote its PID into its marker ``<run>/ready/<service>.<replica>`` (the others).
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import httpx

import rundir
from harness.drill.run import DrillError, DrillRun
from harness.drill.services import RunServices, build_services
from rig import procs
from rig.ports import free_port, free_port_base
from rig.procs import environment
from rig.supervisor import SystemHandle


class Http(Protocol):
    """What the readiness check asks of an HTTP client."""

    def get(self, url: str) -> Any: ...


def not_ready(run: DrillRun, services: RunServices, state: dict[str, Any] | None, client: Http) -> list[str]:
    """The replicas not ready yet, each with why (``state``: the supervisor's ``system.json``)."""
    st = state or {"replicas": []}
    rows = {(r["service"], r["index"]): r for r in st["replicas"]}
    missing = []
    for spec in services.specs:
        kind = services.ready[spec.name]
        for i in range(spec.replicas):
            r = rows.get((spec.name, i))
            label = f"{spec.name}#{i}"
            pid = r.get("pid") if r else None
            if not r or r["state"] != "running" or not procs.alive(pid):
                missing.append(f"{label} (not running)")
                continue
            if kind == "http":
                port = services.http_ports[spec.name][i]
                try:
                    ok = client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
                except Exception:
                    ok = False
                if not ok:
                    missing.append(f"{label} (GET :{port}/readyz)")
            elif kind == "marker":
                marker = run.run_dir / rundir.READY_DIR / f"{services.marker_names[spec.name]}.{i}"
                try:
                    text = marker.read_text().strip()
                except OSError:
                    missing.append(f"{label} (no {marker.name} marker)")
                    continue
                if text.isdigit() and int(text) != pid:
                    missing.append(f"{label} (marker of an earlier PID)")
    return missing


def wait_ready(run: DrillRun, timeout: float, *, handle: Any = None, poll_s: float = 0.25) -> None:
    """Until every replica is ready, at least 5 s; :class:`DrillError` naming those that are not."""
    assert run.services is not None
    handle = handle or SystemHandle(run.run_dir)
    deadline = time.monotonic() + max(timeout, 5.0)
    with httpx.Client(timeout=1.0) as client:
        while True:
            missing = not_ready(run, run.services, handle.state(), client)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise DrillError(
                    f"not ready after {timeout:.0f} s: {', '.join(missing)}; logs in {run.run_dir / rundir.LOGS_DIR}"
                )
            time.sleep(poll_s)


def start_system(run: DrillRun, *, handle: type[SystemHandle] = SystemHandle) -> None:
    """Write the retailers and the run's services spec, start the supervisor with every replica and wait
    until each is ready. ``handle``: the supervisor's handle class (a fake in tests)."""
    from simulator.world import build_retailers, write_retailers_file
    from system.platform.settings import amqp_urls_from_secrets

    assert run.secrets is not None
    reps = run.sc.replicas()
    run.retailers = run.run_dir / rundir.RETAILERS
    write_retailers_file(
        run.retailers, run.m.traffic.seed, build_retailers(run.m.traffic.seed, run.sc.traffic)
    )
    run.notify_port = free_port()
    runner_env = {
        "DRILL_PLATFORM_SECRETS": str(run.secrets),
        "DRILL_RETAILERS": str(run.retailers),
        "DRILL_NOTIFICATIONS_NOTIFY_URL": f"http://127.0.0.1:{run.notify_port}",
    }
    run.services = build_services(
        run.sc.services,
        replicas=reps,
        env={**runner_env, **run.m.system.env},
        broken={sw.service: dict(sw.env) for sw in run.m.broken},
        ready=dict(run.m.system.ready),
        free_base=free_port_base,
    )
    spec_path = run.run_dir / rundir.SERVICES
    spec_path.write_text(run.services.to_toml())
    http = next(iter(run.services.http_ports.values()), None)
    if not http:
        raise DrillError(f"no service in {run.sc.spec_path} has an HTTP port: the traffic needs intake")
    # The retailers reach every intake replica (the simulator spreads and fails over, as behind
    # a load balancer); Locust and the readiness checks use the first.
    run.intake_urls = [f"http://127.0.0.1:{p}" for p in http]
    run.intake_url = run.intake_urls[0]
    doc = json.loads(run.secrets.read_text())
    # Services whose broker URLs come from the environment (the intake relay without a secrets
    # file) get intake's user; secrets travel in the environment only, never in services.toml.
    # Chaos's service faults find the system through DRILL_SYSTEM_DIR.
    run.env.enter_context(environment({"DRILL_SYSTEM_DIR": str(run.run_dir)}))
    secret_env = {"DRILL_AMQP_URLS": ",".join(amqp_urls_from_secrets(doc, "intake"))}
    t0 = time.monotonic()
    try:
        with environment(secret_env):
            handle.start(run.run_dir, spec_path, timeout=run.m.system.ready_timeout)
    finally:
        run.system_started = True  # whatever happened, the supervisor may exist: stop it at the end
        run.record_system_pids(handle(run.run_dir).state())
    run.say(f"supervisor and {sum(reps.values())} replica(s) running in {time.monotonic() - t0:.1f} s")
    wait_ready(run, run.m.system.ready_timeout - (time.monotonic() - t0), handle=handle(run.run_dir))
    run.say(f"every replica ready after {time.monotonic() - t0:.1f} s; intake at {run.intake_url}")
