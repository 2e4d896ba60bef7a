"""The arrival process: rate function (curve, steps, bursts) and the counts it produces."""

from __future__ import annotations

import pytest

from simulator.arrivals import ArrivalProcess, daily_multiplier
from simulator.config import Scenario, load_scenario
from simulator.orders import expected_orders


def count(p: ArrivalProcess, a: float, b: float) -> int:
    n = 0
    for t in p.times():
        if t >= b:
            return n
        n += t >= a
    raise AssertionError


def test_daily_curve_has_lunch_and_dinner_peaks() -> None:
    assert daily_multiplier(12.5) == pytest.approx(2.2)
    assert daily_multiplier(19.5) == pytest.approx(2.6)
    assert daily_multiplier(3.0) < 0.2
    assert daily_multiplier(12.5) > daily_multiplier(16.0) < daily_multiplier(19.5)


def test_compressed_day_sweeps_the_curve() -> None:
    p = ArrivalProcess(load_scenario("daily"), seed=1)
    # 144x: 12:30 simulated is 312.5 wall seconds in.
    assert p.rate(12.5 * 3600 / 144) == pytest.approx(22.0)
    assert p.rate(0.0) == pytest.approx(1.5)


def test_step_doubles_rate_and_counts() -> None:
    sc = load_scenario("doubles")
    p = ArrivalProcess(sc, seed=3)
    assert p.rate(59.9) == 20.0 and p.rate(60.0) == 40.0
    before, after = count(p, 0.0, 60.0), count(ArrivalProcess(sc, seed=3), 60.0, 120.0)
    assert 1.8 < after / before < 2.2
    assert expected_orders(sc, 120.0) == pytest.approx(20 * 60 + 40 * 60, rel=0.01)


def test_bursts_multiply() -> None:
    p = ArrivalProcess(load_scenario("flash-sale"), seed=1)
    assert p.rate(10.0) == 15.0
    assert p.rate(35.0) == 120.0
    assert p.rate(60.0) == 45.0
    assert 120 * 20 * 0.85 < count(p, 30.0, 50.0) < 120 * 20 * 1.15


def test_random_bursts_are_seeded() -> None:
    sc = Scenario.model_validate({"arrivals": {"rate": 10.0, "random_bursts_per_hour": 360.0,
                                               "random_burst_factor": 4.0}})  # fmt: skip
    rates = [ArrivalProcess(sc, seed=5).rate(t / 2) for t in range(400)]
    assert rates == [ArrivalProcess(sc, seed=5).rate(t / 2) for t in range(400)]
    assert set(rates) == {10.0, 40.0}
