"""Fault markers on the charts: numbered in the fault table's order, spread so that none overlaps
another even when faults start within a second of each other, and a key that names each number.

The figures are caught right after they were rendered (``reports.plots._png`` wrapped), so every
extent checked here is the one in the PNG.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from reports import plots
from reports.audit import audit_run
from reports.plots import DPI, WIDTH_IN, FaultMarks, all_plots, spread
from reports.synthetic import SyntheticFault, write_synthetic_run

#: Seven faults, four of them starting within 3 s (the demo's opening burst), two with slow undos.
CROWDED = (
    SyntheticFault("link_down", "3", 10.0, 4.1, 0.0, planned_s=4.0),
    SyntheticFault("kill_replica", "quoting#0", 10.5, 1.1, 0.0, undo_s=1.0),
    SyntheticFault("memory_alarm", "", 11.0, 8.1, 1.0, planned_s=3.0, undo_s=4.0),
    SyntheticFault("kill_replica", "dispatch#0", 12.5, 1.0, 0.0, undo_s=0.9),
    SyntheticFault("kill_replica", "tracking#1", 16.0, 1.0, 0.0, undo_s=0.9),
    SyntheticFault("kill_node", "most-leaders", 25.0, 16.1, 1.5, planned_s=2.0, undo_s=14.0),
    SyntheticFault("full_outage", "", 40.0, 37.9, 3.0, planned_s=3.0, undo_s=27.5),
)
KEY = {
    "1": "link_down 3",
    "2": "kill_replica quoting#0",
    "3": "memory_alarm",
    "4": "kill_replica dispatch#0",
    "5": "kill_replica tracking#1",
    "6": "kill_node most-leaders (slow undo)",
    "7": "full_outage (slow undo)",
}


def rendered(
    run: Path, monkeypatch: pytest.MonkeyPatch, *, first_only: bool = False
) -> list[tuple[Figure, FaultMarks | None]]:
    """Every chart of the run's report (or the first), as the figure that was rendered to PNG."""
    caught: list[tuple[Figure, FaultMarks | None]] = []
    real = plots._png

    def catch(fig: Figure, marks: FaultMarks | None = None) -> str:
        png = real(fig, marks)
        caught.append((fig, marks))
        return png

    monkeypatch.setattr(plots, "_png", catch)
    report = audit_run(run)
    assert report.performance is not None
    perf = report.performance
    if first_only:
        assert perf.series is not None
        plots.throughput_plot(perf.series, [f.window for f in perf.faults])
    else:
        all_plots(perf, report.saturation)
    return caught


def boxes(fig: Figure, texts: list[Text]) -> list[Bbox]:
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    return [(t.get_bbox_patch() or t).get_window_extent(renderer) for t in texts]


def overlap(a: Bbox, b: Bbox) -> bool:
    # Touching edges (anti-aliasing) is not overlapping: half a pixel of slack.
    return bool(min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5)


def markers(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if str(t.get_gid() or "").startswith("fault-marker-")]


def test_crowded_faults_get_numbered_markers_that_do_not_overlap_and_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    write_synthetic_run(run, seconds=90, rate=5, faults=CROWDED, resources=True)
    charts = rendered(run, monkeypatch)
    assert len(charts) == 5  # throughput, latency, cpu, queues, availability
    for fig, marks in charts:
        assert marks is not None and marks.key is not None
        assert fig.get_size_inches()[0] * fig.dpi == WIDTH_IN * DPI == 1400
        found = markers(fig)
        assert [t.get_text() for t in found] == [str(n) for n in range(1, 8)]
        # No fault is labelled inside the chart any more: that is where the labels collided.
        assert len(marks.ax.texts) == 0
        placed = boxes(fig, found)
        for (i, a), (j, b) in itertools.combinations(enumerate(placed), 2):
            assert not overlap(a, b), f"markers {i + 1} and {j + 1} overlap: {a} {b}"
        chart = marks.ax.get_window_extent(fig.canvas.get_renderer())  # type: ignore[attr-defined]
        key = marks.key.get_window_extent(fig.canvas.get_renderer())  # type: ignore[attr-defined]
        figure = fig.bbox
        for n, b in enumerate(placed, start=1):
            assert b.y0 >= chart.y1 - 1, f"marker {n} reaches into the chart"
            assert figure.x0 <= b.x0 and b.x1 <= figure.x1 and b.y1 <= figure.y1, f"marker {n} is cut off"
            assert not overlap(b, key)
        # The key: each number beside its "kind target", whatever order the legend laid them out in.
        labels = {t.get_text(): t for t in marks.key.get_texts()}
        assert set(labels) == {*KEY.values(), "undo in progress"}
        numbers = [t for t in marks.key.findobj(Text) if t.get_text().isdigit()]
        assert sorted(t.get_text() for t in numbers) == sorted(KEY)
        number_boxes = dict(zip([t.get_text() for t in numbers], boxes(fig, numbers), strict=True))
        label_boxes = dict(zip(labels, boxes(fig, list(labels.values())), strict=True))
        for number, nb in number_boxes.items():
            same_row = [
                (lb.x0 - nb.x1, text)
                for text, lb in label_boxes.items()
                if abs((lb.y0 + lb.y1) / 2 - (nb.y0 + nb.y1) / 2) < 4 and lb.x0 >= nb.x1 - 1
            ]
            assert min(same_row)[1] == KEY[number], f"key entry {number} is not beside its label"


def test_forty_faults_spread_over_rows_and_the_key_points_to_the_table_for_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = tuple(
        SyntheticFault("kill_replica", f"svc#{i}", 1.0 + 0.4 * i, 2.0, 0.0, planned_s=1.0) for i in range(40)
    )
    run = tmp_path / "run"
    write_synthetic_run(run, seconds=40, rate=5, faults=many, queues=False)
    [(fig, marks)] = rendered(run, monkeypatch, first_only=True)
    assert marks is not None and marks.rows >= 2 and marks.key is not None
    found = markers(fig)
    assert len(found) == 40
    for a, b in itertools.combinations(boxes(fig, found), 2):
        assert not overlap(a, b)
    labels = [t.get_text() for t in marks.key.get_texts()]
    assert "25–40: see the fault table" in labels and "kill_replica svc#23" in labels
    assert "kill_replica svc#24" not in labels


def test_a_run_without_faults_has_no_markers_and_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    write_synthetic_run(run, seconds=20, rate=5, faults=())
    for fig, marks in rendered(run, monkeypatch):
        assert markers(fig) == [] and fig.legends == []
        assert marks is not None and marks.strip is None


def test_a_lone_marker_stays_over_its_fault() -> None:
    assert spread([100.0, 500.0], [20.0, 20.0], 6.0, 0.0, 1000.0) == [100.0, 500.0]


def test_markers_at_the_edges_are_kept_inside() -> None:
    assert spread([0.0, 999.0], [20.0, 20.0], 6.0, 0.0, 1000.0) == [10.0, 990.0]


@given(
    st.lists(st.tuples(st.floats(-50, 1050), st.floats(10, 40)), min_size=1, max_size=60),
    st.floats(0, 8),
)
def test_spread_never_overlaps_and_stays_inside_when_it_fits(
    boxes_wanted: list[tuple[float, float]], gap: float
) -> None:
    boxes_wanted.sort()
    centres = [c for c, _ in boxes_wanted]
    widths = [w for _, w in boxes_wanted]
    placed = spread(centres, widths, gap, 0.0, 1000.0)
    assert len(placed) == len(centres)
    for k in range(len(placed) - 1):
        assert placed[k + 1] - placed[k] >= (widths[k] + widths[k + 1]) / 2 + gap - 1e-6
    if sum(widths) + gap * (len(widths) - 1) <= 1000.0:
        assert placed[0] - widths[0] / 2 >= -1e-6
        assert placed[-1] + widths[-1] / 2 <= 1000.0 + 1e-6
