"""The order arrival process: a non-homogeneous Poisson process over run time.

The offered rate at run time ``t`` (wall seconds since the start) is::

    rate(t) = arrivals.rate × curve(hour_of_day(t)) × step(t) × burst(t)

``curve`` is 1 for ``flat`` and the daily curve below for ``daily`` (lunch peak ×2.2 at 12:30, dinner
peak ×2.6 at 19:30, ×0.15 at night); ``step`` is the factor of the latest step passed; ``burst`` the product
of the active bursts. Arrivals are drawn by thinning (Lewis & Shedler) against an upper bound of the
rate, from one seeded stream, so the same seed gives the same arrival times.

Example:
    >>> from simulator.config import Scenario
    >>> s = Scenario.model_validate({"arrivals": {"rate": 10.0, "steps": [{"at": 5.0, "factor": 2.0}]}})
    >>> p = ArrivalProcess(s, seed=1)
    >>> p.rate(1.0), p.rate(6.0)
    (10.0, 20.0)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

from simulator.clock import SimClock
from simulator.config import Scenario, Step
from simulator.rng import rng_for

# (hour, multiplier), piecewise linear, 24 wraps to 0.
DAILY_CURVE: tuple[tuple[float, float], ...] = (
    (0.0, 0.15), (6.0, 0.2), (8.0, 0.5), (11.0, 1.0), (12.5, 2.2), (14.5, 0.9), (17.0, 1.0),
    (19.5, 2.6), (21.5, 1.0), (23.0, 0.4), (24.0, 0.15),
)  # fmt: skip
_CURVE_HOURS = [h for h, _ in DAILY_CURVE]


def daily_multiplier(hour: float) -> float:
    """The daily curve's multiplier at ``hour`` (0 ≤ hour < 24)."""
    i = bisect.bisect_right(_CURVE_HOURS, hour) - 1
    i = max(0, min(i, len(DAILY_CURVE) - 2))
    (h0, m0), (h1, m1) = DAILY_CURVE[i], DAILY_CURVE[i + 1]
    return m0 + (m1 - m0) * (hour - h0) / (h1 - h0)


class ArrivalProcess:
    """Offered rate as a function of run time, and the seeded arrival times it produces."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.cfg = scenario.arrivals
        self.clock = SimClock.from_config(scenario.clock, epoch=0.0)
        self.seed = seed
        self.steps: list[Step] = sorted(self.cfg.steps, key=lambda s: s.at)
        self._step_at = [s.at for s in self.steps]
        # Unscheduled bursts: their start times come from their own stream, drawn up to a horizon lazily.
        self._burst_rng = rng_for(seed, "random-bursts")
        self._random_bursts: list[float] = []
        self._burst_horizon = 0.0
        self._curve_max = max(m for _, m in DAILY_CURVE) if self.cfg.curve == "daily" else 1.0
        step_max = max([1.0, *(s.factor for s in self.steps)])
        burst_max = math.prod(b.factor for b in self.cfg.bursts if b.factor > 1.0)
        if self.cfg.random_bursts_per_hour > 0:
            burst_max *= max(1.0, self.cfg.random_burst_factor)
        self.rate_max = self.cfg.rate * self._curve_max * step_max * burst_max

    def _extend_random_bursts(self, until: float) -> None:
        per_s = self.cfg.random_bursts_per_hour / 3600.0
        while self._burst_horizon <= until:
            self._burst_horizon += self._burst_rng.expovariate(per_s)
            self._random_bursts.append(self._burst_horizon)

    def step_at(self, t: float) -> Step | None:
        """The step in force at run time ``t`` (None before the first one)."""
        i = bisect.bisect_right(self._step_at, t) - 1
        return self.steps[i] if i >= 0 else None

    def rate(self, t: float) -> float:
        """The offered rate (orders per wall second) at run time ``t``."""
        r = self.cfg.rate
        if self.cfg.curve == "daily":
            r *= daily_multiplier(self.clock.hour_of_day(t))
        step = self.step_at(t)
        if step is not None:
            r *= step.factor
        for b in self.cfg.bursts:
            if b.at <= t < b.at + b.duration:
                r *= b.factor
        if self.cfg.random_bursts_per_hour > 0:
            self._extend_random_bursts(t)
            i = bisect.bisect_right(self._random_bursts, t) - 1
            if i >= 0 and t < self._random_bursts[i] + self.cfg.random_burst_duration_s:
                r *= self.cfg.random_burst_factor
        return r

    def times(self) -> Iterator[float]:
        """Arrival times (run seconds, increasing, unbounded) by thinning against :attr:`rate_max`."""
        rng = rng_for(self.seed, "arrivals")
        expo, rand, lam_max, rate = rng.expovariate, rng.random, self.rate_max, self.rate
        t = 0.0
        while True:
            t += expo(lam_max)
            if rand() * lam_max <= rate(t):
                yield t
