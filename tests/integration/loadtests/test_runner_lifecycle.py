"""run_locust stops exactly the processes it started: past its deadline, and on Ctrl-C of the caller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_intake import INTAKE, FakeIntake

from loadtests.runner import run_locust

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait_for(predicate: Callable[[], bool], deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")


def test_deadline_stops_the_run(intake: FakeIntake, retailers_file: Path, tmp_path: Path) -> None:
    """A run longer than its deadline is stopped with SIGTERM and still reports what it measured.

    (Single process: a master waiting for workers can take longer than the deadline to start on a busy
    machine, and a Locust killed before it installed its SIGTERM handler reports nothing.)
    """
    t0 = time.monotonic()
    result = run_locust(
        INTAKE,
        intake.url,
        tmp_path / "run",
        users=4,
        spawn_rate=4,
        duration=120,
        deadline_s=7,
        env={"DRILL_RETAILERS": str(retailers_file), "DRILL_USER_RPS": "10"},
    )
    elapsed = time.monotonic() - t0
    assert elapsed < 30, f"took {elapsed:.1f} s for a 7 s deadline"
    assert len(result.pids) == 1 and not _alive(result.pids[0])
    # SIGTERM lets Locust stop cleanly: its final stats and the ledger are still there.
    assert result.requests > 0 and result.ledger_records > 0


def test_ctrl_c_of_the_caller_stops_locust(intake: FakeIntake, retailers_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = (
        # The drill's entry point makes SIGINT raise whatever it inherited; so does this stand-in caller.
        "from rig.procs import stoppable_by_sigint\n"
        "stoppable_by_sigint()\n"
        "from loadtests.runner import run_locust\n"
        f"run_locust({str(INTAKE)!r}, {intake.url!r}, {str(run)!r}, users=3, spawn_rate=3, duration=120,"
        " workers=1, env={'DRILL_USER_RPS': '5', 'DRILL_RETAILERS': " + repr(str(retailers_file)) + "})\n"
    )
    caller = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        pids_file = run / "locust" / "pids.json"
        _wait_for(lambda: pids_file.exists() and len(json.loads(pids_file.read_text())) == 2, 30, "pids.json")
        _wait_for(lambda: intake.requests > 0, 30, "the first requests")
        pids = json.loads(pids_file.read_text())
        assert all(_alive(p) for p in pids)
        caller.send_signal(signal.SIGINT)  # what Ctrl-C in the drill's terminal delivers
        caller.wait(timeout=40)
        assert caller.returncode != 0  # KeyboardInterrupt propagates after the cleanup
        assert b"KeyboardInterrupt" in (caller.stderr.read() if caller.stderr else b"")
        assert not [p for p in pids if _alive(p)], "Locust processes survived the caller's Ctrl-C"
        # The ledger parts of the interrupted run are merged all the same.
        assert (run / "locust" / "ledger.jsonl").stat().st_size > 0
        assert not list((run / "locust").glob("ledger-*.jsonl"))
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
        for pid in json.loads(pids_file.read_text()) if pids_file.exists() else []:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)  # only ours: the PIDs run_locust recorded
