"""Heal's result: what it did and what it could not mend, and ``drill chaos heal``'s exit code — with a
fake rig (no broker: the real one is in tests/integration/cluster/test_heal_unmendable.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import chaos.cli
import chaos.injector
from chaos.injector import FaultInjector, HealReport
from chaos.journal import Journal
from rig.cluster import ClusterSpec, LocalCluster, MendResult

BROKEN = (
    "node 2 (rabbit2@127.0.99.2) is down; last boot crash: {badmap,undefined} in rabbit_feature_flags:x/2"
)


class UnmendableRig(LocalCluster):
    """A rig whose node 2 will not come back: what LocalCluster.mend reports then."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(ClusterSpec(run_dir=run_dir, address_block=99))

    def is_running(self) -> bool:
        return True

    def mend(self, timeout: float | None = None) -> MendResult:
        return MendResult(done=["resumed node 1"], unmended=[BROKEN])


@pytest.fixture(autouse=True)
def no_iptables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The sweep looks for a leftover partition chain with iptables: not on a unit test's machine.
    monkeypatch.setattr(chaos.injector, "chain_exists", lambda chain: False)
    # No crashed runs and no rig of the user's: only what the test sets up.
    monkeypatch.setenv("DRILL_ROOT", str(tmp_path / "root"))
    monkeypatch.delenv("DRILL_CHAOS_JOURNAL", raising=False)


def test_the_report_is_still_a_list_of_lines_and_says_what_was_not_mended() -> None:
    report = HealReport()
    report.did("undid partition isolate:3 (f-1)")
    report.failed("node 2 is down")
    assert list(report) == ["undid partition isolate:3 (f-1)", "NOT MENDED: node 2 is down"]
    assert report.unmended == ["node 2 is down"] and report.done == ["undid partition isolate:3 (f-1)"]
    assert not report.ok
    other = HealReport()
    other.did("resumed node 1")
    report.merge(other)
    assert report[-1] == "resumed node 1" and not report.ok
    assert HealReport().ok


def test_a_failed_undo_is_reported_and_the_next_fault_is_still_undone(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    # Two faults whose undo cannot run here (no cluster; no supervised system) ...
    journal.write("apply", "f-1", "memory_alarm", target="", undo={})
    journal.write("apply", "f-2", "pause_replica", target="quoting#0",
                  undo={"system_dir": str(tmp_path / "no-system"), "service": "quoting", "index": 0, "pid": 1})  # fmt: skip
    # ... and one of an unknown kind.
    journal.write("apply", "f-3", "no_such_fault", target="x", undo={})
    report = FaultInjector(None, journal).heal()
    assert not report.ok
    assert [u.split(" (")[0] for u in report.unmended] == [
        "undo of memory_alarm",
        "undo of pause_replica quoting#0",
        "unknown fault kind 'no_such_fault' in the journal",
    ]
    assert "needs the local provider" in report.unmended[0]
    events = [(r["event"], r["fault_id"]) for r in journal.records()]
    assert ("undo_failed", "f-1") in events and ("undo_failed", "f-2") in events
    assert {f.fault_id for f in journal.open_faults()} == {"f-1", "f-2", "f-3"}  # still open: not mended


def test_heal_names_the_node_it_could_not_bring_back_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = UnmendableRig(tmp_path / "rig")
    inj = FaultInjector(rig, Journal(tmp_path / "journal.jsonl"))
    monkeypatch.setattr(chaos.cli, "_injector", lambda run_dir, journal, allow_external: inj)
    res = CliRunner().invoke(chaos.cli.app, ["heal"])
    assert res.exit_code == 1, res.output
    assert "resumed node 1" in res.stdout
    assert "NOT MENDED: " + BROKEN in res.stdout
    assert "could not mend 1 thing(s)" in res.stderr
    assert "node 2 (rabbit2@127.0.99.2) is down" in res.stderr and "badmap" in res.stderr


def test_heal_exits_0_when_everything_was_mended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class WholeRig(UnmendableRig):
        def mend(self, timeout: float | None = None) -> MendResult:
            return MendResult(done=["restarted node(s) [2]"])

    inj = FaultInjector(WholeRig(tmp_path / "rig"), Journal(tmp_path / "journal.jsonl"))
    monkeypatch.setattr(chaos.cli, "_injector", lambda run_dir, journal, allow_external: inj)
    res = CliRunner().invoke(chaos.cli.app, ["heal"])
    assert res.exit_code == 0, res.output
    assert "restarted node(s) [2]" in res.stdout and "NOT MENDED" not in res.stdout


def test_heal_with_no_rig_and_no_crashed_run_has_nothing_to_do() -> None:
    res = CliRunner().invoke(chaos.cli.app, ["heal"])
    assert res.exit_code == 0, res.output
    assert "nothing to heal" in res.stdout
