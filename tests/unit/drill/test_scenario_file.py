"""Drill scenario files: every shipped one loads and dry-runs; each kind of mistake is an error naming the
file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.toml_lines import line_of
from harness.drill.plan import plan_lines
from harness.drill.scenario import DrillScenarioError, load, parse, parse_duration

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted(p.stem for p in (ROOT / "scenarios").glob("*.toml"))

SPEC = """\
[[service]]
name = "intake"
argv = ["{python}", "-m", "system.intake"]
replicas = 2
env = { DRILL_INTAKE_PORT = "{port:8080+replica}" }

[[service]]
name = "quoting"
argv = ["{python}", "-m", "system.quoting"]
replicas = 2
"""

CHAOS = """\
[experiment]
title = "one kill"

[[method]]
fault = "kill_node"
target = "2"
at = 1.0
"""

GOOD = """\
name = "t"
description = "a test drill"
duration = "90s"

[cluster]
nodes = 3

[system]
spec = "services.toml"
replicas = { quoting = 3 }
env = { DRILL_MSG_RECONNECT_MAX_S = 1.0 }

[traffic]
scenario = "steady-fast"
rate = 5.0
seed = 9
linger = "1m"

[traffic.locust]
shape = "doubles"
users = 10

[chaos]
experiment = "chaos.toml"
start = 5

[slo]
availability = 0.99
drain_s = false

[[broken]]
service = "quoting"
env = { DRILL_QUOTING_TEST_BROKEN = "1" }
why = "on purpose"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "services.toml").write_text(SPEC)
    (tmp_path / "chaos.toml").write_text(CHAOS)
    return tmp_path


def _parse(folder: Path, text: str):  # type: ignore[no-untyped-def]
    path = folder / "drill.toml"
    path.write_text(text)
    return parse(text, path, ROOT)


def _error(folder: Path, text: str) -> str:
    with pytest.raises(DrillScenarioError) as exc:
        _parse(folder, text)
    return str(exc.value)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_loads_and_dry_runs(name: str) -> None:
    sc = load(name, ROOT)
    assert sc.name == name
    plan = plan_lines(sc, cluster="start 3 local nodes", run_dir=f"runs/x-{name}", starts_cluster=True)
    text = "\n".join(plan)
    for phase in ("cluster", "provision", "system", "traffic", "heal", "drain", "audit", "stop"):
        assert phase in text, (phase, text)
    if sc.experiment is not None:
        assert "experiment timeline" in text
    assert plan[-1].startswith("duration: about ")


def test_the_shipped_set_is_complete() -> None:
    assert set(SHIPPED) >= {
        "demo", "kill-leader", "partition-halves", "rolling-upgrade", "double-load", "monkey", "soak",
    }  # fmt: skip


def test_the_demo_fits_in_three_minutes_and_breaks_what_it_promises() -> None:
    from chaos.experiment import timeline
    from harness.drill.plan import estimate

    sc = load("demo", ROOT)
    assert estimate(sc, starts_cluster=True).typical <= 180
    assert sc.experiment is not None and sc.uses_link_faults()
    kinds = {pf.fault for pf in timeline(sc.experiment)}
    assert {"kill_node", "kill_replica", "memory_alarm", "full_outage"} <= kinds
    assert any(k.startswith("link_") for k in kinds)
    assert sc.traffic.name == "steady-quick"


def test_a_good_file_resolves_everything_it_names(folder: Path) -> None:
    sc = _parse(folder, GOOD)
    m = sc.model
    assert (m.duration, m.traffic.linger, m.chaos.start) == (90.0, 60.0, 5.0)
    assert m.system.env == {"DRILL_MSG_RECONNECT_MAX_S": "1.0"}
    assert sc.replicas() == {"intake": 2, "quoting": 3}
    assert sc.traffic.name == "steady-fast" and sc.traffic_path.name == "steady-fast.toml"
    assert sc.experiment is not None and sc.experiment_path == folder / "chaos.toml"
    assert sc.slo.availability == 0.99 and sc.slo.drain_s is None
    assert m.traffic.locust is not None and m.traffic.locust.shape == "doubles"
    assert m.broken[0].env == {"DRILL_QUOTING_TEST_BROKEN": "1"}
    assert not sc.uses_link_faults()


def test_defaults_for_a_minimal_file(folder: Path) -> None:
    sc = _parse(folder, 'name = "m"\nduration = 30\n[system]\nspec = "services.toml"\n')
    assert sc.model.cluster.provider == "local" and sc.model.cluster.vhost == "drill"
    assert sc.experiment is None and sc.model.traffic.scenario == "steady-fast"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # not TOML at all
        (("[cluster]\nnodes = 3", "[cluster\nnodes = 3"), "not valid TOML"),
        # an unknown key, top level and in a table
        (('description = "a test drill"', 'descripton = "x"'), "line 2: descripton: unknown key"),
        (("seed = 9", "sed = 9"), "line 16: traffic.sed: unknown key"),
        # an unknown table
        (("[cluster]", "[clustre]"), "line 5: clustre: unknown key"),
        # a wrong type
        (("nodes = 3", 'nodes = "three"'), "line 6: cluster.nodes: Input should be a valid integer"),
        # out of range
        (("nodes = 3", "nodes = 12"), "line 6: cluster.nodes: Input should be less than or equal to 9"),
        # a bad duration
        (('duration = "90s"', 'duration = "ninety"'), "line 3: duration: not a duration: 'ninety'"),
        (('duration = "90s"', "duration = -5"), "line 3: duration: Input should be greater than 0"),
        # a required key missing
        (('name = "t"\n', ""), "name: missing (required)"),
        # a bad name (it becomes part of a directory name)
        (('name = "t"', 'name = "My Drill"'), "line 1: name: String should match pattern"),
        # a key of an inline table, and of a nested table
        (("replicas = { quoting = 3 }", "replicas = { quoting = -1 }"), "line 10: system.replicas.quoting"),
        (
            ("users = 10", "users = 0"),
            "line 21: traffic.locust.users: Input should be greater than or equal to 1",
        ),
        (('shape = "doubles"', 'shape = "double"'), "line 20: traffic.locust.shape: unknown shape 'double'"),
        # an environment variable that is not one
        (("DRILL_MSG_RECONNECT_MAX_S = 1.0", '"BAD NAME" = 1'), "line 11: system.env: 'BAD NAME' is not"),
        # SLO objectives are reports/slo.py's
        (
            ("availability = 0.99", "availabilty = 0.99"),
            "line 28: slo.availabilty: unknown SLO key(s) ['availabilty']",
        ),
        (
            ("availability = 0.99", "availability = 99.9"),
            "line 28: slo.availability: availability is a fraction",
        ),
        # the array of tables
        (('why = "on purpose"', 'why = "on purpose"\nwhen = 3'), "line 35: broken.0.when: unknown key"),
    ],
)
def test_each_kind_of_mistake_names_the_line_and_the_field(
    folder: Path, change: tuple[str, str], expected: str
) -> None:
    assert change[0] in GOOD
    msg = _error(folder, GOOD.replace(change[0], change[1], 1))
    assert msg.startswith(str(folder / "drill.toml")), msg
    assert expected in msg, msg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('scenario = "steady-fast"', 'scenario = "stedy"'),
            "line 14: traffic.scenario: no such file or name 'stedy'",
        ),
        (
            ('experiment = "chaos.toml"', 'experiment = "nope.toml"'),
            "line 24: chaos.experiment: no such file",
        ),
        (
            ('spec = "services.toml"', 'spec = "missing.toml"'),
            "line 9: system.spec: no such file 'missing.toml'",
        ),
        (
            ("replicas = { quoting = 3 }", "replicas = { quoteing = 3 }"),
            "line 10: system.replicas.quoteing: no service 'quoteing'",
        ),
        (('service = "quoting"', 'service = "notify"'), "line 32: broken.0.service: no service 'notify'"),
    ],
)
def test_a_reference_to_something_that_is_not_there_names_it(
    folder: Path, change: tuple[str, str], expected: str
) -> None:
    msg = _error(folder, GOOD.replace(change[0], change[1], 1))
    assert expected in msg, msg


def test_a_broken_chaos_experiment_or_traffic_scenario_says_what_is_wrong_inside(folder: Path) -> None:
    (folder / "chaos.toml").write_text(CHAOS.replace("kill_node", "kill_nod"))
    msg = _error(folder, GOOD)
    assert "line 24: chaos.experiment:" in msg and "unknown fault 'kill_nod'" in msg, msg
    (folder / "traffic.toml").write_text('name = "x"\n[arrivals]\nrate = -1\n')
    msg = _error(folder, GOOD.replace('scenario = "steady-fast"', 'scenario = "traffic.toml"'))
    assert "traffic.scenario" in msg and "arrivals.rate" in msg, msg


def test_external_clusters_need_their_urls(folder: Path) -> None:
    msg = _error(folder, GOOD.replace("nodes = 3", 'nodes = 3\nprovider = "external"'))
    assert "line 5: cluster: provider external needs amqp_urls and management_urls" in msg, msg
    msg = _error(folder, GOOD.replace("nodes = 3", 'amqp_urls = ["amqp://x"]'))
    assert "for provider = 'external' only" in msg, msg


EXTERNAL = 'nodes = 1\nprovider = "external"\namqp_urls = ["amqp://u:p@203.0.113.1:5672/"]\nmanagement_urls = ["http://203.0.113.1:15672"]'


def test_a_fault_the_provider_cannot_perform_is_refused_with_its_name(folder: Path) -> None:
    msg = _error(folder, GOOD.replace("nodes = 3", EXTERNAL))
    assert "chaos.experiment:" in msg and "chaos.toml" in msg, msg
    assert "fault kill_node cannot run on the external provider: it needs local" in msg, msg
    # Through the management API it can: the same drill with close_connections loads and plans.
    (folder / "chaos.toml").write_text(
        CHAOS.replace('fault = "kill_node"\ntarget = "2"', 'fault = "close_connections"')
    )
    sc = _parse(folder, GOOD.replace("nodes = 3", EXTERNAL))
    assert sc.model.cluster.provider == "external"
    assert any(
        "close_connections" in line
        for line in plan_lines(sc, cluster="external", run_dir="r", starts_cluster=False)
    )


def test_chaos_none_means_no_experiment(folder: Path) -> None:
    sc = _parse(folder, GOOD.replace('experiment = "chaos.toml"', 'experiment = "none"'))
    assert sc.experiment is None and sc.experiment_path is None


def test_scenarios_are_found_by_name_or_path(folder: Path) -> None:
    with pytest.raises(DrillScenarioError, match="no scenario of that name"):
        load("no-such-drill", ROOT)
    (folder / "drill.toml").write_text(GOOD)
    assert load(folder / "drill.toml", ROOT).name == "t"


def test_durations() -> None:
    assert [parse_duration(x) for x in ("90s", "2m", "1.5h", "250ms", "7")] == [
        90.0,
        120.0,
        5400.0,
        0.25,
        7.0,
    ]
    assert parse_duration(3) == 3.0
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_line_of_finds_tables_arrays_and_inline_keys() -> None:
    text = "a = 1\n[t]\nx = { y = 2 }\n[t.u]\nz = 3\n[[arr]]\nk = 1\n[[arr]]\nk = 2\n"
    assert line_of(text, ("a",)) == 1
    assert line_of(text, ("t", "x", "y")) == 3
    assert line_of(text, ("t", "u", "z")) == 5
    assert line_of(text, ("arr", 1, "k")) == 9
    assert line_of(text, ("arr", 5, "k")) is None
    assert line_of(text, ("t", "missing")) == 2
    assert line_of(text, ("nowhere",)) is None


def test_the_broker_is_a_key_of_the_cluster_table_and_the_cli_overrides_it(folder: Path) -> None:
    from harness.drill.scenario import with_broker

    assert _parse(folder, GOOD).model.cluster.broker == "system"
    sc = _parse(folder, GOOD.replace("nodes = 3", 'nodes = 3\nbroker = "4.0"'))
    assert sc.model.cluster.broker == "4.0"
    assert with_broker(sc, None) is sc
    assert with_broker(sc, "3.10").model.cluster.broker == "3.10"
    assert with_broker(sc, "3.10").model.cluster.nodes == sc.model.cluster.nodes
    msg = _error(folder, GOOD.replace("nodes = 3", 'nodes = 3\nbroker = "4"'))
    assert "cluster.broker" in msg and "unknown broker '4'" in msg, msg
    msg = _error(folder, GOOD.replace("nodes = 3", EXTERNAL + '\nbroker = "4.0"'))
    assert "broker is for provider = 'local' only" in msg, msg
