"""The load shapes: users and spawn rate over run time, parameters from arguments or env.

The logic is tested on :mod:`loadtests.profiles` in this process; the Locust adapters
(:mod:`loadtests.shapes`, whose import monkey-patches a process with gevent) in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from loadtests.profiles import (
    PROFILES,
    DoublesProfile,
    SpikeProfile,
    SteadyProfile,
    StepProfile,
    profile_class,
    profile_from_env,
)


def test_steady_holds_then_stops() -> None:
    s = SteadyProfile(users=7, spawn_rate=3, duration=10)
    assert [s.at(t) for t in (0, 5, 9.99)] == [(7, 3.0)] * 3
    assert s.at(10) is None


def test_doubles_doubles_users_and_spawn_rate_at_t() -> None:
    s = DoublesProfile(users=10, spawn_rate=5, duration=60, step_at=20)
    assert s.at(19.9) == (10, 5.0)
    assert s.at(20.0) == (20, 10.0)
    assert s.at(59.9) == (20, 10.0)
    assert s.at(60.0) is None


def test_doubles_reads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRILL_SHAPE_USERS", "3")
    monkeypatch.setenv("DRILL_SHAPE_DURATION", "8")
    monkeypatch.setenv("DRILL_SHAPE_STEP_AT", "2")
    s = DoublesProfile()
    assert s.at(1.0) == (3, 3.0)  # spawn rate defaults to the user count
    assert s.at(2.0) == (6, 6.0)
    assert s.at(8.0) is None


def test_doubles_default_step_is_half_time() -> None:
    s = DoublesProfile(users=4, duration=30)
    assert s.step_at == 15
    assert s.at(14.9)[0] == 4  # type: ignore[index]
    assert s.at(15)[0] == 8  # type: ignore[index]


def test_step_staircase() -> None:
    s = StepProfile(users=10, spawn_rate=10, duration=40, step_at=10, steps=3)
    assert [s.at(t) for t in (0, 9.9, 10, 25, 35)] == [
        (10, 10.0),
        (10, 10.0),
        (20, 10.0),
        (30, 10.0),
        (40, 10.0),
    ]
    assert s.at(40) is None


def test_step_never_exceeds_its_steps() -> None:
    s = StepProfile(users=5, spawn_rate=5, duration=100, step_at=10, steps=2)
    assert s.at(99) == (15, 5.0)


def test_spike_goes_up_and_back() -> None:
    s = SpikeProfile(users=5, spawn_rate=5, duration=30, spike_at=10, spike_for=5, factor=4)
    assert s.at(9.9) == (5, 5.0)
    assert s.at(10) == (20, 15.0)  # users join all at once
    assert s.at(14.9) == (20, 15.0)
    users_after, rate_after = s.at(15)  # type: ignore[misc]
    assert users_after == 5 and rate_after == 15.0  # and leave as fast
    assert s.at(30) is None


def test_fallbacks_when_neither_argument_nor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    opts = {"num_users": 9, "spawn_rate": 2.0, "run_time": 12}
    for var in ("DRILL_SHAPE_USERS", "DRILL_SHAPE_SPAWN_RATE", "DRILL_SHAPE_DURATION"):
        monkeypatch.delenv(var, raising=False)
    s = SteadyProfile(fallback=opts.get)
    assert (s.users, s.spawn_rate, s.duration) == (9, 2.0, 12.0)
    assert (SteadyProfile().users, SteadyProfile().duration) == (10, 60.0)  # the defaults


def test_profile_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(PROFILES) == {"steady", "step", "doubles", "spike"}
    assert profile_class(" Doubles ") is DoublesProfile
    with pytest.raises(ValueError, match="choose one of"):
        profile_class("sawtooth")
    monkeypatch.delenv("DRILL_SHAPE", raising=False)
    assert profile_from_env() is None
    monkeypatch.setenv("DRILL_SHAPE", "spike")
    assert profile_from_env() is SpikeProfile


def test_bad_env_value_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRILL_SHAPE_STEP_AT", "soon")
    with pytest.raises(ValueError, match="DRILL_SHAPE_STEP_AT"):
        DoublesProfile(users=1, duration=10).at(1.0)


_LOCUST_SHAPES = textwrap.dedent(
    """
    import json
    from loadtests import shapes

    out = {}
    for name in ("steady", "step", "doubles", "spike"):
        shape = shapes.shape_class(name)(users=4, spawn_rate=4, duration=40, step_at=10, steps=1,
                                         spike_at=10, spike_for=5, factor=2)
        ticks = [shape.tick()]
        shape.start_time -= 12  # as if 12 s had passed
        ticks.append(shape.tick())
        shape.start_time -= 30
        ticks.append(shape.tick())
        out[name] = [type(shape).__name__, shape.abstract, ticks]

    class Opts:
        num_users, spawn_rate, run_time = 6, 3.0, 20

    class Env:
        parsed_options = Opts()

    class Runner:
        environment = Env()

    s = shapes.DoublesShape()
    s.runner = Runner()
    out["options"] = [s.tick()]
    s.start_time -= 10
    out["options"].append(s.tick())
    print(json.dumps(out))
    """
)


def test_locust_shapes_tick_in_their_own_process() -> None:
    """The LoadTestShape adapters: concrete, tick() follows run time, Locust's options as fallbacks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRILL_SHAPE")}
    proc = subprocess.run(
        [sys.executable, "-c", _LOCUST_SHAPES], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["steady"] == ["SteadyShape", False, [[4, 4.0], [4, 4.0], None]]
    assert out["step"] == ["StepShape", False, [[4, 4.0], [8, 4.0], None]]
    assert out["doubles"] == ["DoublesShape", False, [[4, 4.0], [8, 8.0], None]]
    assert out["spike"] == ["SpikeShape", False, [[4, 4.0], [8, 4.0], None]]
    assert out["options"] == [[6, 3.0], [12, 6.0]]  # -u 6 -r 3 -t 20: doubles at 10 s
