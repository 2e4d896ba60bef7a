"""Pure parts of the rig: the port layout, the state file, run-dir checks, error messages."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.cli import _junit_totals
from rig.cluster import ClusterSpec, LocalCluster, RabbitMQNotInstalled, RunDirUnusable
from rig.cluster import state as cluster_state
from rig.cluster._local import _bytes

ROOT = Path(__file__).resolve().parents[3]


@given(base=st.integers(2000, 40000), block=st.integers(1, 254), nodes=st.integers(1, 9))
def test_layout_never_reuses_a_port_or_address(base: int, block: int, nodes: int) -> None:
    spec = ClusterSpec(port_base=base, address_block=block, nodes=nodes, run_dir=Path("/tmp/x"))
    ports = [p for n in spec.all_nodes() for p in (n.amqp_port, n.mgmt_port, n.prometheus_port, n.dist_port)]
    assert len(ports) == len(set(ports))
    assert spec.epmd_port not in ports
    assert len({n.host for n in spec.all_nodes()}) == nodes
    assert all(n.host.startswith(f"127.0.{block}.") for n in spec.all_nodes())


def test_env_overrides_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRILL_CLUSTER_PORT_BASE", "6100")
    monkeypatch.setenv("DRILL_CLUSTER_NODES", "5")
    spec = ClusterSpec()
    assert spec.port_base == 6100 and spec.nodes == 5 and spec.node(5).amqp_port == 6105


def test_state_round_trip_and_mode(tmp_path: Path) -> None:
    st = cluster_state.ClusterState(
        provider="local",
        run_dir=str(tmp_path),
        cluster_name="c",
        admin_user="a",
        admin_password="secret",
        nodes=[
            cluster_state.NodeState(1, "rabbit1@127.0.1.1", "127.0.1.1", 5701, 15701, 15751, 25701, 10, 11)
        ],
        epmd_pid=9,
    )
    cluster_state.save(tmp_path, st)
    assert oct(os.stat(tmp_path / "state.json").st_mode & 0o777) == "0o600"  # it holds a password
    back = cluster_state.load(tmp_path)
    assert back == st
    assert sorted(back.owned_pids()) == [9, 10, 11]


def test_run_dir_under_a_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirUnusable, match="--run-dir"):
        LocalCluster(ClusterSpec(run_dir=blocker / "rig", nodes=1)).start()


def test_foreign_non_empty_dir_is_not_wiped(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(RunDirUnusable, match="not made by the drill"):
        LocalCluster(ClusterSpec(run_dir=tmp_path, nodes=1)).start()
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_missing_rabbitmq_names_the_package(tmp_path: Path) -> None:
    spec = ClusterSpec(run_dir=tmp_path / "rig", rabbitmq_bin=tmp_path / "none")
    with pytest.raises(RabbitMQNotInstalled, match="apt-get install -y rabbitmq-server"):
        LocalCluster(spec).start()


@pytest.mark.parametrize(("text", "value"), [("1GiB", 1024**3), ("50MB", 50_000_000), ("4096", 4096)])
def test_sizes(text: str, value: int) -> None:
    assert _bytes(text) == value


def test_junit_totals(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="1" skipped="1"/></testsuites>'
    )
    assert _junit_totals([tmp_path / "a.xml", tmp_path / "missing.xml"]) == (2, 2, 1)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_bootstrap_as_non_root_with_a_missing_package_says_what_to_install(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            str(ROOT / "drill"),
            # a command that needs the broker (`--help` installs nothing: tests/unit/harness/test_bootstrap.py)
            "cluster",
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ["PATH"], "DRILL_RABBITMQ_BIN": str(tmp_path / "none")},
    )
    assert res.returncode == 1
    assert res.stderr.strip() == (
        "drill: error: rabbitmq-server is not installed; install it with: sudo apt-get install -y rabbitmq-server"
    )


def test_second_bootstrap_run_installs_nothing() -> None:
    res = subprocess.run(
        [str(ROOT / "drill"), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0
    assert "Usage: drill" in res.stdout
    # ./drill itself may have just been set up by whoever runs this test; a second call must be quiet
    res2 = subprocess.run(
        [str(ROOT / "drill"), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert "installing" not in res2.stderr and "creating" not in res2.stderr
