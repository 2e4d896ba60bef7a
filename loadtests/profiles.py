"""Load profiles for the drill: steady, step, "doubles the load", spike — the pure logic of the shapes.

A profile says how many users (and at which spawn rate) a run should have at each second of run time,
``None`` once it is over. :mod:`loadtests.shapes` wraps each one into a Locust ``LoadTestShape``; the
logic lives here, free of Locust, because importing Locust monkey-patches the whole process with gevent
(a test process, a drill service) — so it is tested and reused without it. Parameters come from the
constructor, else the environment (so that master and workers agree without a command line of their
own), else Locust's ``-u``/``-r``/``-t`` handed over by the shape:

- ``DRILL_SHAPE_USERS``: base number of users (``-u``, else 10)
- ``DRILL_SHAPE_SPAWN_RATE``: users started per second (``-r``, else the number of users)
- ``DRILL_SHAPE_DURATION``: run length, s (``-t``, else 60)
- ``DRILL_SHAPE_STEP_AT``: doubles: when the load doubles (duration/2); step: the length of each
  plateau (duration/(STEPS+1))
- ``DRILL_SHAPE_FACTOR``: doubles: the multiplier at STEP_AT (2); spike: peak users / base users (4)
- ``DRILL_SHAPE_STEPS``: step: how many steps up, each adding USERS users (2)
- ``DRILL_SHAPE_SPIKE_AT``: spike: when the spike starts, s (duration/3)
- ``DRILL_SHAPE_SPIKE_FOR``: spike: how long it lasts, s (duration/6)

Users with a think time (``DRILL_USER_RPS`` for a constant rate per user) make the offered load
proportional to the user count, which is what "doubles the load" means; closed-loop users without
think time only double the load while the platform keeps up.

Example:
    >>> s = DoublesProfile(users=10, duration=60, step_at=30)
    >>> s.at(0.0), s.at(29.9), s.at(30.0), s.at(61.0)
    ((10, 10.0), (10, 10.0), (20, 20.0), None)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

from loadtests.settings import env_float, env_int, env_str

Tick = tuple[int, float] | None


class LoadProfile:
    """The common parameters; subclasses define :meth:`at`.

    Explicit constructor arguments win over ``DRILL_SHAPE_*`` variables, which win over ``fallback``
    (Locust's ``-u``/``-r``/``-t``, read lazily: the shape only knows them once the runner exists).
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        users: int | None = None,
        spawn_rate: float | None = None,
        duration: float | None = None,
        fallback: Callable[[str], Any] | None = None,
        **params: float,
    ) -> None:
        self.fallback = fallback or (lambda _attr: None)
        self._users = users
        self._spawn_rate = spawn_rate
        self._duration = duration
        self.params = params

    # -- parameters ---------------------------------------------------------------------------------

    @property
    def users(self) -> int:
        """Base number of users."""
        if self._users is None:
            self._users = env_int("DRILL_SHAPE_USERS", 0) or self.fallback("num_users") or 10
        return self._users

    @property
    def spawn_rate(self) -> float:
        """Base spawn rate (users/s); by default all base users start within a second."""
        if self._spawn_rate is None:
            rate = env_float("DRILL_SHAPE_SPAWN_RATE", 0.0) or self.fallback("spawn_rate")
            self._spawn_rate = float(rate or self.users)
        return self._spawn_rate

    @property
    def duration(self) -> float:
        """Run length in seconds."""
        if self._duration is None:
            run_time = self.fallback("run_time")
            self._duration = env_float("DRILL_SHAPE_DURATION", 0.0) or float(run_time or 60.0)
        return self._duration

    def param(self, key: str, env: str, default: float) -> float:
        """A shape parameter: constructor keyword, else ``env``, else ``default``."""
        if key not in self.params:
            self.params[key] = env_float(env, default)
        return self.params[key]

    # -- the profile --------------------------------------------------------------------------------

    def at(self, run_time: float) -> Tick:
        """(users, spawn rate) at ``run_time`` seconds, or None once the run is over."""
        raise NotImplementedError


class SteadyProfile(LoadProfile):
    """``users`` users for ``duration`` seconds: the baseline, and the load under which chaos runs."""

    name = "steady"

    def at(self, run_time: float) -> Tick:
        if run_time >= self.duration:
            return None
        return self.users, self.spawn_rate


class DoublesProfile(LoadProfile):
    """ "One more client doubles the load": at ``step_at`` users *and* spawn rate become 2× (``factor``).

    The spawn rate doubles too, so the second half ramps up as fast, relative to its size, as the first.
    """

    name = "doubles"

    @property
    def step_at(self) -> float:
        """When the load doubles, s."""
        return self.param("step_at", "DRILL_SHAPE_STEP_AT", self.duration / 2.0)

    @property
    def factor(self) -> float:
        """The multiplier applied at ``step_at`` (2: doubles)."""
        return self.param("factor", "DRILL_SHAPE_FACTOR", 2.0)

    def at(self, run_time: float) -> Tick:
        if run_time >= self.duration:
            return None
        if run_time < self.step_at:
            return self.users, self.spawn_rate
        return round(self.users * self.factor), self.spawn_rate * self.factor


class StepProfile(LoadProfile):
    """A staircase: every ``step_at`` seconds the users grow by ``users`` more, ``steps`` times.

    With ``users=10, steps=3`` the run holds 10, 20, 30 users, then 40 after the third step: capacity
    probing, to find the load where latency or errors turn.
    """

    name = "step"

    @property
    def steps(self) -> int:
        """How many steps up after the first plateau."""
        return int(self.param("steps", "DRILL_SHAPE_STEPS", 2.0))

    @property
    def step_at(self) -> float:
        """Length of each plateau, s."""
        return self.param("step_at", "DRILL_SHAPE_STEP_AT", self.duration / (self.steps + 1))

    def at(self, run_time: float) -> Tick:
        if run_time >= self.duration:
            return None
        level = min(self.steps, int(run_time // self.step_at)) if self.step_at > 0 else self.steps
        return self.users * (level + 1), self.spawn_rate


class SpikeProfile(LoadProfile):
    """A burst: ``users`` users, then ``factor``× for ``spike_for`` seconds from ``spike_at``, then back.

    Users join as fast as possible during the spike (spawn rate = the number to add), as a flash sale
    would bring them; the drop back is as fast.
    """

    name = "spike"

    @property
    def spike_at(self) -> float:
        """When the spike starts, s."""
        return self.param("spike_at", "DRILL_SHAPE_SPIKE_AT", self.duration / 3.0)

    @property
    def spike_for(self) -> float:
        """How long the spike lasts, s."""
        return self.param("spike_for", "DRILL_SHAPE_SPIKE_FOR", self.duration / 6.0)

    @property
    def factor(self) -> float:
        """Peak users relative to the base."""
        return self.param("factor", "DRILL_SHAPE_FACTOR", 4.0)

    def at(self, run_time: float) -> Tick:
        if run_time >= self.duration:
            return None
        peak = max(self.users, math.ceil(self.users * self.factor))
        if run_time < self.spike_at:
            return self.users, self.spawn_rate
        if run_time < self.spike_at + self.spike_for:
            return peak, float(max(peak - self.users, 1))
        return self.users, float(max(peak - self.users, 1))


PROFILES: dict[str, type[LoadProfile]] = {
    cls.name: cls for cls in (SteadyProfile, StepProfile, DoublesProfile, SpikeProfile)
}


def profile_class(name: str) -> type[LoadProfile]:
    """The profile called ``name`` (steady, step, doubles, spike); ValueError names the choices."""
    try:
        return PROFILES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown load shape {name!r}; choose one of {sorted(PROFILES)}") from None


def profile_from_env() -> type[LoadProfile] | None:
    """The profile named by ``DRILL_SHAPE``, or None when it is unset."""
    name = env_str("DRILL_SHAPE")
    return profile_class(name) if name else None
