"""The run's own services spec: free ports, replica overrides, env for all, a broken switch for one."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.drill.services import build_services, default_ready
from rig.supervisor import ServiceSpec, load_spec

SPECS = [
    ServiceSpec(
        "intake", ["{python}", "-m", "system.intake"], 2, {"DRILL_INTAKE_PORT": "{port:8080+replica}"}
    ),
    ServiceSpec("intake-relay", ["{python}", "-m", "system.intake", "relay"], 1, {"DRILL_SERVICE": "intake"}),
    ServiceSpec("quoting", ["{python}", "-m", "system.quoting"], 2),
    ServiceSpec("notifications", ["{python}", "-m", "system.notifications"], 2),
]


def _bases() -> tuple[list[int], object]:
    asked: list[int] = []

    def free_base(count: int) -> int:
        asked.append(count)
        return 31000 + 100 * len(asked)

    return asked, free_base


def test_ports_replicas_env_and_the_broken_switch(tmp_path: Path) -> None:
    asked, free_base = _bases()
    run = build_services(
        SPECS,
        replicas={"quoting": 3},
        env={"DRILL_PLATFORM_SECRETS": "/run/secrets/platform.json", "DRILL_MSG_RECONNECT_MAX_S": "1.0"},
        broken={"notifications": {"DRILL_NOTIFICATIONS_TEST_ACK_BEFORE_COMMIT": "1"}},
        ready={},
        free_base=free_base,  # type: ignore[arg-type]
    )
    assert asked == [2 + 2]  # intake's replicas plus headroom, once
    by = {s.name: s for s in run.specs}
    assert by["intake"].env["DRILL_INTAKE_PORT"] == "{port:31100+replica}"
    assert run.http_ports == {"intake": [31100, 31101]}
    assert run.replicas() == {"intake": 2, "intake-relay": 1, "quoting": 3, "notifications": 2}
    assert all(s.env["DRILL_MSG_RECONNECT_MAX_S"] == "1.0" for s in run.specs)
    assert by["notifications"].env["DRILL_NOTIFICATIONS_TEST_ACK_BEFORE_COMMIT"] == "1"
    assert not any(
        "DRILL_NOTIFICATIONS_TEST_ACK_BEFORE_COMMIT" in s.env for s in run.specs if s.name != "notifications"
    )
    assert by["intake-relay"].env["DRILL_SERVICE"] == "intake"
    assert run.ready == {
        "intake": "http",
        "intake-relay": "marker",
        "quoting": "marker",
        "notifications": "marker",
    }
    # The supervisor names each replica's marker after the spec (DRILL_READY_FILE), whatever DRILL_SERVICE says.
    assert run.marker_names["intake-relay"] == "intake-relay" and run.marker_names["quoting"] == "quoting"
    # What is written is what the supervisor reads back.
    path = tmp_path / "services.toml"
    path.write_text(run.to_toml())
    assert load_spec(path) == run.specs


def test_the_scenario_env_wins_over_the_spec_and_the_broken_switch_over_both() -> None:
    _, free_base = _bases()
    spec = [ServiceSpec("svc", ["x"], 1, {"A": "spec", "B": "spec"})]
    run = build_services(
        spec, replicas={}, env={"A": "drill", "B": "drill"}, broken={"svc": {"B": "broken"}}, ready={},
        free_base=free_base,  # type: ignore[arg-type]
    )  # fmt: skip
    assert run.specs[0].env == {"A": "drill", "B": "broken"}


def test_ready_overrides_and_their_limits() -> None:
    _, free_base = _bases()
    run = build_services(
        SPECS, replicas={}, env={}, broken={}, ready={"intake-relay": "running"}, free_base=free_base
    )  # type: ignore[arg-type]
    assert run.ready["intake-relay"] == "running"
    with pytest.raises(ValueError, match="needs a \\{port:BASE\\+replica\\}"):
        build_services(SPECS, replicas={}, env={}, broken={}, ready={"quoting": "http"}, free_base=free_base)  # type: ignore[arg-type]
    assert default_ready(SPECS[0]) == "http" and default_ready(SPECS[2]) == "marker"


def test_values_that_need_quoting_survive_the_round_trip(tmp_path: Path) -> None:
    _, free_base = _bases()
    spec = [ServiceSpec("svc", ["a b", 'say "hi"', "back\\slash", "é"], 0, {"K": 'v "q"\n'})]
    run = build_services(spec, replicas={}, env={}, broken={}, ready={}, free_base=free_base)  # type: ignore[arg-type]
    path = tmp_path / "s.toml"
    path.write_text(run.to_toml())
    assert load_spec(path) == run.specs
