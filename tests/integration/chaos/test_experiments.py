"""Experiments against the live rig: parallel and sequential faults, conditions, rollbacks, verdicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chaos.experiment import parse
from chaos.injector import FaultInjector
from chaos.journal import Journal
from chaos.runner import ExperimentRunner
from rig.cluster import LocalCluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]

EXPERIMENT = """\
[experiment]
title = "overlap and sequence"
seed = 5

[[steady_state]]
probe = "nodes_up"
min = 3

[[steady_state]]
probe = "no_alarms"

[[method]]
fault = "pause_node"
target = "2"
at = 0.5
duration = 2

[[method]]
fault = "memory_alarm"
at = 0.5
duration = 2

[[method]]
fault = "kill_node"
target = "3"
after = "previous"
duration = 1

[[method]]
fault = "close_connections"
when = { probe = "queue_depth_below", max = 1000000, timeout = 30 }
"""


def test_an_experiment_runs_overlaps_sequences_and_recovers(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    runner = ExperimentRunner(parse(EXPERIMENT), FaultInjector(local_cluster, journal))
    res = runner.run()
    assert all(p.ok for p in res.steady_before)
    assert [f.error for f in res.faults] == [None] * 4, res.faults
    assert all(f.fault_id and f.applied_at and f.undone_at for f in res.faults), res.faults
    pause, alarm, kill, _close = res.faults
    assert pause.started_at and alarm.started_at and pause.undone_at and alarm.undone_at and kill.applied_at
    # the first two ran at once (both began before either was undone: applying the alarm with a node
    # frozen can take seconds); the third waited for the second to be undone
    assert max(pause.started_at, alarm.started_at) < min(pause.undone_at, alarm.undone_at)
    assert abs(pause.started_at - alarm.started_at) < 1.0
    assert kill.applied_at >= alarm.undone_at
    assert not res.deviated and res.recovery_seconds is not None
    assert journal.open_faults() == []
    assert all(local_cluster.node_state(n) == "up" for n in local_cluster.node_indices)


def test_a_steady_state_that_does_not_hold_is_a_deviation_and_exit_1(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    exp = tmp_path / "bad.toml"
    exp.write_text(EXPERIMENT.replace("min = 3", "min = 4"))
    res = subprocess.run(
        [sys.executable, "-m", "harness", "chaos", "run", str(exp), "--run-dir", str(local_cluster.spec.run_dir),
         "--journal", str(tmp_path / "j.jsonl"), "--result", str(tmp_path / "result.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr
    assert "DEVIATED nodes_up: 3 node(s) up, tolerance >= 4" in res.stdout
    assert "method not run" in res.stdout
    assert Journal(tmp_path / "j.jsonl").records() == []  # no fault was applied


def test_a_malformed_experiment_exits_2_naming_line_and_field(tmp_path: Path) -> None:
    exp = tmp_path / "broken.toml"
    exp.write_text(EXPERIMENT.replace('target = "3"', "target = 3"))
    res = subprocess.run(
        [sys.executable, "-m", "harness", "chaos", "run", str(exp), "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 2
    assert f"{exp}: line 25: method.2.target: Input should be a valid string" in res.stderr
