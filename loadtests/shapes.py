"""Locust load shapes for the drill: steady, step, "doubles the load", spike.

Each shape is a Locust ``LoadTestShape``: Locust calls :meth:`DrillShape.tick` about once a second
and sets the user count and spawn rate it returns; ``None`` ends the run. The logic and every
parameter (``DRILL_SHAPE_USERS``, ``DRILL_SHAPE_DURATION``, ``DRILL_SHAPE_STEP_AT``, ...) are those of
the matching profile in :mod:`loadtests.profiles` (Locust-free, see there for the table); Locust's
``-u``/``-r``/``-t`` are the fallbacks (``use_common_options``).

* :class:`SteadyShape` — constant users for the duration: the baseline chaos runs under.
* :class:`StepShape` — a staircase of plateaus, +``users`` each ``STEP_AT`` seconds: capacity probing.
* :class:`DoublesShape` — at ``STEP_AT`` users *and* spawn rate become 2×: "one more client doubles
  the load".
* :class:`SpikeShape` — ``FACTOR``× users for ``SPIKE_FOR`` seconds from ``SPIKE_AT``, then back.

How to pick one — a locustfile must contain *at most one* concrete shape class (Locust instantiates
every one it finds in the module's globals and uses the first):

* ``DRILL_SHAPE=<steady|step|doubles|spike>`` with ``loadtests/intake.py``: the locustfile binds the
  chosen class to a global only when the variable is set (``run_locust(..., shape="doubles")`` does
  this);
* or a thin locustfile ``loadtests/intake_<shape>.py``, which imports the users and one shape.

Importing this module imports Locust, which monkey-patches the process with gevent: import it only in
Locust processes. Tests and tools use :mod:`loadtests.profiles`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from locust import LoadTestShape

from loadtests.profiles import (
    DoublesProfile,
    LoadProfile,
    SpikeProfile,
    SteadyProfile,
    StepProfile,
    Tick,
    profile_class,
)


class DrillShape(LoadTestShape):
    """A Locust shape driven by a :class:`~loadtests.profiles.LoadProfile` (``profile_cls``)."""

    abstract: ClassVar[bool] = True
    use_common_options: ClassVar[bool] = True
    profile_cls: ClassVar[type[LoadProfile]] = SteadyProfile

    def __init__(self, **params: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # (Locust's own annotation gap)
        self.profile = self.profile_cls(fallback=self._common_option, **params)

    def _common_option(self, attr: str) -> Any:
        # Locust's --users/--spawn-rate/--run-time, once the runner (and its options) exist.
        env = getattr(self.runner, "environment", None)
        opts = getattr(env, "parsed_options", None)
        return getattr(opts, attr, None) if opts is not None else None

    def tick(self) -> Tick:
        """Locust's hook: the profile at the current run time."""
        return self.profile.at(self.get_run_time())  # type: ignore[no-untyped-call]


class SteadyShape(DrillShape):
    """Constant users for the duration (:class:`~loadtests.profiles.SteadyProfile`)."""

    profile_cls = SteadyProfile


class StepShape(DrillShape):
    """A staircase of plateaus (:class:`~loadtests.profiles.StepProfile`)."""

    profile_cls = StepProfile


class DoublesShape(DrillShape):
    """Users and spawn rate 2× at ``STEP_AT`` (:class:`~loadtests.profiles.DoublesProfile`)."""

    profile_cls = DoublesProfile


class SpikeShape(DrillShape):
    """A burst of ``FACTOR``× users (:class:`~loadtests.profiles.SpikeProfile`)."""

    profile_cls = SpikeProfile


SHAPES: dict[str, type[DrillShape]] = {
    "steady": SteadyShape,
    "step": StepShape,
    "doubles": DoublesShape,
    "spike": SpikeShape,
}


def shape_class(name: str) -> type[DrillShape]:
    """The shape class called ``name``; ValueError names the choices."""
    return SHAPES[profile_class(name).name]
