"""``drill run`` as a real process against the session's cluster, with a small services spec (intake and
its relay: the services that exist on their own), the simulator as traffic and a chaos experiment.

- a short run ends with report.json, junit.xml, summary.md and report.html in its run directory, and the
  runner's exit code is the verdict's (intake alone never delivers an order, so that verdict is FAIL:
  what matters here is that the exit code and the report agree, and that the evidence is there);
- SIGINT mid-run (a fault held, traffic flowing): a partial report, exit 130, the fault undone, and no
  process of the run left — every PID of its system.json and pids.json is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rig import procs
from rig.cluster import LocalCluster

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[3]

SPEC = (Path(__file__).parent / "scenarios" / "intake-only.toml").read_text()

CHAOS = """\
[experiment]
title = "a relay fault"
seed = 1

[[steady_state]]
probe = "nodes_up"
min = 3

[[method]]
fault = "{fault}"
target = "intake-relay#0"
at = 0.0
duration = {duration}
"""

SCENARIO = """\
name = "{name}"
description = "intake only, for the runner's tests"
duration = "{duration}"
drain_deadline = "{drain}"

[system]
spec = "services.toml"
ready_timeout = "60s"

[traffic]
scenario = "steady-fast"
rate = 5.0
seed = 3
linger = "2s"

[chaos]
experiment = "chaos.toml"
start = "{chaos_start}"

[slo]
accepted_to_booked_p99_s = false
accepted_to_delivered_p99_s = false
"""


def _write(tmp: Path, *, name: str, duration: str, fault: str, fault_s: float, chaos_start: str) -> Path:
    (tmp / "services.toml").write_text(SPEC)
    (tmp / "chaos.toml").write_text(CHAOS.format(fault=fault, duration=fault_s))
    path = tmp / f"{name}.toml"
    # Nothing consumes what the relay publishes here: the drain cannot succeed, so it is kept short.
    path.write_text(SCENARIO.format(name=name, duration=duration, chaos_start=chaos_start, drain="3s"))
    return path


def _start(scenario: Path, cluster: LocalCluster, vhost: str, runs: Path) -> subprocess.Popen[str]:
    argv = [
        sys.executable, "-m", "harness", "run", str(scenario),
        "--cluster-dir", str(cluster.spec.run_dir), "--vhost", vhost, "--runs-dir", str(runs),
    ]  # fmt: skip
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=os.environ.copy()
    )


def _run_dir(runs: Path) -> Path:
    dirs = sorted(p for p in runs.iterdir() if p.is_dir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_a_short_run_writes_every_report_and_exits_with_the_verdict(
    local_cluster: LocalCluster, vhost: str, tmp_path: Path
) -> None:
    scenario = _write(
        tmp_path, name="short", duration="8s", fault="kill_replica", fault_s=1, chaos_start="3s"
    )
    runs = tmp_path / "runs"
    proc = _start(scenario, local_cluster, vhost, runs)
    out, _ = proc.communicate(timeout=200)
    print(out[-4000:])
    run = _run_dir(runs)
    for name in ("report.json", "junit.xml", "summary.md", "report.html", "drill.json", "slo.toml"):
        assert (run / name).is_file(), f"{name} missing in {run}: {sorted(p.name for p in run.iterdir())}"
    report = json.loads((run / "report.json").read_text())
    assert proc.returncode == report["exit_code"], (proc.returncode, report["verdict"])
    assert f"VERDICT: {report['verdict']}" in out
    assert report["partial"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["drill[completed]"]["status"] == "passed"
    assert checks["drill[traffic]"]["status"] == "passed", checks["drill[traffic]"]
    # The relay was really killed (and came back): the chaos check saw one fault applied and undone.
    assert checks["drill[chaos]"]["status"] == "passed", checks["drill[chaos]"]
    assert checks["drill[chaos]"]["counts"]["applied"] == 1
    # Orders went in through intake and out through its relay into the broker, where nothing consumes
    # them (no quoting service here): the drain says so, queue by queue.
    intake = report["performance"]["intake"]
    assert intake["ok"] >= 25, intake
    accepted = report["flows"]["orders"]["counts"]["acknowledged"]
    assert checks["drained"]["status"] == "failed"
    assert checks["drained"]["counts"][f"{vhost}/quoting.orders"] >= accepted > 0, checks["drained"]
    assert report["slo"]["accepted_to_booked_p99_s"] is None
    # Intake alone books nothing: the verdict is FAIL on the business check, and the exit code says so.
    assert report["verdict"] == "FAIL" and proc.returncode == 1
    doc = json.loads((run / "drill.json").read_text())
    assert doc["left_alive"] == [] and doc["exit_code"] == 1
    pids = json.loads((run / "pids.json").read_text())
    assert all(not procs.alive(p) for p in [pids["supervisor"], pids["simulator"], *pids["replicas"]])


def test_sigint_mid_run_writes_a_partial_report_exits_130_and_leaves_no_process(
    local_cluster: LocalCluster, vhost: str, tmp_path: Path
) -> None:
    # The relay is paused from t=2 s for a minute: the interrupt lands while the fault is held.
    scenario = _write(
        tmp_path, name="cut", duration="60s", fault="pause_replica", fault_s=60, chaos_start="2s"
    )
    runs = tmp_path / "runs"
    proc = _start(scenario, local_cluster, vhost, runs)
    try:
        deadline = time.monotonic() + 90
        seen: set[int] = set()
        while True:
            assert proc.poll() is None, proc.communicate()[0][-4000:]
            run = _run_dir(runs) if runs.is_dir() and any(runs.iterdir()) else None
            if run is not None and (run / "system.json").is_file():
                st = json.loads((run / "system.json").read_text())
                seen |= {st["supervisor_pid"], *(r["pid"] for r in st["replicas"] if r.get("pid"))}
                journal = run / "chaos" / "journal.jsonl"
                ledger = run / "simulator" / "ledger.jsonl"
                fault_held = journal.is_file() and '"applied"' in journal.read_text()
                if fault_held and ledger.is_file() and '"kind":"progress"' in ledger.read_text():
                    break
            assert time.monotonic() < deadline, "the run never reached its traffic and its fault"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(out[-4000:])
    assert proc.returncode == 130, out[-3000:]
    assert run is not None
    report = json.loads((run / "report.json").read_text())
    assert report["partial"] is True
    checks = {c["name"]: c for c in report["checks"]}
    # An interrupted run is the harness not carrying out its plan: a harness error, never a FAIL.
    assert checks["drill[completed]"]["status"] == "error"
    assert "traffic" in checks["drill[completed]"]["message"]
    assert (run / "report.html").is_file() and "PARTIAL RUN" in (run / "report.html").read_text()
    assert "(PARTIAL)" in out
    # The held fault was undone (the journal has no open fault) ...
    from chaos.journal import Journal

    assert Journal(run / "chaos" / "journal.jsonl").open_faults() == []
    # ... and no process of the run is left: the system's PIDs seen mid-run and every recorded one.
    pids = json.loads((run / "pids.json").read_text())
    recorded = {pids["supervisor"], pids["simulator"], *pids["replicas"]}
    assert seen and seen <= recorded, (seen, recorded)
    alive = [p for p in seen | recorded if procs.alive(p)]
    assert alive == [], alive
    assert not (run / "system.json").exists()
    # The simulator acted on the drill's SIGINT (it was once born with SIGINT blocked and died by SIGKILL).
    assert '"kind":"run_aborted"' in (run / "simulator" / "ledger.jsonl").read_text()


def test_a_service_that_never_gets_ready_fails_the_run_cleanly(
    local_cluster: LocalCluster, vhost: str, tmp_path: Path
) -> None:
    scenario = _write(
        tmp_path, name="broken", duration="10s", fault="kill_replica", fault_s=1, chaos_start="1s"
    )
    # A platform service that dies at once: it never touches its ready marker.
    (tmp_path / "services.toml").write_text(
        SPEC + '\n[[service]]\nname = "quoting"\nargv = ["{python}", "-c", "import sys; sys.exit(3)"]\n'
    )
    scenario.write_text(scenario.read_text().replace('ready_timeout = "60s"', 'ready_timeout = "6s"'))
    runs = tmp_path / "runs"
    proc = _start(scenario, local_cluster, vhost, runs)
    out, _ = proc.communicate(timeout=150)
    print(out[-3000:])
    assert proc.returncode == 3, out[-3000:]  # INCONCLUSIVE: the harness could not run its plan
    run = _run_dir(runs)
    report = json.loads((run / "report.json").read_text())
    assert report["partial"] is True
    checks = {c["name"]: c for c in report["checks"]}
    completed = checks["drill[completed]"]
    assert completed["status"] == "error" and "error during the system phase" in completed["message"]
    assert report["verdict"] == "INCONCLUSIVE"
    assert "quoting#0" in completed["message"], completed["message"]
    assert checks["drill[traffic]"]["status"] == "skipped"  # it never started
    pids = json.loads((run / "pids.json").read_text())
    assert "simulator" not in pids
    alive = [p for p in [pids["supervisor"], *pids["replicas"]] if procs.alive(p)]
    assert alive == [], alive
