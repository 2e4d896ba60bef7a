"""A deliberately broken release is caught: ``drill run broken-notifications`` (the whole platform, the
simulator, notifications acking each state change before committing it, both of its replicas SIGKILLed
mid-flight) exits non-zero and its report names the loss.

This is the drill's reason to exist, so it runs the real scenario file against the session's cluster;
only the traffic is shortened (the kills happen in the first 25 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rig import procs
from rig.cluster import LocalCluster

pytestmark = pytest.mark.timeout(420)

ROOT = Path(__file__).resolve().parents[3]


def test_notifications_acking_before_commit_is_caught_and_named(
    local_cluster: LocalCluster, vhost: str, tmp_path: Path
) -> None:
    scenarios = ROOT / "scenarios"
    text = (scenarios / "broken-notifications.toml").read_text()
    assert "DRILL_NOTIFICATIONS_TEST_ACK_BEFORE_COMMIT" in text
    # The copy in tmp_path still finds its experiment and traffic by name (in scenarios/).
    text = text.replace('duration = "35s"', 'duration = "30s"')
    scenario = tmp_path / "broken-notifications.toml"
    scenario.write_text(text)
    runs = tmp_path / "runs"
    argv = [
        sys.executable, "-m", "harness", "run", str(scenario),
        "--cluster-dir", str(local_cluster.spec.run_dir), "--vhost", vhost, "--runs-dir", str(runs),
    ]  # fmt: skip
    proc = subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), timeout=400, check=False
    )
    out = proc.stdout + proc.stderr
    print(out[-5000:])
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    report = json.loads((run / "report.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    # The run itself worked: every phase ran and all four kills were applied and undone.
    assert checks["drill[completed]"]["status"] == "passed", checks["drill[completed]"]
    assert checks["drill[chaos]"]["counts"]["applied"] == 4, checks["drill[chaos]"]
    # ... and the broken release was caught: exit 1, the verdict FAIL, the loss named order by order.
    assert proc.returncode == 1 and report["verdict"] == "FAIL", (proc.returncode, report["verdict"])
    orders = report["flows"]["orders"]
    assert orders["counts"]["lost"] >= 1, orders["counts"]
    terminal = checks["accepted_orders_terminal_or_explained"]
    assert terminal["status"] == "failed", terminal
    assert terminal["counts"]["unexplained"] == orders["counts"]["lost"], (
        terminal["counts"],
        orders["counts"],
    )
    # Named: the lost orders' ids are in the check, and the console's headline says LOST.
    assert set(terminal["samples"]["unexplained"]) <= set(orders["samples"]["lost"]) != set()
    assert "accepted orders were LOST" in out or "accepted order was LOST" in out, out[-2000:]
    # The report's first sentence names the outcome and the loss, whose fault it was, in plain words.
    first = report["headline"][0]
    assert first.startswith("FAIL: the platform broke") and "LOST" in first, first
    doc = json.loads((run / "drill.json").read_text())
    assert doc["left_alive"] == []
    pids = json.loads((run / "pids.json").read_text())
    assert all(not procs.alive(p) for p in [pids["supervisor"], pids["simulator"], *pids["replicas"]])
