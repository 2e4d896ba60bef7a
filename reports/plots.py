"""The report's plots as inline PNGs (base64), drawn with matplotlib's Agg canvas.

Only the object-oriented API is used (``Figure`` + ``FigureCanvasAgg``), never ``pyplot``: pyplot keeps
global state and picks a GUI backend, which a library must not do to its caller. matplotlib is
imported lazily by the HTML writer, so ``drill audit`` (the CI gate) does not pay for it.

Every plot shares the x axis "seconds since the run started" and shades each fault window (journaled
→ undone; the undo in progress hatched), so a dip can be read against the fault that caused it. Faults
are not labelled inside the chart, where neighbours' labels collide: each gets a numbered marker above
the plot area, in the fault table's order (:func:`reports.faults.fault_tag`), joined by a thin line to
the start of its band, and a key under the chart maps the numbers to "kind target". Markers of faults
that start close together are spread sideways (a 1-D dodge that keeps each group centred on its
faults) and, when a row is too full, over more rows, so no two overlap at :data:`WIDTH_IN` x
:data:`DPI` = 1,400 px.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.legend_handler import HandlerBase
from matplotlib.lines import Line2D
from matplotlib.offsetbox import DrawingArea, OffsetBox
from matplotlib.patches import Ellipse, Patch
from matplotlib.text import Text

from reports.faults import FaultWindow, QueueSamples, fault_tag
from reports.performance import Performance, Series
from reports.saturation import Saturation

WIDTH_IN, HEIGHT_IN, DPI = 14.0, 3.3, 100
FAULT_COLOUR = "#f4a261"
#: Markers, their lines, the band edges and the hatching of undos in progress.
FAULT_INK = "#7a3e00"
MARKER_FONTSIZE: Final = 8.5
#: Pixels between two markers of one row.
MARKER_GAP_PX: Final = 6.0
#: Height of one row of markers in pixels (an 8.5-pt number in its circle is ~20 px across).
MARKER_ROW_PX: Final = 26.0
#: The label of the strip axes above a chart that holds the fault markers.
STRIP_LABEL: Final = "fault markers"
#: Rows of markers at most; beyond that a row runs past the right edge rather than overlap.
MAX_MARKER_ROWS: Final = 4
#: Faults named in the key under a chart; the rest are in the fault table.
MAX_KEY_ENTRIES: Final = 24
#: Queues drawn individually in the depth plot (the deepest ones; the rest are summed in "total").
MAX_QUEUES = 5
#: Roles drawn individually in the CPU plot (the busiest; the rest are summed in "other roles").
MAX_ROLES = 12
#: Stacking order of the CPU plot's roles: brokers at the bottom, then services, then the rest.
ROLE_ORDER = ("broker.", "service.", "simulator", "locust", "links", "supervisor", "drill")
#: Distinct colours for the stacked roles (matplotlib's tab20, without its greys).
ROLE_COLOURS = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#bcbd22", "#dbdb8d",
)  # fmt: skip


@dataclass(frozen=True)
class Plot:
    """One rendered plot: a stable id (for tests and anchors), a title, a caption, the PNG as base64."""

    id: str
    title: str
    caption: str
    png_base64: str


@dataclass
class FaultMarks:
    """The numbered markers of one chart, laid out by :func:`place_markers` once the layout is known."""

    ax: Axes
    #: the strip above the chart that holds the markers (None: no fault, no strip)
    strip: Axes | None = None
    #: one per fault, in the fault table's order
    markers: list[Text] = field(default_factory=list)
    #: the line from each marker down to the start of its band
    leaders: list[Line2D] = field(default_factory=list)
    #: x (data) each marker points at: the start of its fault's band
    anchors: list[float] = field(default_factory=list)
    rows: int = 1
    key: Legend | None = None


def _marker_width_px(text: str) -> float:
    """A generous guess of a marker's width before anything is drawn (it sizes the rows and the figure)."""
    em = MARKER_FONTSIZE * DPI / 72
    return em * (0.65 * len(text) + 1.0)


def _rows_needed(count: int) -> int:
    """Rows of markers for ``count`` faults: as many as it takes for each row to fit the chart's width."""
    need = sum(_marker_width_px(fault_tag(i)) + MARKER_GAP_PX for i in range(count))
    return max(1, min(MAX_MARKER_ROWS, math.ceil(need / (WIDTH_IN * DPI * 0.85))))


def _key_columns(labels: Sequence[str]) -> int:
    """Columns of the key so that one row fits the figure's width (8-pt text: ~5 px a character)."""
    widest = max((len(t) for t in labels), default=1) * 5.2 + 45  # the circled number and spacing
    return max(1, min(len(labels), int(WIDTH_IN * DPI * 0.95 // widest)))


def _key_labels(faults: Sequence[FaultWindow]) -> list[str]:
    """The key's text per fault (its number is drawn beside it), flagging slow and failed undos."""
    labels = []
    for w in faults[:MAX_KEY_ENTRIES]:
        label = w.label or w.kind
        if w.undo_failed or not w.undone:
            label += " (undo failed)" if w.undo_failed else " (never undone)"
        elif w.slow_undo:
            label += " (slow undo)"
        labels.append(label)
    if len(faults) > MAX_KEY_ENTRIES:
        labels.append(f"{MAX_KEY_ENTRIES + 1}–{len(faults)}: see the fault table")
    return labels


def _figure(faults: Sequence[FaultWindow] = ()) -> tuple[Figure, Axes]:
    """The chart's figure; with faults, a strip above the chart for their markers and room for the key."""
    rows = _rows_needed(len(faults)) if faults else 0
    strip_in = (rows * MARKER_ROW_PX + 8) / DPI if faults else 0.0
    labels = [*_key_labels(faults), "undo in progress"]
    key_in = 0.2 * math.ceil(len(labels) / _key_columns(labels)) if faults else 0.0
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN + strip_in + key_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches the Agg canvas: markers are laid out from a first draw
    if faults:
        grid = fig.add_gridspec(2, 1, height_ratios=(strip_in, HEIGHT_IN - 0.5))
        ax = fig.add_subplot(grid[1])
        strip = fig.add_subplot(grid[0], sharex=ax, label=STRIP_LABEL)
        strip.set_ylim(0, 1)
        strip.axis("off")
        # The strip sits right on the chart, so the markers' lines meet the bands.
        engine = fig.get_layout_engine()
        if engine is not None:
            engine.set(hspace=0.0, h_pad=0.01)  # type: ignore[call-arg]  # constrained layout takes these
    else:
        ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("seconds since the run started")
    return fig, ax


def _png(fig: Figure, marks: FaultMarks | None = None) -> str:
    if marks is not None:
        place_markers(fig, marks)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class _NumberHandler(HandlerBase):
    """Draws a key entry's handle as the numbered circle of the chart's marker."""

    def __init__(self, number: str) -> None:
        super().__init__()
        self.number = number

    def legend_artist(
        self, legend: Legend, orig_handle: Any, fontsize: float, handlebox: OffsetBox
    ) -> Artist:
        """The circle and its number, centred in the handle's box (smaller type for longer numbers)."""
        assert isinstance(handlebox, DrawingArea)  # what Legend passes to every handler
        d = 1.45 * fontsize  # wider than the box is tall, narrower than a key row is apart
        cx, cy = handlebox.width / 2 - handlebox.xdescent, handlebox.height / 2 - handlebox.ydescent
        circle = Ellipse((cx, cy), d, d, facecolor="white", edgecolor=FAULT_INK, lw=1.1)
        handlebox.add_artist(circle)
        size = fontsize * (0.9, 0.8, 0.62)[min(2, len(self.number) - 1)]
        handlebox.add_artist(
            Text(cx, cy, self.number, ha="center", va="center_baseline", fontsize=size,
                 fontweight="bold", color=FAULT_INK)
        )  # fmt: skip
        return circle


def _row_major(items: Sequence[Any], ncol: int) -> list[Any]:
    """Reorder for a legend, which fills column by column, so that it reads row by row: 1 2 3 / 4 5 6."""
    return [items[i] for c in range(ncol) for i in range(c, len(items), ncol)]


def _shade(ax: Axes, faults: Sequence[FaultWindow], t0: float, span: float) -> FaultMarks:
    """Shade every fault window (hatched while its undo ran) and mark its start; number it in the strip
    above the chart and name it in the key under it. Every plot gets the same x range ``[0, span]`` so
    they line up one under another. The markers are laid out later, by :func:`place_markers`."""
    ax.set_xlim(0, span)
    fig = ax.get_figure()
    strip = None
    if isinstance(fig, Figure):
        strip = next((a for a in fig.axes if a.get_label() == STRIP_LABEL), None)
    marks = FaultMarks(ax, strip, rows=_rows_needed(len(faults)))
    if not faults or strip is None or not isinstance(fig, Figure):
        return marks
    for i, w in enumerate(faults):
        start, end = w.start - t0, max(w.end, w.start + 0.5) - t0
        for target, alpha in ((ax, 0.25), (strip, 0.12)):
            target.axvspan(start, end, color=FAULT_COLOUR, alpha=alpha, lw=0)
        if w.undoing is not None and w.undoing < w.end:
            ax.axvspan(w.undoing - t0, end, facecolor="none", edgecolor=FAULT_INK, hatch="////",
                       alpha=0.35, lw=0)  # fmt: skip
        # The band's left edge: where overlapping bands part, and where the marker's line lands.
        ax.axvline(start, color=FAULT_INK, lw=0.7, alpha=0.6)
        anchor = min(max(start, 0.0), span)
        (leader,) = strip.plot([anchor, anchor], [0.5, 0.0], color=FAULT_INK, lw=0.8, zorder=2,
                               clip_on=False)  # fmt: skip
        marker = strip.text(
            anchor,
            0.5,
            fault_tag(i),
            ha="center",
            va="center",
            fontsize=MARKER_FONTSIZE,
            fontweight="bold",
            color=FAULT_INK,
            bbox={"boxstyle": "circle,pad=0.22", "facecolor": "white", "edgecolor": FAULT_INK, "lw": 1.1},
            zorder=3,
            clip_on=False,
            gid=f"fault-marker-{fault_tag(i)}",
        )
        marks.markers.append(marker)
        marks.leaders.append(leader)
        marks.anchors.append(anchor)
    labels = _key_labels(faults)
    handles: list[Artist] = [Line2D([], [], ls="none") for _ in labels]
    handler_map: dict[Any, HandlerBase] = {
        h: _NumberHandler(fault_tag(i)) for i, h in enumerate(handles[:MAX_KEY_ENTRIES])
    }
    if any(w.undoing is not None for w in faults):
        handles.append(Patch(facecolor="none", edgecolor=FAULT_INK, hatch="////", alpha=0.6, lw=0))
        labels.append("undo in progress")
    ncol = _key_columns(labels)
    marks.key = fig.legend(
        _row_major(handles, ncol),
        _row_major(labels, ncol),
        handler_map=handler_map,
        loc="outside lower center",
        ncol=ncol,
        fontsize=8,
        frameon=False,
        handlelength=1.6,
        columnspacing=1.8,
    )
    return marks


def spread(
    centres: Sequence[float], widths: Sequence[float], gap: float, lo: float, hi: float
) -> list[float]:
    """Centres for boxes of ``widths`` wanted at ``centres`` (sorted ascending), so that no two overlap.

    Neighbours that would overlap are merged into a group of boxes side by side, which sits where its
    members' squared shifts add up least (centred on what they want), within ``[lo, hi]`` when it
    fits. A group wider than ``[lo, hi]`` starts at ``lo`` and runs past ``hi``: still no overlap.
    """
    # Centre of box k from the left edge of a row of boxes 0..k laid side by side.
    offset: list[float] = []
    edge = 0.0
    for w in widths:
        offset.append(edge + w / 2)
        edge += w + gap

    def left_of(a: int) -> float:
        return offset[a] - widths[a] / 2

    def place(a: int, b: int) -> float:
        """The best left edge of the group of boxes a..b."""
        want = sum(centres[k] - (offset[k] - left_of(a)) for k in range(a, b + 1)) / (b - a + 1)
        span = offset[b] + widths[b] / 2 - left_of(a)
        return max(lo, min(want, hi - span))

    groups: list[tuple[int, int, float]] = []  # (first box, last box, left edge)
    for i in range(len(centres)):
        groups.append((i, i, place(i, i)))
        while len(groups) > 1:
            (a, b, left), (_, d, next_left) = groups[-2], groups[-1]
            right = left + offset[b] + widths[b] / 2 - left_of(a)
            if right + gap <= next_left + 1e-9:
                break
            groups[-2:] = [(a, d, place(a, d))]
    out: list[float] = []
    for a, b, left in groups:
        out += [left + offset[k] - left_of(a) for k in range(a, b + 1)]
    return out


def place_markers(fig: Figure, marks: FaultMarks) -> None:
    """Spread the markers over their rows so none overlaps another, from a first draw of the figure."""
    if not marks.markers or marks.strip is None:
        return
    # Settles the layout (the chart's width in pixels, each marker's size) without rasterising.
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # the Agg canvas has one
    to_px, to_data = marks.ax.transData, marks.ax.transData.inverted()
    box = marks.ax.get_window_extent(renderer)
    widths = []
    for m in marks.markers:
        patch = m.get_bbox_patch()
        widths.append((patch or m).get_window_extent(renderer).width)
    anchors_px = [float(to_px.transform((x, 0.0))[0]) for x in marks.anchors]
    rows = marks.rows
    for row in range(rows):
        # Round-robin over the rows: faults close in time land in different rows.
        order = sorted(range(row, len(marks.markers), rows), key=lambda k: (anchors_px[k], k))
        placed = spread(
            [anchors_px[k] for k in order], [widths[k] for k in order], MARKER_GAP_PX, box.x0, box.x1
        )
        y = (row + 0.5) / rows  # row 0 nearest the chart
        for k, centre in zip(order, placed, strict=True):
            x = float(to_data.transform((centre, 0.0))[0])
            marks.markers[k].set_position((x, y))
            marks.leaders[k].set_data([x, marks.anchors[k]], [y, 0.0])


def _span(series: Series) -> float:
    return max(1.0, len(series.requests) * series.bucket_s)


def _x(series: Series) -> list[float]:
    return [k * series.bucket_s for k in range(len(series.requests))]


def throughput_plot(series: Series, faults: Sequence[FaultWindow]) -> Plot:
    """Orders accepted / delivered per second, and failed intake requests per second."""
    fig, ax = _figure(faults)
    x = _x(series)
    ax.plot(x, series.accepted_per_s, color="#2a9d8f", lw=1.2, label="accepted / s")
    ax.plot(x, series.delivered_per_s, color="#264653", lw=1.2, label="delivered / s")
    failed = [u / series.bucket_s for u in series.unavailable]
    ax.bar(x, failed, width=series.bucket_s, color="#e63946", alpha=0.8, label="intake failures / s")
    ax.set_ylabel("per second")
    ax.set_ylim(bottom=0)
    marks = _shade(ax, faults, series.t0, _span(series))
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    caption = "Orders accepted and delivered per second (distinct orders); red bars: requests that found intake unavailable."
    return Plot("plot-throughput", "Throughput", caption, _png(fig, marks))


def latency_plot(series: Series, faults: Sequence[FaultWindow], slo_p99_ms: float | None) -> Plot:
    """Intake latency p50 / p99 per second (log scale), with the p99 objective."""
    fig, ax = _figure(faults)
    x = _x(series)
    p50 = [float("nan") if v is None else v for v in series.p50_ms]
    p99 = [float("nan") if v is None else v for v in series.p99_ms]
    ax.plot(x, p50, color="#457b9d", lw=1.0, label="p50")
    ax.plot(x, p99, color="#e76f51", lw=1.2, label="p99")
    if slo_p99_ms is not None:
        ax.axhline(slo_p99_ms, color="#e63946", ls="--", lw=1, label=f"objective p99 < {slo_p99_ms:g} ms")
    if any(v == v and v > 0 for v in p99):  # NaN != NaN: skip the log scale when nothing was timed
        ax.set_yscale("log")
    ax.set_ylabel("intake latency (ms)")
    marks = _shade(ax, faults, series.t0, _span(series))
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    caption = "Intake answer time per second of send time: median and 99th percentile (nearest rank)."
    return Plot("plot-latency", "Intake latency", caption, _png(fig, marks))


def queue_plot(queues: QueueSamples, faults: Sequence[FaultWindow], t0: float, span: float) -> Plot:
    """Depth of the deepest queues over time."""
    fig, ax = _figure(faults)
    deepest = sorted(queues.by_queue.items(), key=lambda kv: -max((m for _, m in kv[1]), default=0))
    for name, samples in deepest[:MAX_QUEUES]:
        ax.plot([t - t0 for t, _ in samples], [m for _, m in samples], lw=1.1, label=name)
    ax.set_ylabel("messages ready + unacked")
    ax.set_ylim(bottom=0)
    marks = _shade(ax, faults, t0, span)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    caption = f"Queue depth of the {min(MAX_QUEUES, len(deepest))} deepest queues (from metrics/queues.jsonl): backlog built during faults and drained after the heal."
    return Plot("plot-queues", "Queue depth", caption, _png(fig, marks))


def availability_plot(series: Series, faults: Sequence[FaultWindow], slo: float | None) -> Plot:
    """Per-second request availability, with windows that missed the criteria marked."""
    fig, ax = _figure(faults)
    x = _x(series)
    avail = [float("nan") if v is None else v * 100 for v in series.availability]
    ax.plot(x, avail, color="#2a9d8f", lw=1.2, label="requests ok (%)")
    bad_x = [xi for xi, g in zip(x, series.good, strict=True) if g is False]
    bad_y = [a if a == a else 0.0 for a, g in zip(avail, series.good, strict=True) if g is False]
    ax.scatter(bad_x, bad_y, color="#e63946", s=12, zorder=3, label="window missed the objective")
    if slo is not None:
        ax.axhline(slo * 100, color="#e63946", ls="--", lw=1, label=f"objective {slo * 100:g}%")
    ax.set_ylim(-2, 105)
    ax.set_ylabel("availability (%)")
    marks = _shade(ax, faults, series.t0, _span(series))
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    caption = "Share of intake requests that succeeded, per second; red dots: seconds that missed the window criteria (error rate or p99)."
    return Plot("plot-availability", "Availability over time", caption, _png(fig, marks))


def _role_rank(role: str) -> tuple[int, str]:
    return next((i for i, p in enumerate(ROLE_ORDER) if role.startswith(p)), len(ROLE_ORDER)), role


def cpu_plot(sat: Saturation, faults: Sequence[FaultWindow], t0: float, span: float) -> Plot:
    """CPU by role over time (cores, stacked), the machine's cores, and the seconds that missed."""
    fig, ax = _figure(faults)
    samples = sat.samples
    x = [s.mid - t0 for s in samples]
    totals = {
        r: sum(s.roles[r].cpu for s in samples if r in s.roles) for r in {r for s in samples for r in s.roles}
    }
    shown = sorted(sorted(totals, key=lambda r: -totals[r])[:MAX_ROLES], key=_role_rank)
    rest = [r for r in totals if r not in shown]
    stacks: list[list[float]] = [
        [s.roles[r].cpu / 100 if r in s.roles else 0.0 for s in samples] for r in shown
    ]
    labels = list(shown)
    if rest:
        stacks.append([sum(s.roles[r].cpu for r in rest if r in s.roles) / 100 for s in samples])
        labels.append("other roles")
    known = [sum(col) for col in zip(*stacks, strict=True)] if stacks else [0.0] * len(samples)
    stacks.append([max(0.0, s.cpu_busy * s.cores - k) for s, k in zip(samples, known, strict=True)])
    labels.append("other processes")
    colours = [ROLE_COLOURS[i % len(ROLE_COLOURS)] for i in range(len(stacks) - 1)] + ["#bbbbbb"]
    ax.stackplot(x, *stacks, labels=labels, colors=colours, alpha=0.85, lw=0)
    cores = sat.cores or max((s.cores for s in samples), default=1)
    ax.axhline(cores, color="#1d2a33", ls="--", lw=1, label=f"{cores} cores")
    bad_x = [(k + 0.5) * sat.bucket_s for k in sat.bad_buckets]
    ax.scatter(bad_x, [0.0] * len(bad_x), marker="|", s=60, color="#e63946", zorder=3, clip_on=False,
               label="second that missed the objective")  # fmt: skip
    ax.set_ylim(0, cores * 1.5)  # headroom for the legend
    ax.set_ylabel("cores busy")
    marks = _shade(ax, faults, t0, span)
    ax.legend(loc="upper center", fontsize=7, framealpha=0.9, ncol=8)
    caption = (
        "CPU used per role, in cores (stacked; 1 = one core busy), from resources.jsonl; grey: every other "
        "process on the machine; red ticks: seconds whose intake p99 or error rate missed the objective."
    )
    return Plot("plot-cpu", "CPU by role", caption, _png(fig, marks))


def all_plots(perf: Performance, saturation: Saturation | None = None) -> list[Plot]:
    """Every plot the run has data for, in reading order."""
    series = perf.series
    if series is None:
        return []
    faults = [f.window for f in perf.faults]
    plots = [throughput_plot(series, faults), latency_plot(series, faults, perf.slo.intake_p99_ms)]
    if saturation is not None and saturation.samples:
        plots.append(cpu_plot(saturation, faults, series.t0, _span(series)))
    if perf.queues is not None and perf.queues.present and perf.queues.by_queue:
        plots.append(queue_plot(perf.queues, faults, series.t0, _span(series)))
    plots.append(availability_plot(series, faults, perf.slo.availability))
    return plots
