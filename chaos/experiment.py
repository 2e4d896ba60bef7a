"""Chaos experiments as TOML, after Chaos Toolkit's shape: a steady-state hypothesis checked before and
after, a method of faults (at times, in sequence, or when a condition holds), rollbacks that always run,
and a seeded "monkey" that draws faults so a run replays exactly.

Example file::

    [experiment]
    title = "the orders leader dies"
    seed = 7

    [[steady_state]]                 # probes with tolerances, checked before and after
    probe = "nodes_up"
    min = 3

    [[steady_state]]
    probe = "queue_depth_below"
    max = 1000

    [[method]]
    fault = "kill_node"
    target = "leader:orders"
    at = 5.0                         # seconds after the method starts

    [[method]]
    fault = "partition"
    target = "isolate:3"
    after = "previous"               # starts when the previous fault is undone
    duration = 20

    [[method]]
    fault = "memory_alarm"
    when = { probe = "queue_depth_below", max = 50, timeout = 60 }   # a condition
    duration = 10

    [monkey]                         # optional: more faults drawn from the seed
    count = 4
    kinds = ["kill_node", "pause_node", "partition"]
    start = 10.0
    gap = [5.0, 15.0]
    duration = [3.0, 10.0]

    [[rollbacks]]
    action = "heal"

A malformed file raises :class:`ExperimentError` naming the file, the line and the field.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chaos.faults import FAULTS
from chaos.toml_lines import line_of

PROBES = ("nodes_up", "no_alarms", "queue_depth_below", "http_ok", "http_p99_below")
MONKEY_TARGETS: dict[str, list[str]] = {
    "kill_node": ["1", "2", "3", "most-leaders"],
    "stop_node": ["1", "2", "3"],
    "pause_node": ["1", "2", "3"],
    "partition": ["isolate:1", "isolate:2", "isolate:3", "halves", "ring"],
    "memory_alarm": [""],
    "disk_alarm": [""],
    "close_connections": [""],
    "restart_node": ["1", "2", "3"],
}


class ExperimentError(Exception):
    """A broken experiment file: the message names the file, the line and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeSpec(_Strict):
    """A steady-state probe and its tolerance."""

    probe: Literal["nodes_up", "no_alarms", "queue_depth_below", "http_ok", "http_p99_below"]
    min: int | None = Field(default=None, ge=0, description="nodes_up: at least this many nodes up")
    max: float | None = Field(default=None, ge=0, description="queue depth or p99 ms ceiling")
    url: str | None = None
    samples: int = Field(default=20, ge=1, le=10_000)
    queue_pattern: str = ".*"
    timeout: float = Field(default=30.0, gt=0, description="conditions: how long to wait for it to hold")

    @model_validator(mode="after")
    def _needs(self) -> ProbeSpec:
        if self.probe in ("queue_depth_below", "http_p99_below") and self.max is None:
            raise ValueError(f"probe {self.probe} needs max")
        if self.probe in ("http_ok", "http_p99_below") and not self.url:
            raise ValueError(f"probe {self.probe} needs url")
        return self


class MethodStep(_Strict):
    """One fault of the method."""

    fault: str
    target: str = ""
    at: float | None = Field(default=None, ge=0)
    after: Literal["previous"] | None = None
    when: ProbeSpec | None = None
    duration: float = Field(default=10.0, ge=0)
    params: dict[str, str | int | float] = Field(default_factory=dict)

    @field_validator("fault")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in FAULTS:
            raise ValueError(f"unknown fault {v!r}; known: {', '.join(sorted(FAULTS))}")
        return v

    @model_validator(mode="after")
    def _check(self) -> MethodStep:
        if sum(x is not None for x in (self.at, self.after, self.when)) > 1:
            raise ValueError("give at most one of at, after, when")
        return self


class Monkey(_Strict):
    """Faults drawn from the experiment's seed: kinds, targets, gaps and durations."""

    count: int = Field(ge=1, le=1000)
    kinds: list[str] = Field(min_length=1)
    start: float = Field(default=5.0, ge=0)
    gap: tuple[float, float] = (5.0, 15.0)
    duration: tuple[float, float] = (3.0, 10.0)

    @model_validator(mode="after")
    def _check(self) -> Monkey:
        for k in self.kinds:
            if k not in MONKEY_TARGETS:
                raise ValueError(
                    f"monkey cannot draw {k!r}; it draws from {', '.join(sorted(MONKEY_TARGETS))}"
                )
        for name, (lo, hi) in (("gap", self.gap), ("duration", self.duration)):
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be [low, high] with 0 <= low <= high")
        return self


class Rollback(_Strict):
    action: Literal["heal"] = "heal"


class Meta(_Strict):
    title: str
    description: str = ""
    seed: int = 0


class Experiment(_Strict):
    experiment: Meta
    steady_state: Annotated[list[ProbeSpec], Field(default_factory=list)]
    method: Annotated[list[MethodStep], Field(default_factory=list)]
    monkey: Monkey | None = None
    rollbacks: Annotated[list[Rollback], Field(default_factory=lambda: [Rollback()])]

    @model_validator(mode="after")
    def _something_to_do(self) -> Experiment:
        if not self.method and self.monkey is None:
            raise ValueError("an experiment needs a [[method]] step or a [monkey]")
        return self


@dataclass(frozen=True)
class PlannedFault:
    """A fault on the timeline: ``at`` is None for steps that wait (``after`` previous, ``when``)."""

    index: int
    fault: str
    target: str
    at: float | None
    duration: float
    after_previous: bool
    when: ProbeSpec | None
    params: dict[str, str | int | float]

    def describe(self) -> str:
        start = (
            f"t={self.at:7.2f}s"
            if self.at is not None
            else ("after prev " if self.after_previous else "when cond. ")
        )
        tgt = f" {self.target}" if self.target else ""
        cond = f" [{self.when.probe}]" if self.when else ""
        return f"{start}  {self.fault}{tgt} for {self.duration:.1f}s{cond}"


def fault_kinds(exp: Experiment) -> list[str]:
    """Every fault kind the experiment can apply (its method's, then what its monkey may draw), once each.

    What a provider must support before the experiment starts: a monkey's whole pool counts, not only
    this seed's draws, so changing the seed never turns a valid experiment into a refused one.
    """
    kinds = [m.fault for m in exp.method] + (list(exp.monkey.kinds) if exp.monkey is not None else [])
    return list(dict.fromkeys(kinds))


def timeline(exp: Experiment) -> list[PlannedFault]:
    """The method, then the monkey's draws, as one list. Deterministic for a given file (and seed)."""
    out: list[PlannedFault] = []
    for i, step in enumerate(exp.method):
        at = step.at if step.at is not None else (0.0 if step.after is None and step.when is None else None)
        out.append(
            PlannedFault(
                i, step.fault, step.target, at, step.duration, step.after is not None, step.when, step.params
            )
        )
    if exp.monkey is not None:
        m = exp.monkey
        rng = random.Random(f"monkey:{exp.experiment.seed}")
        t = m.start
        for j in range(m.count):
            kind = rng.choice(m.kinds)
            target = rng.choice(MONKEY_TARGETS[kind])
            duration = round(rng.uniform(*m.duration), 2)
            out.append(
                PlannedFault(len(exp.method) + j, kind, target, round(t, 2), duration, False, None, {})
            )
            # The next fault starts after this one is undone plus a gap: one fault at a time keeps a
            # 3-node cluster with a majority, so the monkey tests recovery rather than total loss.
            t += duration + rng.uniform(*m.gap)
    return out


def load(path: Path) -> Experiment:
    """Read and validate an experiment file; every error names the file, the line and the field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ExperimentError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse(text, str(path))


def parse(text: str, name: str = "<experiment>") -> Experiment:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{name}: not valid TOML: {exc}") from exc
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = line_of(text, loc)
        where = f"line {line}: " if line else ""
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "unknown key"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ExperimentError(f"{name}: {where}{field}: {msg}{more}") from exc
