"""Which cluster providers can perform each fault, and every path that refuses a fault its provider
cannot perform — naming the fault and the provider, before anything is journaled or applied. No broker:
an external cluster is only a list of URLs until something asks it a question."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import chaos.cli
from chaos.experiment import fault_kinds, parse
from chaos.faults import (
    FAULTS,
    LOCAL_ONLY,
    PROVIDERS,
    Fault,
    UnsupportedFault,
    require_supported,
    unsupported,
)
from chaos.injector import FaultInjector
from chaos.journal import Journal
from chaos.runner import ExperimentRunner
from rig.cluster import Cluster, ExternalCluster
from rig.cluster import state as cluster_state

ROOT = Path(__file__).resolve().parents[3]
KILL_LEADER = ROOT / "scenarios" / "chaos" / "kill-leader.toml"
runner = CliRunner()

EXPERIMENT = """\
[experiment]
title = "t"

[[method]]
fault = "close_connections"

[[method]]
fault = "kill_node"
target = "2"

[monkey]
count = 2
kinds = ["pause_node", "memory_alarm"]
"""


def external() -> ExternalCluster:
    return ExternalCluster(
        ["amqp://u:p@203.0.113.1:5672/"], ["http://203.0.113.1:15672"], allow_external=True
    )


def test_providers_are_the_rig_s() -> None:
    assert PROVIDERS == ("local", "external", "testcontainers")


@pytest.mark.parametrize(
    "kind",
    [k for k in FAULTS if k.startswith("link_")]
    + [
        "partition",
        "kill_node",
        "stop_node",
        "restart_node",
        "pause_node",
        "full_outage",
        "rolling_restart",
        "memory_alarm",
        "disk_alarm",
        "move_leader",
    ],
)
def test_process_partition_and_link_faults_are_local_only(kind: str) -> None:
    assert FAULTS[kind].providers == LOCAL_ONLY == ("local",)


@pytest.mark.parametrize(
    "kind",
    ["close_connections", "kill_replica", "restart_replica", "pause_replica", "crash_loop", "stop_service"],
)
def test_management_api_and_service_faults_run_on_every_provider(kind: str) -> None:
    assert FAULTS[kind].providers == PROVIDERS


def test_every_fault_declares_known_providers_and_a_new_one_defaults_to_local() -> None:
    for cls in FAULTS.values():
        assert cls.providers and set(cls.providers) <= set(PROVIDERS), cls.kind

    class Custom(Fault):  # no `kind`: not registered in the catalogue
        def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
            return {}

    assert Custom.providers == ("local",)


def test_unsupported_names_each_fault_and_the_provider_once() -> None:
    assert unsupported(["kill_node", "close_connections", "kill_node", "partition"], "external") == [
        "fault kill_node cannot run on the external provider: it needs local",
        "fault partition cannot run on the external provider: it needs local",
    ]
    assert unsupported(["kill_node", "partition"], "local") == []
    assert unsupported(["no_such_fault"], "external") == []  # unknown kinds are the parser's to reject
    with pytest.raises(UnsupportedFault, match="fault kill_node cannot run on the testcontainers provider"):
        require_supported(["kill_node"], "testcontainers")


def test_an_experiment_s_kinds_include_its_monkey_s_whole_pool() -> None:
    assert fault_kinds(parse(EXPERIMENT)) == ["close_connections", "kill_node", "pause_node", "memory_alarm"]


def test_the_injector_refuses_before_journaling(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    inj = FaultInjector(external(), journal, allow_external=True)
    with pytest.raises(UnsupportedFault, match="fault kill_node cannot run on the external provider"):
        inj.inject(FAULTS["kill_node"]("1"))
    assert not (tmp_path / "journal.jsonl").exists()  # nothing journaled, so nothing to heal


def test_the_experiment_runner_refuses_before_probing(tmp_path: Path) -> None:
    inj = FaultInjector(external(), Journal(tmp_path / "journal.jsonl"), allow_external=True)
    with pytest.raises(UnsupportedFault) as exc:
        ExperimentRunner(parse(EXPERIMENT), inj)
    assert str(exc.value) == (
        "fault kill_node cannot run on the external provider: it needs local; "
        "fault pause_node cannot run on the external provider: it needs local; "
        "fault memory_alarm cannot run on the external provider: it needs local"
    )


def test_chaos_list_shows_the_providers_of_each_fault() -> None:
    result = runner.invoke(chaos.cli.app, ["list"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()}
    assert "providers" in rows["fault"]
    assert rows["close_connections"].split()[1:4] == ["local,", "external,", "testcontainers"]
    assert rows["kill_node"].split()[1] == "local" and "external" not in rows["kill_node"]


def test_dry_run_refuses_on_an_external_provider(tmp_path: Path) -> None:
    result = runner.invoke(chaos.cli.app, ["run", str(KILL_LEADER), "--dry-run", "--provider", "external"])
    assert result.exit_code == 2, result.output
    assert "fault kill_node cannot run on the external provider: it needs local" in result.output
    assert "fault restart_node cannot run on the external provider" in result.output
    assert "experiment:" not in result.output  # refused before the timeline
    ok = runner.invoke(chaos.cli.app, ["run", str(KILL_LEADER), "--dry-run", "--provider", "local"])
    assert ok.exit_code == 0, ok.output
    assert "kill_node most-leaders" in ok.output
    bad = runner.invoke(chaos.cli.app, ["run", str(KILL_LEADER), "--dry-run", "--provider", "docker"])
    assert bad.exit_code == 2 and "unknown provider 'docker'" in bad.output


def test_dry_run_takes_the_provider_from_the_rig_s_state_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "cluster"
    st = cluster_state.ClusterState(
        provider="external", run_dir=str(run_dir), cluster_name="x", admin_user="u", admin_password="p",
        amqp_urls_external=["amqp://u:p@203.0.113.1:5672/"],
        management_urls_external=["http://203.0.113.1:15672"],
    )  # fmt: skip
    cluster_state.save(run_dir, st)
    args = ["run", str(KILL_LEADER), "--dry-run", "--run-dir", str(run_dir)]
    result = runner.invoke(chaos.cli.app, args)
    assert result.exit_code == 2, result.output
    assert "fault kill_node cannot run on the external provider" in result.output
    # No state file: the local rig, which can.
    assert runner.invoke(chaos.cli.app, [*args[:-1], str(tmp_path / "none")]).exit_code == 0
