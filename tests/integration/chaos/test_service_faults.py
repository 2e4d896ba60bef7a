"""Service faults against a real supervised system (stand-in worker processes; no broker needed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.faults import CrashLoop, KillReplica, PauseReplica, RestartReplica, StopService
from chaos.faults.base import FaultError
from chaos.injector import FaultInjector
from chaos.journal import Journal
from rig import procs as rig_procs
from rig.supervisor import SystemHandle

pytestmark = pytest.mark.integration

WORKER = """
import os, pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
pathlib.Path(sys.argv[1], f"ready-{os.getpid()}").touch()  # the handler is in place from here on
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def system(tmp_path: Path) -> Iterator[SystemHandle]:
    (tmp_path / "worker.py").write_text(WORKER)
    spec = tmp_path / "services.toml"
    spec.write_text(
        f'[[service]]\nname = "notify"\nargv = ["{{python}}", "{tmp_path / "worker.py"}", "{tmp_path}"]\nreplicas = 2\n'
    )
    handle = SystemHandle.start(tmp_path / "system", spec)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def inj(tmp_path: Path) -> FaultInjector:
    return FaultInjector(None, Journal(tmp_path / "journal.jsonl"))


def journaled(inj: FaultInjector, kind: str) -> bool:
    events = [(r["event"], r["kind"]) for r in inj.journal.records()]
    return ("applied", kind) in events and ("undo", kind) in events and not inj.journal.open_faults()


def test_kill_replica(inj: FaultInjector, system: SystemHandle) -> None:
    old = system.running_pid("notify", 1)
    with inj.applied(KillReplica("notify#1", system_dir=str(system.run_dir))):
        assert not rig_procs.alive(old)
    assert system.replica("notify", 1)["pid"] not in (None, old)
    assert system.replica("notify", 0)["restarts"] == 0  # only the target was touched
    assert journaled(inj, "kill_replica")


def test_restart_replica_is_graceful(inj: FaultInjector, system: SystemHandle) -> None:
    old = system.running_pid("notify", 0)
    ready = system.run_dir.parent / f"ready-{old}"
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "the worker never got ready"
        time.sleep(0.02)
    with inj.applied(RestartReplica("notify#0", system_dir=str(system.run_dir))) as active:
        assert active.detail["old_pid"] == old != active.detail["new_pid"]
    assert system.replica("notify", 0)["last_exit"] == 0  # exited on SIGTERM by itself
    assert journaled(inj, "restart_replica")


SLOW_TO_READY = """
import os, pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(1.0)  # warming up: running, not ready
pathlib.Path(os.environ["DRILL_READY_FILE"]).parent.mkdir(parents=True, exist_ok=True)
pathlib.Path(os.environ["DRILL_READY_FILE"]).write_text(str(os.getpid()))
while True:
    time.sleep(0.05)
"""


def test_restart_replica_of_a_ready_replica_ends_when_its_successor_is_ready(
    inj: FaultInjector, tmp_path: Path
) -> None:
    """A rolling restart must not take the next replica down while this one is still warming up."""
    (tmp_path / "slow.py").write_text(SLOW_TO_READY)
    spec = tmp_path / "slow.toml"
    spec.write_text(
        f'[[service]]\nname = "api"\nargv = ["{{python}}", "{tmp_path / "slow.py"}"]\nreplicas = 1\n'
    )
    system = SystemHandle.start(tmp_path / "slow-system", spec)
    try:
        deadline = time.monotonic() + 15
        while not system.is_ready(system.replica("api", 0)):
            assert time.monotonic() < deadline, "the worker never got ready"
            time.sleep(0.02)
        old = system.running_pid("api", 0)
        with inj.applied(RestartReplica("api#0", system_dir=str(system.run_dir))) as active:
            new = active.detail["new_pid"]
            assert new != old and system.is_ready(system.replica("api", 0))
            assert system.ready_marker("api", 0).read_text() == str(new)
            assert active.detail["ready_s"] >= 1.0, active.detail
    finally:
        system.stop()


def test_pause_replica(inj: FaultInjector, system: SystemHandle) -> None:
    pid = system.running_pid("notify", 0)
    with inj.applied(PauseReplica("notify#0", system_dir=str(system.run_dir))):
        system.wait("paused", "notify", 0)
    assert system.wait("running", "notify", 0)["pid"] == pid
    assert journaled(inj, "pause_replica")


def test_whole_service_down_then_back(inj: FaultInjector, system: SystemHandle) -> None:
    pids = [r["pid"] for r in system.replicas("notify")]
    with inj.applied(StopService("notify", system_dir=str(system.run_dir))):
        assert {r["state"] for r in system.replicas("notify")} == {"stopped"}
        assert not any(rig_procs.alive(p) for p in pids)
    assert {r["state"] for r in system.replicas("notify")} == {"running"}
    assert journaled(inj, "stop_service")


def test_crash_loop_keeps_a_replica_down_then_lets_it_live(inj: FaultInjector, system: SystemHandle) -> None:
    with inj.applied(CrashLoop("notify#1", system_dir=str(system.run_dir))):
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            r = system.replica("notify", 1)
            assert r["state"] != "running" or not rig_procs.alive(r["pid"]) or time.monotonic() < deadline
            time.sleep(0.1)
        looped = system.replica("notify", 1)["restarts"]
    assert looped >= 2, "the replica kept coming back and was killed again"
    r = system.wait("running", "notify", 1, timeout=40)
    assert rig_procs.alive(r["pid"])
    assert journaled(inj, "crash_loop")


def test_unknown_replica_is_a_clear_error(inj: FaultInjector, system: SystemHandle) -> None:
    with pytest.raises(FaultError, match="has no replica #7"):
        inj.inject(KillReplica("notify#7", system_dir=str(system.run_dir)))
    assert inj.journal.records() == []
