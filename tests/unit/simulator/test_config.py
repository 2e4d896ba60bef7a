"""Scenario files: the bundled ones load; bad ones name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.config import ScenarioError, load_scenario, parse_scenario, scenarios_dir


@pytest.mark.parametrize(
    "name", ["steady", "steady-fast", "daily", "doubles", "flash-sale", "courier-outage"]
)
def test_bundled_scenarios_load(name: str) -> None:
    sc = load_scenario(name)
    assert sc.name == name and sc.arrivals.rate > 0


def test_every_file_in_the_folder_is_valid() -> None:
    files = sorted(scenarios_dir().glob("*.toml"))
    assert len(files) >= 5
    for f in files:
        load_scenario(f)


@pytest.mark.parametrize(
    ("text", "field", "msg"),
    [
        ("[arrivals]\nrate = 5.0\nrtae = 1\n", "arrivals.rtae", "unknown key"),
        ("[arrivals]\nrate = 5.0\n[wolrd]\n", "wolrd", "unknown key"),
        ('[arrivals]\nrate = "fast"\n', "arrivals.rate", "valid number"),
        ("[arrivals]\nrate = -5.0\n", "arrivals.rate", "greater than 0"),
        ("[arrivals]\nrate = 0\n", "arrivals.rate", "greater than 0"),
        ("[clock]\nmode = 'rate'\n", "arrivals", "Field required"),
        (
            "[arrivals]\nrate = 1.0\nsteps = [{at = -1.0, factor = 2.0}]\n",
            "arrivals.steps.0.at",
            "greater than or equal",
        ),
        (
            "[arrivals]\nrate = 1.0\n[clock]\nmode = 'rate'\ncompression = 10.0\n",
            "clock",
            "compression must be 1.0",
        ),
        (
            "[arrivals]\nrate = 1.0\n[[outages]]\ncourier = 'nobody'\nat = 1.0\nduration = 2.0\n",
            "",
            "unknown courier",
        ),
        (
            "[arrivals]\nrate = 1.0\n[webhooks]\nduplicate_share = 1.5\n",
            "webhooks.duplicate_share",
            "less than or equal",
        ),
        ("[arrivals]\nrate = 1.0\n[sender]\nconcurrency = 2.5\n", "sender.concurrency", "valid integer"),
    ],
)
def test_bad_scenarios_name_file_and_field(tmp_path: Path, text: str, field: str, msg: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = str(info.value)
    assert str(path) in err
    assert msg in err
    if field:
        assert any(f == field for f, _ in info.value.problems), info.value.problems


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"x\.toml: not valid TOML"):
        parse_scenario("[arrivals\n", "x.toml")
    with pytest.raises(ScenarioError, match="no such file or scenario"):
        load_scenario(tmp_path / "nope")


def test_rate_override() -> None:
    sc = load_scenario("steady").with_rate(123.0)
    assert sc.arrivals.rate == 123.0
    with pytest.raises(ValueError):
        sc.with_rate(-1.0)
