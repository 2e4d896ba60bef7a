"""``drill system``: the platform's services spec, the replica environment, provisioning only on a
running rig, and the status's per-service "up" and "ready" (ready markers) — no broker needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.system_cli import DEFAULT_SPEC, app, provision_step
from rig.cluster import state as cluster_state
from rig.supervisor import ServiceSpec, SystemHandle, load_spec, replica_env

PLATFORM = {
    "intake": 2,
    "intake-relay": 1,
    "quoting": 2,
    "dispatch": 2,
    "gateway": 2,
    "tracking": 2,
    "notifications": 2,
}


def test_the_platform_spec_lists_every_service_with_its_replicas() -> None:
    specs = {s.name: s for s in load_spec(DEFAULT_SPEC)}
    assert {n: s.replicas for n, s in specs.items()} == PLATFORM
    for name in ("quoting", "dispatch", "gateway", "tracking", "notifications"):
        assert specs[name].argv == ["{python}", "-m", f"system.{name}"]
    assert specs["intake-relay"].argv[-3:] == ["-m", "system.intake", "relay"]
    # the relay is the intake service for the broker (its user) and the DB
    assert specs["intake-relay"].env["DRILL_SERVICE"] == "intake"


def test_replica_env_lets_the_spec_name_the_service_but_not_the_replica(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "DRILL_SERVICE": "outer", "DRILL_REPLICA": "9"}
    relay = ServiceSpec("intake-relay", ["x"], 1, {"DRILL_SERVICE": "intake", "DRILL_REPLICA": "7"})
    env = replica_env(relay, 0, tmp_path, base)
    assert (env["DRILL_SERVICE"], env["DRILL_REPLICA"], env["DRILL_RUN_DIR"]) == (
        "intake",
        "0",
        str(tmp_path),
    )
    # The ready marker is named after the spec, not DRILL_SERVICE: the relay and intake#0 never share one.
    assert env["DRILL_READY_FILE"] == str(tmp_path / "ready" / "intake-relay.0")
    plain = ServiceSpec("quoting", ["x"], 2, {"PORT": "{port:8080+replica}"})
    env = replica_env(plain, 1, tmp_path, base)
    assert (env["DRILL_SERVICE"], env["DRILL_REPLICA"], env["PORT"], env["PATH"]) == (
        "quoting",
        "1",
        "8081",
        "/bin",
    )


def test_no_rig_no_provisioning(tmp_path: Path) -> None:
    step = provision_step(tmp_path / "cluster", tmp_path / "system", "drill")
    assert step.env == {} and "no broker rig recorded" in step.message
    state = cluster_state.ClusterState(
        provider="local",
        run_dir=str(tmp_path / "cluster"),
        cluster_name="drill",
        admin_user="admin",
        admin_password="pw",
        nodes=[cluster_state.NodeState(1, "rabbit-1", "127.0.9.1", 1, 2, 3, 4, beam_pid=None)],
    )
    cluster_state.save(tmp_path / "cluster", state)
    step = provision_step(tmp_path / "cluster", tmp_path / "system", "drill")
    assert step.env == {} and "no node of the rig" in step.message
    assert not (tmp_path / "system" / "secrets").exists()


@pytest.fixture
def sleepers() -> Iterator[list[int]]:
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(3)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_status_counts_replicas_up_and_ready(tmp_path: Path, sleepers: list[int]) -> None:
    a, b, relay = sleepers
    ready = tmp_path / "ready"
    ready.mkdir()
    (ready / "notifications.0").write_text(str(a))  # its own marker
    (ready / "notifications.1").write_text("999999")  # a killed predecessor's leftover
    (ready / "intake.0").write_text(str(relay))  # the relay runs as "intake"

    def rep(service: str, index: int, pid: int | None, state: str = "running") -> dict[str, object]:
        return {
            "service": service,
            "index": index,
            "pid": pid,
            "state": state,
            "restarts": 0,
            "last_exit": None,
        }

    replicas = [
        rep("intake", 0, None, "backoff"),
        rep("intake-relay", 0, relay),
        rep("notifications", 0, a),
        rep("notifications", 1, b),
    ]
    (tmp_path / "system.json").write_text(
        json.dumps({"supervisor_pid": 0, "updated_at": time.time(), "replicas": replicas})
    )
    handle = SystemHandle(tmp_path)
    assert [handle.is_ready(r) for r in replicas] == [False, True, True, False]
    result = CliRunner().invoke(app, ["status", "--run-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
        for line in result.output.splitlines()
        if line.count("│") == 4
    }
    assert rows == {"intake": ["0/1", "0/1"], "intake-relay": ["1/1", "1/1"], "notifications": ["2/2", "1/2"]}
    assert os.getpid() not in sleepers
