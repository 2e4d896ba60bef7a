"""The drill's resource sampler against real processes: a busy loop reads busy, a sleeper idle, a killed
process does not stop it; and the roles it finds in a run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import rundir
from reports.readers.saturation import read_resources
from rig.resources import (
    ResourceSampler,
    drill_roles,
    read_cpu,
    read_process,
    service_roles,
)

DEADLINE_S = 30.0
TICKS = os.sysconf("SC_CLK_TCK")


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(cond: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def children() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs = {
        "busy": subprocess.Popen([sys.executable, "-c", "while True: pass"]),
        "idle": subprocess.Popen(["sleep", "120"]),
        "victim": subprocess.Popen(["sleep", "120"]),
    }
    try:
        yield procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


def kernel_ticks(pid: int) -> int:
    """utime + stime of ``pid`` straight from /proc (the test's own parse: the ground truth)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def recorded_ticks(rec: dict[str, Any], role: str) -> float:
    return float(rec["roles"][role]["cpu"]) / 100 * float(rec["dt"]) * TICKS


def test_one_sample_is_the_kernel_accounting_of_the_interval(
    children: dict[str, subprocess.Popen[bytes]],
) -> None:
    """Exact, whatever the machine's load: the CPU one sample reports for the busy loop lies between the
    kernel's counts just inside and just outside the sampler's two readings."""
    busy, idle = children["busy"].pid, children["idle"].pid
    sampler = ResourceSampler(Path(os.devnull), lambda: {"busy": [busy], "idle": [idle]})
    x0 = kernel_ticks(busy)
    assert sampler.sample() is None  # the first reading is the baseline
    x1 = kernel_ticks(busy)
    wait_for(lambda: kernel_ticks(busy) >= x1 + 20, "the busy loop to burn 20 ticks")
    x2 = kernel_ticks(busy)
    rec = sampler.sample()
    x3 = kernel_ticks(busy)
    assert rec is not None
    got = recorded_ticks(rec, "busy")
    assert x2 - x1 - 1 <= got <= x3 - x0 + 1, (x0, x1, x2, x3, rec)
    assert rec["roles"]["busy"]["max"] == rec["roles"]["busy"]["cpu"]  # one process: it is the busiest
    assert recorded_ticks(rec, "idle") <= 1


def test_busy_reads_busy_idle_reads_idle_and_a_killed_process_does_not_stop_it(
    tmp_path: Path, children: dict[str, subprocess.Popen[bytes]]
) -> None:
    path = tmp_path / rundir.RESOURCES
    pids = {role: [p.pid] for role, p in children.items()}
    busy_pid = children["busy"].pid
    sampler = ResourceSampler(path, lambda: pids, interval_s=0.5)
    wall_a, ticks_a = time.time(), kernel_ticks(busy_pid)
    sampler.start()
    try:
        wait_for(lambda: len(lines(path)) >= 4, "4 samples (~2 s)")
        os.kill(children["victim"].pid, signal.SIGKILL)
        children["victim"].wait(timeout=10)  # reaped: its /proc entry is gone
        before = len(lines(path))
        wait_for(lambda: len(lines(path)) >= before + 3, "3 more samples after the kill")
        assert sampler.is_alive()
    finally:
        sampler.stop()
    wall_b, ticks_b = time.time(), kernel_ticks(busy_pid)
    assert not sampler.is_alive()
    recs = lines(path)
    assert sampler.errors == 0  # a vanished PID is not an error

    # Busy reads busy: what the samples add up to is what the kernel counted for the busy loop over the
    # same time, less at most what it could burn (one core) in the edges the samples do not cover. On a
    # quiet machine that is ~100% of a core; on this shared 2-core machine it can be much less, so the
    # kernel's own count is the reference, not a fixed share.
    total = sum(recorded_ticks(r, "busy") for r in recs)
    edges = (recs[0]["t"] - recs[0]["dt"] - wall_a) + (wall_b - recs[-1]["t"])
    assert ticks_b - ticks_a - edges * TICKS - len(recs) <= total <= ticks_b - ticks_a + len(recs), (
        ticks_a, ticks_b, edges, total,
    )  # fmt: skip
    busy = [r["roles"]["busy"]["cpu"] for r in recs]
    idle = [r["roles"]["idle"]["cpu"] for r in recs]
    share = (ticks_b - ticks_a) / TICKS / (wall_b - wall_a) * 100
    if share >= 60.0:  # the machine let the loop have most of a core: then it must read so
        assert sum(busy) / len(busy) >= 50.0, (busy, share)
    assert max(busy) <= 115.0, busy  # one thread cannot use more than one core (plus timing jitter)
    assert sum(idle) / len(idle) < 10.0, idle
    assert sum(busy) / len(busy) > sum(idle) / len(idle) + 5.0, (busy, idle)

    # The killed process: present, then gone (0 processes), and the sampling went on.
    assert recs[0]["roles"]["victim"]["procs"] == 1
    after = recs[before:]
    assert after[-1]["roles"]["victim"] == {"cpu": 0.0, "max": 0.0, "rss_mb": 0.0, "procs": 0}
    assert all(r["roles"]["busy"]["procs"] == 1 for r in after)
    for r in recs:
        assert r["cores"] >= 1 and 0.0 <= r["cpu_busy"] <= 1.0 and r["dt"] > 0
        assert abs(r["t"] - time.time()) < 120  # wall clock, to align with the ledger
        assert r["roles"]["busy"]["rss_mb"] > 1.0
    # The report's reader takes every line.
    _, stats = read_resources(path)
    assert (stats.samples, stats.malformed) == (len(recs), 0)


def test_a_failing_roles_callable_keeps_the_last_roles_and_the_sampler_going(tmp_path: Path) -> None:
    path = tmp_path / rundir.RESOURCES
    calls = {"n": 0}

    def roles() -> dict[str, list[int]]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise ValueError("system.json is being replaced")
        return {"drill": [os.getpid()]}

    sampler = ResourceSampler(path, roles, interval_s=0.1)
    sampler.start()
    try:
        wait_for(lambda: len(lines(path)) >= 3, "3 samples")
    finally:
        sampler.stop()
    assert sampler.errors >= 2
    assert all(r["roles"]["drill"]["procs"] == 1 for r in lines(path))


def test_an_unwritable_file_ends_the_thread_quietly(tmp_path: Path) -> None:
    sampler = ResourceSampler(tmp_path / "missing-dir" / rundir.RESOURCES, lambda: {}, interval_s=0.1)
    sampler.start()
    wait_for(lambda: not sampler.is_alive(), "the sampler thread to end")
    sampler.stop()  # and stopping it after that is harmless
    assert sampler.samples == 0


def test_proc_readers(tmp_path: Path) -> None:
    times, cores = read_cpu()
    assert cores >= 1 and times.total >= times.busy > 0
    me = read_process(os.getpid())
    assert me is not None and me.rss > 0 and me.cpu >= 0
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert read_process(gone.pid) is None


def test_roles_of_a_run_come_from_the_supervisor_state_and_the_runner(tmp_path: Path) -> None:
    state = {
        "supervisor_pid": 4001,
        "replicas": [
            {"service": "intake", "index": 0, "pid": 4002, "state": "running"},
            {"service": "intake", "index": 1, "pid": 4003, "state": "running"},
            {"service": "quoting", "index": 0, "pid": None, "state": "backoff"},
        ],
    }
    (tmp_path / "system.json").write_text(json.dumps(state))
    assert service_roles(tmp_path) == {
        "service.intake": [4002, 4003],
        "service.quoting": [],
        "supervisor": [4001],
    }
    (tmp_path / "locust").mkdir()
    (tmp_path / "locust" / "pids.json").write_text("[5001, 5002]")
    own = {"simulator": [6001], "locust": [5001, 5002], "links": [7001]}
    got = drill_roles(None, tmp_path, lambda: own)()
    assert got["drill"] == [os.getpid()]
    assert got["simulator"] == [6001] and got["locust"] == [5001, 5002] and got["links"] == [7001]
    assert got["service.intake"] == [4002, 4003]
    assert service_roles(tmp_path / "nowhere") == {}


def test_the_brokers_are_sampled_only_for_a_cluster_that_runs_here(tmp_path: Path) -> None:
    class Here(SimpleNamespace):
        runs_here = True

        def vm_pids(self) -> dict[int, int | None]:
            return {1: 8001, 2: None}

    got = drill_roles(Here(), tmp_path, dict)()  # type: ignore[arg-type]
    assert got["broker.1"] == [8001] and got["broker.2"] == []
    assert not any(r.startswith("broker.") for r in drill_roles(None, tmp_path, dict)())
