"""Benches find the brokers the way every other command finds the rig: ``DRILL_MSG_AMQP_URLS`` when
set, else the rig's state file; with neither, one line saying what to run or set. No broker: the state
files are written by hand, a "running" local rig's PID is this test's own, and the benches themselves
are replaced by recorders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import harness.cli
import system.messaging.bench
from rig.cluster import AMQP_URLS_ENV, NoBrokerFound, broker_urls
from rig.cluster import state as cluster_state

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(AMQP_URLS_ENV, raising=False)
    monkeypatch.setenv("DRILL_ROOT", str(tmp_path / "root"))  # no rig of the user's


def local_rig(run_dir: Path, *, alive: bool) -> None:
    """A state file as `./drill cluster up` writes it; ``alive``: its VM PID is a live process."""
    pid = os.getpid() if alive else None
    nodes = [
        cluster_state.NodeState(n, f"rabbit{n}@127.0.9.{n}", f"127.0.9.{n}", 5900 + n, 15900 + n, 15950 + n,
                                25900 + n, None, pid)
        for n in (1, 2, 3)
    ]  # fmt: skip
    st = cluster_state.ClusterState(
        provider="local", run_dir=str(run_dir), cluster_name="c", admin_user="drill-admin",
        admin_password="s3cret", nodes=nodes, port_base=5900, address_block=9,
    )  # fmt: skip
    cluster_state.save(run_dir, st)


def external_rig(run_dir: Path) -> None:
    st = cluster_state.ClusterState(
        provider="external", run_dir=str(run_dir), cluster_name="x", admin_user="u", admin_password="p",
        amqp_urls_external=["amqp://u:p@203.0.113.1:5672/", "amqp://u:p@203.0.113.2:5672/"],
        management_urls_external=["http://203.0.113.1:15672", "http://203.0.113.2:15672"],
    )  # fmt: skip
    cluster_state.save(run_dir, st)


def test_a_running_local_rig_gives_its_nodes_with_the_admin(tmp_path: Path) -> None:
    local_rig(tmp_path, alive=True)
    found = broker_urls(tmp_path)
    assert found.urls == [f"amqp://drill-admin:s3cret@127.0.9.{n}:{5900 + n}/" for n in (1, 2, 3)]
    assert str(tmp_path) in found.source


def test_an_external_rig_gives_its_urls(tmp_path: Path) -> None:
    external_rig(tmp_path)
    assert broker_urls(tmp_path).urls == ["amqp://u:p@203.0.113.1:5672/", "amqp://u:p@203.0.113.2:5672/"]


def test_the_env_var_wins_over_the_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local_rig(tmp_path, alive=True)
    monkeypatch.setenv(AMQP_URLS_ENV, "amqp://a:b@10.0.0.1:5672/, amqp://a:b@10.0.0.2:5672/")
    found = broker_urls(tmp_path)
    assert found.urls == ["amqp://a:b@10.0.0.1:5672/", "amqp://a:b@10.0.0.2:5672/"]
    assert found.source == AMQP_URLS_ENV


def test_no_rig_says_what_to_run_or_set(tmp_path: Path) -> None:
    with pytest.raises(NoBrokerFound) as exc:
        broker_urls(tmp_path / "nothing")
    msg = str(exc.value)
    assert "\n" not in msg
    assert "run `./drill cluster up` first, or set DRILL_MSG_AMQP_URLS=amqp://" in msg


def test_a_rig_whose_processes_are_gone_is_not_used(tmp_path: Path) -> None:
    local_rig(tmp_path, alive=False)
    with pytest.raises(
        NoBrokerFound, match=r"is not running \(its processes are gone\): run `./drill cluster up`"
    ):
        broker_urls(tmp_path)


def test_bench_messaging_uses_the_running_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(system.messaging.bench, "run_bench", lambda **kw: calls.append(kw))
    local_rig(tmp_path, alive=True)
    result = runner.invoke(
        harness.cli.app, ["bench", "messaging", "--count", "10", "--run-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    [call] = calls
    assert call["count"] == 10
    assert call["settings"].amqp_urls == broker_urls(tmp_path).urls
    assert f"brokers: the rig in {tmp_path}" in result.output


def test_bench_messaging_without_a_rig_is_one_line_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(system.messaging.bench, "run_bench", lambda **kw: pytest.fail("the bench ran"))
    result = runner.invoke(harness.cli.app, ["bench", "messaging", "--run-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: no running rig") and "./drill cluster up" in lines[0]
    assert "DRILL_MSG_AMQP_URLS=" in lines[0]


def test_bench_proxy_adds_the_rig_s_amqp_figure_or_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(harness.cli, "bench_proxy_command", lambda **kw: calls.append(kw))
    args = ["bench", "proxy", "--rounds", "1", "--run-dir"]
    assert runner.invoke(harness.cli.app, [*args, str(tmp_path / "none")]).exit_code == 0
    assert calls[-1]["amqp_url"] is None
    local_rig(tmp_path, alive=True)
    assert runner.invoke(harness.cli.app, [*args, str(tmp_path)]).exit_code == 0
    assert calls[-1]["amqp_url"] == "amqp://drill-admin:s3cret@127.0.9.1:5901/"
    assert calls[-1]["rounds"] == 1
