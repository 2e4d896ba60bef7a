"""What the injector and the experiment runner journal: the planned duration and when each undo started.

No broker: the faults here are stand-ins registered for the test only (``FAULTS`` is patched), whose
undo can be told to fail; the cluster is None, which the injector accepts for faults that need none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from chaos.experiment import parse
from chaos.faults import FAULTS, Fault
from chaos.injector import FaultInjector
from chaos.journal import Journal
from chaos.runner import ExperimentRunner
from rig.cluster import Cluster


class Held(Fault):
    """A fault with nothing behind it; ``fail_undos`` undos raise before one succeeds."""

    fail_undos: ClassVar[int] = 0

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        return {"held": self.target}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        if cls.fail_undos > 0:
            cls.fail_undos -= 1
            raise RuntimeError("node would not start")
        return {}


class Instant(Held):
    """The same, instant (like a kill whose undo is the restart)."""

    instant = True


# Set after the class bodies: a ``kind`` in the body would register them in FAULTS for every test.
Held.kind = "test_held"
Instant.kind = "test_instant"


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAULTS, Held.kind, Held)
    monkeypatch.setitem(FAULTS, Instant.kind, Instant)
    monkeypatch.setattr(Held, "fail_undos", 0)


def events(journal: Journal, fault_id: str | None = None) -> list[str]:
    return [r["event"] for r in journal.records() if fault_id is None or r["fault_id"] == fault_id]


def test_applied_journals_planned_s_and_an_undoing_line_before_the_undo(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with FaultInjector(None, journal).applied(Held("x"), planned_s=2.5) as active:
        assert journal.open_faults()[0].fault_id == active.fault_id
    records = journal.records()
    assert [r["event"] for r in records] == ["apply", "applied", "undoing", "undo"]
    apply, _, undoing, undo = records
    assert apply["planned_s"] == 2.5
    assert undoing["reason"] == "" and undoing["fault_id"] == active.fault_id
    assert apply["ts"] <= undoing["ts"] <= undo["ts"]
    assert journal.open_faults() == []


def test_planned_s_is_null_unless_given(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    inj = FaultInjector(None, journal)
    inj.undo(inj.inject(Held("open-ended")))
    [apply] = [r for r in journal.records() if r["event"] == "apply"]
    assert "planned_s" in apply and apply["planned_s"] is None


def test_a_failed_undo_leaves_the_fault_open_and_heal_journals_a_second_undoing(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    inj = FaultInjector(None, journal)
    Held.fail_undos = 1
    with pytest.raises(RuntimeError), inj.applied(Held("x"), planned_s=1.0):
        pass
    # Started, failed: an ``undoing`` alone does not close the fault.
    assert events(journal) == ["apply", "applied", "undoing", "undo_failed"]
    [still_open] = journal.open_faults()
    assert still_open.target == "x"
    assert inj.heal() == [f"undid test_held x ({still_open.fault_id})"]
    assert events(journal)[4:] == ["undoing", "undo"]
    assert journal.records()[4]["reason"] == "heal"
    assert journal.open_faults() == []


def test_an_apply_that_fails_is_undone_with_an_undoing_line_and_no_applied(tmp_path: Path) -> None:
    class Broken(Held):
        def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("no such node")

    journal = Journal(tmp_path / "journal.jsonl")
    Broken.kind = Held.kind  # undone through FAULTS["test_held"]: Held.undo
    with pytest.raises(RuntimeError):
        FaultInjector(None, journal).inject(Broken("x"), planned_s=3.0)
    records = journal.records()
    assert [r["event"] for r in records] == ["apply", "undoing", "undo"]
    assert records[1]["reason"].startswith("apply failed: ")


def test_the_runner_journals_a_step_duration_as_planned_s_and_none_for_an_instant_fault(
    tmp_path: Path,
) -> None:
    exp = parse(
        """
        [experiment]
        title = "planned durations"
        [[method]]
        fault = "test_held"
        target = "a"
        duration = 0.05
        [[method]]
        fault = "test_instant"
        target = "b"
        after = "previous"
        duration = 7
        """
    )
    journal = Journal(tmp_path / "journal.jsonl")
    result = ExperimentRunner(exp, FaultInjector(None, journal), settle_timeout=1).run()
    assert not result.deviated, result.to_json()
    planned = {r["target"]: r["planned_s"] for r in journal.records() if r["event"] == "apply"}
    assert planned == {"a": 0.05, "b": None}
    for fault_id in {r["fault_id"] for r in journal.records()}:
        assert events(journal, fault_id) == ["apply", "applied", "undoing", "undo"]
