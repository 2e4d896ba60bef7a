"""Experiment files: clear errors with the line and the field; deterministic timelines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.experiment import ExperimentError, load, parse, timeline

ROOT = Path(__file__).resolve().parents[3]

GOOD = """\
[experiment]
title = "t"
seed = 3

[[steady_state]]
probe = "nodes_up"
min = 3

[[method]]
fault = "kill_node"
target = "2"
at = 1.5

[[method]]
fault = "partition"
target = "isolate:3"
after = "previous"
duration = 4
"""


def test_a_good_file_gives_its_timeline() -> None:
    exp = parse(GOOD)
    plan = timeline(exp)
    assert [(p.fault, p.target, p.at, p.after_previous) for p in plan] == [
        ("kill_node", "2", 1.5, False),
        ("partition", "isolate:3", None, True),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace('fault = "partition"', 'fault = "partitoin"'),
            "line 15: method.1.fault: unknown fault 'partitoin'",
        ),
        (
            GOOD.replace("at = 1.5", "at = -1"),
            "line 12: method.0.at: Input should be greater than or equal to 0",
        ),
        (
            GOOD.replace("min = 3", 'min = "three"'),
            "line 7: steady_state.0.min: Input should be a valid integer",
        ),
        (GOOD.replace("seed = 3", "seed = 3\ncolour = 1"), "line 4: experiment.colour: unknown key"),
        (
            GOOD.replace('probe = "nodes_up"', 'probe = "vibes"'),
            "line 6: steady_state.0.probe: Input should be",
        ),
        (
            GOOD.replace("duration = 4", "duration = 4\nat = 2"),
            "method.1: give at most one of at, after, when",
        ),
        ("[experiment]\ntitle = 't'\n", "an experiment needs a [[method]] step or a [monkey]"),
        ("[experiment\ntitle = 't'\n", "not valid TOML"),
    ],
)
def test_broken_files_name_the_line_and_the_field(text: str, expected: str) -> None:
    with pytest.raises(ExperimentError) as info:
        parse(text, "x.toml")
    assert str(info.value).startswith("x.toml: ")
    assert expected in str(info.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="cannot read"):
        load(tmp_path / "nope.toml")


MONKEY = """\
[experiment]
title = "m"
seed = {seed}

[monkey]
count = 8
kinds = ["kill_node", "pause_node", "partition", "memory_alarm"]
"""


@given(seed=st.integers(0, 10_000))
def test_monkey_replays_exactly_from_its_seed(seed: int) -> None:
    a = timeline(parse(MONKEY.format(seed=seed)))
    b = timeline(parse(MONKEY.format(seed=seed)))
    assert a == b
    assert len(a) == 8
    starts = [p.at for p in a]
    assert all(x is not None for x in starts)
    ends = [(p.at or 0) + p.duration for p in a]
    # one fault at a time: each starts after the previous has been undone
    assert all(ends[i] <= (starts[i + 1] or 0) for i in range(len(a) - 1))


def test_different_seeds_draw_different_schedules() -> None:
    assert timeline(parse(MONKEY.format(seed=1))) != timeline(parse(MONKEY.format(seed=2)))


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios" / "chaos").glob("*.toml")))
def test_shipped_experiments_load(path: Path) -> None:
    assert timeline(load(path))
