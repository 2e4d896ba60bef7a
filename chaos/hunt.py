"""Property-based chaos: hypothesis draws fault schedules, each runs against a live workload under the
real fault injector, and when the audit finds a loss hypothesis shrinks the schedule to a minimal one,
printed as an experiment file (``drill chaos run FILE`` format) that reproduces it.

The property: *whatever the schedule, the workload's audit is valid* (nothing lost, nothing unexpected,
no effect twice). A schedule is a list of :class:`Step` (a fault kind from the catalogue, a target, a
start offset and a duration; faults may overlap). Shrinking works on the real system: every candidate is
run for real, so a hunt costs (examples + shrink steps) × one workload run. ``hypothesis.find`` does the
search and the shrinking; we only say what a schedule is and how to run one.

Example::

    run_one = live_runner(lambda: MessagingWorkload(cluster, run_dir / "w"), injector)
    result = hunt(run_one, MESSAGING_KINDS, max_examples=5)
    if result.minimal is not None:
        print(result.experiment)          # the minimal failing schedule as an experiment file
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from chaos.experiment import parse

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from chaos.injector import FaultInjector
    from chaos.workloads import WorkloadVerdict

#: What ``drill chaos hunt`` says when hypothesis (the ``hunt`` extra) is not installed.
MISSING_HYPOTHESIS = (
    "drill chaos hunt needs hypothesis, which is not installed: run "
    "`pip install -e '.[hunt]'` in the project (./drill installs it with the dev tools)"
)


def missing_requirement() -> str | None:
    """Why a hunt cannot run here (hypothesis, an optional extra, is missing), or None when it can.

    Checked before anything touches the rig, so a missing extra is one line, not an ImportError deep in
    a run.
    """
    try:
        import hypothesis  # noqa: F401  (only whether it imports)
    except ImportError:
        return MISSING_HYPOTHESIS
    return None


#: Fault kinds and targets for a hunt against the messaging workload on a 3-node rig.
MESSAGING_KINDS: dict[str, tuple[str, ...]] = {
    "kill_node": ("1", "2", "3"),
    "pause_node": ("1", "2", "3"),
    "restart_node": ("1", "2", "3"),
    "close_connections": ("",),
    "memory_alarm": ("",),
    "kill_replica": ("consumer#0", "consumer#1"),
}


@dataclass(frozen=True, order=True)
class Step:
    """One fault of a schedule: ``kind`` on ``target`` from ``at`` s for ``duration`` s."""

    at: int
    kind: str
    target: str
    duration: int


class Workload(Protocol):
    """What a hunt needs of a workload: start it, and finish it with its audit."""

    @property
    def system_dir(self) -> Path:
        """The supervised system's run dir (service faults find the replicas there)."""

    def start(self) -> None: ...

    def finish(self, timeout: float = ...) -> WorkloadVerdict: ...

    def close(self) -> None: ...


def schedules(
    kinds: Mapping[str, Sequence[str]], max_steps: int = 3, horizon_s: int = 8, max_duration_s: int = 6
) -> SearchStrategy[list[Step]]:
    """Fault schedules: 1..``max_steps`` steps, each starting within ``horizon_s`` s, lasting at most
    ``max_duration_s`` s.

    Every part shrinks toward the simplest schedule: fewer steps, earlier, shorter, the first kind and
    target listed.
    """
    from hypothesis import strategies as st

    names = sorted(kinds)
    step = st.sampled_from(names).flatmap(
        lambda kind: st.builds(
            Step,
            at=st.integers(0, horizon_s),
            kind=st.just(kind),
            target=st.sampled_from(list(kinds[kind])),
            duration=st.integers(1, max_duration_s),
        )
    )
    return st.lists(step, min_size=1, max_size=max_steps).map(sorted)


def experiment_toml(steps: Sequence[Step], title: str, *, seed: int = 0, comment: str = "") -> str:
    """The schedule as an experiment file that ``chaos.experiment.parse`` accepts (checked)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += ["[experiment]", f"title = {_q(title)}", f"seed = {seed}", ""]
    for s in steps:
        lines += ["[[method]]", f"fault = {_q(s.kind)}", f"target = {_q(s.target)}", f"at = {float(s.at)}",
                  f"duration = {float(s.duration)}", ""]  # fmt: skip
    lines += ["[[rollbacks]]", 'action = "heal"', ""]
    text = "\n".join(lines)
    parse(text, "<generated schedule>")  # a printed reproduction that does not load would be useless
    return text


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class HuntRun:
    """One schedule run for real and its audit."""

    steps: list[Step]
    verdict: WorkloadVerdict
    fault_errors: list[str]


@dataclass
class HuntResult:
    """The hunt's outcome: every run, and the minimal failing schedule when one was found."""

    runs: list[HuntRun] = field(default_factory=list)
    minimal: list[Step] | None = None
    experiment: str | None = None

    @property
    def failing_runs(self) -> list[HuntRun]:
        return [r for r in self.runs if not r.verdict.valid]


def run_schedule(steps: Sequence[Step], workload: Workload, injector: FaultInjector) -> HuntRun:
    """Start the workload, run the schedule as an experiment beside it, finish and audit the workload."""
    from chaos.runner import ExperimentRunner

    exp = parse(experiment_toml(steps, "hunt candidate"))
    params = {"system_dir": str(workload.system_dir)}
    exp = exp.model_copy(
        update={
            "method": [
                m.model_copy(update={"params": params}) if m.fault.endswith("_replica") else m
                for m in exp.method
            ]
        }
    )
    workload.start()
    try:
        runner = ExperimentRunner(exp, injector, settle_timeout=60)
        holder: dict[str, object] = {}
        thread = threading.Thread(
            target=lambda: holder.setdefault("result", runner.run()), name="hunt-faults"
        )
        thread.start()
        thread.join()
        verdict = workload.finish()
    finally:
        workload.close()
        injector.heal()
    result = holder.get("result")
    errors = [f"{f.kind} {f.target}: {f.error}" for f in getattr(result, "faults", []) if f.error]
    return HuntRun(list(steps), verdict, errors)


def live_runner(
    make_workload: Callable[[], Workload], injector: FaultInjector
) -> Callable[[list[Step]], HuntRun]:
    """Run each schedule for real: a fresh workload and the real injector."""
    return lambda steps: run_schedule(steps, make_workload(), injector)


def hunt(
    run_one: Callable[[list[Step]], HuntRun],
    kinds: Mapping[str, Sequence[str]] = MESSAGING_KINDS,
    *,
    max_examples: int = 5,
    max_steps: int = 3,
    horizon_s: int = 8,
    max_duration_s: int = 6,
    max_runs: int | None = None,
    on_run: Callable[[HuntRun], None] | None = None,
) -> HuntResult:
    """Search for a schedule that breaks the workload's audit; shrink the first one found.

    ``max_runs`` caps the real runs (search and shrinking together): past it, candidates count as
    passing without being run, so the schedule reported is the smallest failure found within budget.
    """
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample

    result = HuntResult()

    # A real system is not deterministic: the same schedule may lose messages once and not the next
    # time. Each schedule is run once and its verdict remembered, so hypothesis (which replays the
    # final example) sees one answer per schedule. A run that raised (its workload could not start)
    # raises the same error again on replay: hypothesis then reports that error, not a FlakyFailure.
    seen: dict[tuple[Step, ...], bool] = {}
    raised: dict[tuple[Step, ...], Exception] = {}

    def breaks(steps: list[Step]) -> bool:
        key = tuple(steps)
        if key in raised:
            raise raised[key]
        if key in seen:
            return seen[key]
        if max_runs is not None and len(result.runs) >= max_runs:
            return False
        try:
            run = run_one(steps)
        except Exception as exc:
            raised[key] = exc
            raise
        result.runs.append(run)
        if on_run is not None:
            on_run(run)
        seen[key] = not run.verdict.valid
        return seen[key]

    try:
        minimal = find(
            schedules(kinds, max_steps, horizon_s, max_duration_s),
            breaks,
            settings=settings(
                max_examples=max_examples,
                database=None,
                deadline=None,
                phases=[Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            ),
        )
    except NoSuchExample:
        return result
    result.minimal = minimal
    worst = next(r for r in reversed(result.runs) if r.steps == minimal and not r.verdict.valid)
    result.experiment = experiment_toml(
        minimal,
        "minimal failing schedule found by drill chaos hunt",
        comment=f"audit of the failing run: {worst.verdict.line()}\n"
        f"{len(result.runs)} schedules run; reproduce with `drill chaos hunt --replay THIS_FILE`",
    )
    return result
