"""`./drill cluster ...` as a user runs it: separate CLI processes, real signals, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rig import procs as rig_procs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def drill(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def processes_mentioning(needle: str) -> list[int]:
    """Every live process whose command line mentions needle (read-only scan, for assertions)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and rig_procs.alive(int(d.name)):
            found.append(int(d.name))
    return found


def leftovers(run_dir: Path, epmd_port: int) -> list[int]:
    return processes_mentioning(str(run_dir)) + processes_mentioning(f"-port {epmd_port}")


def wait_state(run_dir: Path, cond: str, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = json.loads((run_dir / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            st = None
        if st and cond == "beam" and any(n.get("beam_pid") for n in st["nodes"]):
            return st
        time.sleep(0.05)
    raise AssertionError(f"state file never showed {cond}")


def test_up_status_kill_restart_down(tmp_path: Path) -> None:
    run_dir, base = tmp_path / "rig", 7500
    up = drill("cluster", "up", "--nodes", "1", "--run-dir", str(run_dir), "--port-base", str(base))
    assert up.returncode == 0, up.stderr + up.stdout
    assert "cluster up in" in up.stdout
    again = drill("cluster", "up", "--nodes", "1", "--run-dir", str(run_dir), "--port-base", str(base))
    assert again.returncode == 2 and "already running" in again.stderr

    status = drill("cluster", "status", "--run-dir", str(run_dir), "--json")
    nodes = json.loads(status.stdout)
    assert [n["state"] for n in nodes] == ["up"]
    pid = nodes[0]["pid"]

    assert drill("cluster", "kill", "1", "--run-dir", str(run_dir)).returncode == 0
    assert not rig_procs.alive(pid)
    assert (
        json.loads(drill("cluster", "status", "--run-dir", str(run_dir), "--json").stdout)[0]["state"]
        == "down"
    )
    assert drill("cluster", "restart", "1", "--run-dir", str(run_dir)).returncode == 0
    assert (
        json.loads(drill("cluster", "status", "--run-dir", str(run_dir), "--json").stdout)[0]["state"] == "up"
    )

    down = drill("cluster", "down", "--run-dir", str(run_dir))
    assert down.returncode == 0, down.stderr
    assert leftovers(run_dir, base - 1300) == []
    assert drill("cluster", "status", "--run-dir", str(run_dir)).returncode == 2


def test_ctrl_c_during_up_leaves_nothing(tmp_path: Path) -> None:
    run_dir, base = tmp_path / "rig", 7600
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "cluster",
            "up",
            "--nodes",
            "2",
            "--run-dir",
            str(run_dir),
            "--port-base",
            str(base),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    st = wait_state(run_dir, "beam")  # the VMs exist: we are mid-start
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    pids = [p for n in st["nodes"] for p in (n["beam_pid"], n["wrapper_pid"]) if p] + [st["epmd_pid"]]
    assert not any(rig_procs.alive(p) for p in pids)
    assert leftovers(run_dir, base - 1300) == []


def test_down_after_the_cli_was_sigkilled_mid_up(tmp_path: Path) -> None:
    run_dir, base = tmp_path / "rig", 7700
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "cluster",
            "up",
            "--nodes",
            "1",
            "--run-dir",
            str(run_dir),
            "--port-base",
            str(base),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_state(run_dir, "beam")
    os.kill(proc.pid, signal.SIGKILL)  # the CLI dies without any chance to clean up
    proc.wait(timeout=10)
    assert leftovers(run_dir, base - 1300), "the nodes outlive the CLI: down has work to do"
    down = drill("cluster", "down", "--run-dir", str(run_dir))
    assert down.returncode == 0, down.stderr
    assert leftovers(run_dir, base - 1300) == []


def test_rabbitmq_missing_names_the_fix(tmp_path: Path) -> None:
    env = dict(os.environ, DRILL_RABBITMQ_BIN=str(tmp_path / "nowhere"))
    res = subprocess.run(
        [sys.executable, "-m", "harness", "cluster", "up", "--run-dir", str(tmp_path / "rig")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2
    assert "apt-get install -y rabbitmq-server" in res.stderr
