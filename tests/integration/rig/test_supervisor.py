"""The supervisor with real processes: restarts with backoff, pause, scale, graceful stop, crash of itself."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig import procs as rig_procs
from rig.supervisor import SupervisorError, SystemHandle, load_spec

WORKER = """
import os, signal, sys, time
def bye(*_):
    open(os.path.join(sys.argv[1], f"graceful-{os.environ['DRILL_SERVICE']}-{os.environ['DRILL_REPLICA']}-{os.getpid()}"), "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
open(os.path.join(sys.argv[2], str(os.getpid())), "w").close()  # ready: the handler is in place
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def system(tmp_path: Path) -> Iterator[SystemHandle]:
    (tmp_path / "worker.py").write_text(WORKER)
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "ready").mkdir()
    spec = tmp_path / "services.toml"
    spec.write_text(
        f"""
[[service]]
name = "worker"
argv = ["{{python}}", "{tmp_path / "worker.py"}", "{marks}", "{tmp_path / "ready"}"]
replicas = 2

[[service]]
name = "crasher"
argv = ["{{python}}", "-c", "import sys; sys.exit(3)"]
replicas = 1
"""
    )
    handle = SystemHandle.start(tmp_path / "run", spec)
    try:
        yield handle
    finally:
        if handle.state() is not None:
            handle.stop()


def wait_ready(handle: SystemHandle, service: str, index: int) -> None:
    """Until the replica's process has installed its SIGTERM handler (a SIGTERM before that kills it)."""
    deadline = time.monotonic() + 15
    while True:
        pid = handle.replica(service, index).get("pid")
        if pid and (handle.run_dir.parent / "ready" / str(pid)).exists():
            return
        assert time.monotonic() < deadline, f"{service}#{index} never got ready"
        time.sleep(0.02)


def marks(handle: SystemHandle) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[0] for p in (handle.run_dir.parent / "marks").iterdir())


def test_crash_loop_backs_off_instead_of_spinning(system: SystemHandle) -> None:
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        time.sleep(0.1)
    crasher = system.replica("crasher", 0)
    assert crasher["last_exit"] == 3
    # backoff 1 s, 2 s, 4 s ...: about 2 restarts in 4 s, never dozens
    assert 1 <= crasher["restarts"] <= 3, crasher


def test_killed_replica_is_restarted_with_a_new_pid(system: SystemHandle) -> None:
    old = system.signal("worker", 1, signal.SIGKILL)
    r = system.wait("running", "worker", 1, timeout=15, not_pid=old)
    assert r["restarts"] == 1 and r["last_exit"] == -signal.SIGKILL
    assert not rig_procs.alive(old)


def test_pause_is_not_a_death(system: SystemHandle) -> None:
    pid = system.signal("worker", 0, signal.SIGSTOP)
    system.wait("paused", "worker", 0)
    os.kill(pid, signal.SIGCONT)
    r = system.wait("running", "worker", 0)
    assert r["pid"] == pid and r["restarts"] == 0


def test_scale_up_and_down_gracefully(system: SystemHandle) -> None:
    system.scale("worker", 3)
    system.wait("running", "worker", 2)
    for i in (1, 2):
        wait_ready(system, "worker", i)
    system.scale("worker", 1)
    system.wait("stopped", "worker", 1)
    system.wait("stopped", "worker", 2)
    assert marks(system) == ["graceful-worker-1", "graceful-worker-2"]
    assert system.replica("worker", 0)["state"] == "running"
    with pytest.raises(SupervisorError, match="no service 'nope'"):
        system.scale("nope", 1)


def test_stop_is_graceful_and_leaves_nothing(system: SystemHandle) -> None:
    for i in (0, 1):
        wait_ready(system, "worker", i)
    pids = [r["pid"] for r in system.replicas() if r.get("pid")]
    sup = system.state()["supervisor_pid"]  # type: ignore[index]
    system.stop()
    assert not any(rig_procs.alive(p) for p in [*pids, sup])
    assert "graceful-worker-0" in marks(system) and "graceful-worker-1" in marks(system)


def test_supervisor_sigkilled_then_down_stops_replicas_by_pid(system: SystemHandle) -> None:
    st = system.state()
    assert st is not None
    pids = [r["pid"] for r in st["replicas"] if r.get("pid") and r["service"] == "worker"]
    os.kill(st["supervisor_pid"], signal.SIGKILL)
    rig_procs.wait_gone([st["supervisor_pid"]], timeout=5)
    assert all(rig_procs.alive(p) for p in pids), "replicas outlive their supervisor"
    system.stop()
    assert not any(rig_procs.alive(p) for p in pids)


def test_bad_specs_say_what_is_wrong(tmp_path: Path) -> None:
    cases = {
        '[[service]]\nname = "Bad Name"\nargv = ["x"]\n': "name must be lowercase",
        '[[service]]\nname = "a"\nargv = []\n': "argv must be a non-empty list",
        '[[service]]\nname = "a"\nargv = ["x"]\nreplicas = -1\n': "replicas must be an integer >= 0",
        '[[service]]\nname = "a"\nargv = ["x"]\ncolour = 1\n': "unknown key(s) ['colour']",
        '[[service]]\nname = "a"\nargv = ["x"]\n[[service]]\nname = "a"\nargv = ["y"]\n': "names must be unique",
        "[[service]\n": "Expected",
    }
    for text, msg in cases.items():
        p = tmp_path / "s.toml"
        p.write_text(text)
        with pytest.raises(SupervisorError) as info:
            load_spec(p)
        assert msg in str(info.value) and str(p) in str(info.value)
