"""The hunt's machinery without a broker: schedules, the printed experiment, shrinking."""

from __future__ import annotations

from hypothesis import given, settings

from chaos.experiment import parse, timeline
from chaos.hunt import MESSAGING_KINDS, HuntRun, Step, experiment_toml, hunt, schedules
from chaos.workloads import WorkloadVerdict


def _verdict(lost: int) -> WorkloadVerdict:
    return WorkloadVerdict(
        committed=100, consumed=100 - lost, lost=lost, unexpected=0, duplicated_effects=0, seconds=1
    )


@settings(max_examples=50, deadline=None)
@given(schedules(MESSAGING_KINDS, max_steps=4))
def test_every_schedule_prints_as_a_loadable_experiment_in_time_order(steps: list[Step]) -> None:
    text = experiment_toml(steps, "t", comment="why\nhow")
    exp = parse(text)
    plan = timeline(exp)
    assert [(p.fault, p.target, p.at, p.duration) for p in plan] == [
        (s.kind, s.target, float(s.at), float(s.duration)) for s in steps
    ]
    assert steps == sorted(steps)
    assert all(s.kind in MESSAGING_KINDS and s.target in MESSAGING_KINDS[s.kind] for s in steps)


def test_a_failure_is_shrunk_to_the_minimal_schedule_and_printed() -> None:
    # A fake system that loses messages only when a consumer is killed while a node is paused.
    def run_one(steps: list[Step]) -> HuntRun:
        kills = [s for s in steps if s.kind == "kill_replica"]
        pauses = [s for s in steps if s.kind == "pause_node"]
        broken = any(p.at <= k.at < p.at + p.duration for k in kills for p in pauses)
        return HuntRun(steps, _verdict(7 if broken else 0), [])

    result = hunt(run_one, MESSAGING_KINDS, max_examples=400, max_steps=4)
    assert result.minimal is not None, f"no failure found in {len(result.runs)} runs"
    assert sorted(s.kind for s in result.minimal) == ["kill_replica", "pause_node"]
    kill, pause = sorted(result.minimal, key=lambda s: s.kind)
    assert (pause.at, kill.at, pause.duration) == (0, 0, 1)  # shrunk to the simplest overlap
    assert result.experiment is not None and "lost=7" in result.experiment
    assert len(parse(result.experiment).method) == 2


def test_no_failure_means_no_minimal_schedule() -> None:
    result = hunt(lambda steps: HuntRun(steps, _verdict(0), []), MESSAGING_KINDS, max_examples=5)
    assert result.minimal is None and result.experiment is None and len(result.runs) == 5


def test_a_run_that_could_not_start_is_reported_as_its_error_not_as_a_flaky_search() -> None:
    """Seen in CI: a workload whose consumers never got ready raised once; hypothesis replayed that
    schedule, the replay ran for real and lost messages, and the hunt ended in a FlakyFailure."""
    import pytest

    calls: dict[tuple[Step, ...], int] = {}

    def run_one(steps: list[Step]) -> HuntRun:
        key = tuple(steps)
        calls[key] = calls.get(key, 0) + 1
        if calls[key] == 1 and steps and steps[0].kind == "kill_replica":
            raise TimeoutError("consumers not ready after 60 s")
        return HuntRun(steps, _verdict(3 if steps else 0), [])

    with pytest.raises(BaseException) as caught:
        hunt(run_one, {"kill_replica": ("consumer#0",)}, max_examples=20, max_steps=1)
    errors = list(caught.value.exceptions) if isinstance(caught.value, BaseExceptionGroup) else [caught.value]
    assert any(isinstance(e, TimeoutError) and "consumers not ready" in str(e) for e in errors), errors
    assert all(n == 1 for n in calls.values()), "each schedule ran once"
