"""Which links each partition kind cuts (pure), and the journal's notion of an open fault."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.faults import FaultError
from chaos.faults.partition import components, cut_links
from chaos.journal import Journal


def reachable(nodes: list[int], cut: set[tuple[int, int]], n: int) -> set[int]:
    return {m for m in nodes if m == n or tuple(sorted((m, n))) not in cut}


def test_isolate_cuts_exactly_the_node_links() -> None:
    assert cut_links("isolate:3", [1, 2, 3]) == {(1, 3), (2, 3)}


def test_halves_of_three_is_one_against_two() -> None:
    assert components("halves", [1, 2, 3]) == [{1}, {2, 3}]
    assert cut_links("halves", [1, 2, 3]) == {(1, 2), (1, 3)}


def test_groups_and_their_errors() -> None:
    assert cut_links("groups:1|2", [1, 2, 3]) == {(1, 2), (1, 3), (2, 3)}
    with pytest.raises(FaultError, match="disjoint"):
        cut_links("groups:1,2|2", [1, 2, 3])
    with pytest.raises(FaultError, match="unknown partition"):
        cut_links("sideways", [1, 2, 3])


@given(n=st.integers(3, 9), seed=st.integers(0, 1000))
def test_majorities_ring_every_node_sees_a_majority_none_the_same(n: int, seed: int) -> None:
    nodes = list(range(1, n + 1))
    cut = cut_links("ring", nodes, seed)
    assert cut, "a ring partition cuts something"
    views = [frozenset(reachable(nodes, cut, x)) for x in nodes]
    assert all(len(v) > n // 2 for v in views), "every node sees a majority"
    if n >= 5:
        assert len(set(views)) == n, "no two nodes see the same majority"


@given(n=st.integers(2, 9), seed=st.integers(0, 1000))
def test_halves_are_disjoint_and_cover(n: int, seed: int) -> None:
    nodes = list(range(1, n + 1))
    a, b = components("halves", nodes, seed)
    assert a | b == set(nodes) and not a & b and abs(len(a) - len(b)) <= 1
    assert cut_links("halves", nodes, seed) == {
        tuple(sorted(p)) for p in combinations(nodes, 2) if (p[0] in a) != (p[1] in a)
    }


def test_journal_open_faults_and_a_torn_last_line(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    j.write("apply", "f-1", "kill_node", target="2", undo={"node": 2})
    j.write("apply", "f-2", "partition", target="isolate:3", undo={"chain": "X"})
    j.write("undo", "f-1", "kill_node")
    with open(j.path, "a") as f:
        f.write('{"ts": 1, "event": "apply", "fault_id": "f-3"')  # cut by a crash mid-write
    assert [f.fault_id for f in j.open_faults()] == ["f-2"]
    assert j.open_faults()[0].undo == {"chain": "X"}
