"""Crashed drill runs: which runs count as crashed, which recorded PIDs are still the run's, and the
traffic stop — with real processes and real signals, no broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig import procs as rig_procs
from rig.crashed import (
    RunError,
    find_crashed_runs,
    find_runs_to_clean,
    load_run,
    require_crashed,
    stop_traffic,
    verify,
)

# Exits 0 on SIGINT (as the simulator does after flushing its ledger); says "ready" once it would.
SLEEPER = (
    "import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: sys.exit(0)); "
    "print('ready', flush=True); time.sleep(120)"
)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _make_run(runs: Path, name: str, pids: dict[str, object], drill: dict[str, object]) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    (run / "scenario.toml").write_text('name = "x"\n')
    (run / "pids.json").write_text(json.dumps(pids))
    (run / "drill.json").write_text(json.dumps(drill))
    return run


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def _spawn(procs: list[subprocess.Popen[bytes]], *argv: str, env: dict[str, str] | None = None) -> int:
    p = subprocess.Popen(
        [sys.executable, "-c", SLEEPER, *argv], env={**os.environ, **(env or {})}, stdout=subprocess.PIPE
    )
    procs.append(p)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"  # its SIGINT handler is in place
    return p.pid


def test_a_run_is_crashed_when_its_runner_is_gone_and_it_has_no_verdict(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _make_run(runs, "1-done", {"runner": _dead_pid()}, {"exit_code": 0, "verdict": "VERDICT: PASS"})
    _make_run(runs, "2-live", {"runner": os.getpid()}, {"phases": []})  # this process: still running
    crashed = _make_run(runs, "3-crashed", {"runner": _dead_pid()}, {"phases": []})
    found = find_crashed_runs(runs)
    assert [r.run_dir for r in found] == [crashed.resolve()]
    assert find_crashed_runs(tmp_path / "nowhere") == []


def test_a_live_pid_that_started_after_the_run_is_a_recycled_one(tmp_path: Path) -> None:
    # The run's files say it began an hour ago; this process (the "runner" PID) started later.
    run = _make_run(tmp_path / "runs", "old", {"runner": os.getpid()}, {"phases": []})
    past = time.time() - 3600
    for f in run.iterdir():
        os.utime(f, (past, past))
    r = load_run(run)
    assert not r.runner_alive()
    assert [c.run_dir for c in find_crashed_runs(tmp_path / "runs")] == [run.resolve()]


def test_a_live_runner_is_refused_and_a_non_run_named(tmp_path: Path) -> None:
    live = _make_run(tmp_path / "runs", "live", {"runner": os.getpid()}, {})
    with pytest.raises(RunError, match="still running"):
        require_crashed(load_run(live))
    with pytest.raises(RunError, match="still running"):
        find_runs_to_clean(live, explicit=False)
    with pytest.raises(RunError, match="not a drill run directory"):
        load_run(tmp_path)
    assert find_runs_to_clean(None, explicit=True) == []


def test_the_cluster_is_read_from_the_runs_own_words(tmp_path: Path) -> None:
    started = _make_run(
        tmp_path / "runs",
        "a",
        {"runner": _dead_pid(), "cluster": [1, 2]},
        {
            "phases": [
                {
                    "phase": "cluster",
                    "what": "start 3 local RabbitMQ node(s) in /x/rig one (stopped at the end)",
                }
            ]
        },
    )
    r = load_run(started)
    assert r.cluster_dir == Path("/x/rig one") and r.cluster_started_by_run
    reused = _make_run(tmp_path / "runs", "b", {"runner": _dead_pid()}, {"phases": []})
    (reused / "plan.txt").write_text(
        "  2. cluster      reuse the local rig running from /y/rig (3 nodes; left running)\n"
    )
    r = load_run(reused)
    assert r.cluster_dir == Path("/y/rig") and not r.cluster_started_by_run
    recorded = _make_run(tmp_path / "runs", "c", {"runner": 1, "cluster_dir": "/z"}, {})
    assert load_run(recorded).cluster_dir == Path("/z")


def test_only_processes_that_name_the_run_are_claimed(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    sim = _spawn(procs, "--run-dir", str(run_dir.resolve()))
    other = _spawn(procs, "--run-dir", str(tmp_path / "another-run"))
    locust = _spawn(procs, env={"DRILL_RUN_DIR": str(run_dir.resolve())})
    (run_dir / "scenario.toml").write_text("")
    past = time.time() - 5  # the run began before its processes
    os.utime(run_dir / "scenario.toml", (past, past))
    (run_dir / "pids.json").write_text(json.dumps({"runner": _dead_pid(), "simulator": sim}))
    r = load_run(run_dir)
    assert verify(sim, r, "simulator") is None
    assert verify(locust, r, "locust") is None
    assert "do not name the run" in (verify(other, r, "simulator") or "")
    assert "do not name the run" in (verify(sim, r, "locust") or "")  # wrong evidence for the role
    assert verify(_dead_pid(), r, "simulator") == "gone"
    # A process older than the run is not the run's, whatever its command line says.
    for f in run_dir.iterdir():
        os.utime(f, (time.time() + 3600, time.time() + 3600))
    assert "started before the run" in (verify(sim, load_run(run_dir), "simulator") or "")


def test_stop_traffic_interrupts_the_runs_simulator_and_locust_and_spares_a_recycled_pid(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "scenario.toml").write_text("")
    past = time.time() - 5
    os.utime(run_dir / "scenario.toml", (past, past))
    sim = _spawn(procs, "--run-dir", str(run_dir.resolve()))
    stranger = _spawn(procs, "--run-dir", "/somewhere/else")  # what a recycled locust PID would be
    workers = [_spawn(procs, env={"DRILL_RUN_DIR": str(run_dir.resolve())}) for _ in range(2)]
    (run_dir / "locust").mkdir()
    (run_dir / "locust" / "pids.json").write_text(json.dumps(workers))
    (run_dir / "pids.json").write_text(
        json.dumps({"runner": _dead_pid(), "simulator": sim, "locust": [stranger]})
    )
    out = stop_traffic(load_run(run_dir))
    assert out.failed == []
    assert not any(rig_procs.alive(p) for p in [sim, *workers])
    assert rig_procs.alive(stranger)
    assert any(f"stopped the run's simulator (PID {sim})" == line for line in out.done), out.done
    assert any(f"left PID {stranger} alone" in line for line in out.done), out.done
    # SIGINT, not SIGKILL: the sleeper exits 0 from its SIGINT handler (a simulator flushes its ledger).
    codes = {p.pid: p.wait(timeout=5) for p in procs if p.pid in (sim, *workers)}
    assert set(codes.values()) == {0}, codes
    os.kill(stranger, signal.SIGTERM)


def test_only_crashed_runs_that_left_something_are_cleaned_by_default(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / ".drill" / "runs"
    clean = _make_run(runs, "1-clean", {"runner": _dead_pid(), "simulator": _dead_pid()}, {})
    busy = _make_run(runs, "2-busy", {"runner": _dead_pid()}, {})
    sim = _spawn(procs, "--run-dir", str(busy.resolve()))
    (busy / "pids.json").write_text(json.dumps({"runner": _dead_pid(), "simulator": sim}))
    faulty = _make_run(runs, "3-faulty", {"runner": _dead_pid()}, {})
    (faulty / "chaos").mkdir()
    (faulty / "chaos" / "journal.jsonl").write_text(
        json.dumps({"ts": 1.0, "event": "apply", "fault_id": "f-1", "kind": "partition", "undo": {}}) + "\n"
    )
    assert load_run(clean).leftovers() == []
    assert load_run(busy).leftovers() == [f"simulator PID {sim} alive"]
    assert load_run(faulty).leftovers() == ["1 open fault(s) in its journal"]
    monkeypatch.setenv("DRILL_ROOT", str(tmp_path))
    found = find_runs_to_clean(None, explicit=False)
    assert [r.run_dir.name for r in found] == ["2-busy", "3-faulty"]
    # Named with --run, even a clean crashed run is taken (the user asked for it).
    assert [r.run_dir for r in find_runs_to_clean(clean, explicit=False)] == [clean.resolve()]
