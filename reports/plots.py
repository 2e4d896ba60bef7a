"""The report's plots as inline PNGs (base64), drawn with matplotlib's Agg canvas.

Only the object-oriented API is used (``Figure`` + ``FigureCanvasAgg``), never ``pyplot``: pyplot keeps
global state and picks a GUI backend, which a library must not do to its caller. matplotlib is
imported lazily by the HTML writer, so ``drill audit`` (the CI gate) does not pay for it.

Every plot shares the x axis "seconds since the run started" and shades each fault window with its
label (``F1 kill node:2``), so a dip can be read against the fault that caused it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reports.faults import FaultWindow, QueueSamples
from reports.performance import Performance, Series
from reports.saturation import Saturation

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 3.3, 100
FAULT_COLOUR = "#f4a261"
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


def fault_tag(index: int) -> str:
    """``F1``, ``F2``, ...: the short label of the index-th fault (0-based) on plots and in tables."""
    return f"F{index + 1}"


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)  # attaches the Agg canvas to the figure
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("seconds since the run started")
    return fig, ax


def _shade(ax: Axes, faults: Sequence[FaultWindow], t0: float, span: float) -> None:
    """Shade and label every fault window (labels alternate in height so neighbours do not collide),
    and give every plot the same x range ``[0, span]`` so they line up one under another."""
    ax.set_xlim(0, span)
    for i, w in enumerate(faults):
        ax.axvspan(w.start - t0, max(w.end, w.start + 0.5) - t0, color=FAULT_COLOUR, alpha=0.25, lw=0)
        y = 0.97 if i % 2 == 0 else 0.86
        ax.text(
            w.start - t0,
            y,
            f" {fault_tag(i)} {w.label}",
            transform=ax.get_xaxis_transform(),
            va="top",
            ha="left",
            fontsize=8,
            color="#7a3e00",
            clip_on=True,
        )


def _span(series: Series) -> float:
    return max(1.0, len(series.requests) * series.bucket_s)


def _x(series: Series) -> list[float]:
    return [k * series.bucket_s for k in range(len(series.requests))]


def throughput_plot(series: Series, faults: Sequence[FaultWindow]) -> Plot:
    """Orders accepted / delivered per second, and failed intake requests per second."""
    fig, ax = _figure()
    x = _x(series)
    ax.plot(x, series.accepted_per_s, color="#2a9d8f", lw=1.2, label="accepted / s")
    ax.plot(x, series.delivered_per_s, color="#264653", lw=1.2, label="delivered / s")
    failed = [u / series.bucket_s for u in series.unavailable]
    ax.bar(x, failed, width=series.bucket_s, color="#e63946", alpha=0.8, label="intake failures / s")
    ax.set_ylabel("per second")
    ax.set_ylim(bottom=0)
    _shade(ax, faults, series.t0, _span(series))
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    caption = "Orders accepted and delivered per second (distinct orders); red bars: requests that found intake unavailable."
    return Plot("plot-throughput", "Throughput", caption, _png(fig))


def latency_plot(series: Series, faults: Sequence[FaultWindow], slo_p99_ms: float | None) -> Plot:
    """Intake latency p50 / p99 per second (log scale), with the p99 objective."""
    fig, ax = _figure()
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
    _shade(ax, faults, series.t0, _span(series))
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    caption = "Intake answer time per second of send time: median and 99th percentile (nearest rank)."
    return Plot("plot-latency", "Intake latency", caption, _png(fig))


def queue_plot(queues: QueueSamples, faults: Sequence[FaultWindow], t0: float, span: float) -> Plot:
    """Depth of the deepest queues over time."""
    fig, ax = _figure()
    deepest = sorted(queues.by_queue.items(), key=lambda kv: -max((m for _, m in kv[1]), default=0))
    for name, samples in deepest[:MAX_QUEUES]:
        ax.plot([t - t0 for t, _ in samples], [m for _, m in samples], lw=1.1, label=name)
    ax.set_ylabel("messages ready + unacked")
    ax.set_ylim(bottom=0)
    _shade(ax, faults, t0, span)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    caption = f"Queue depth of the {min(MAX_QUEUES, len(deepest))} deepest queues (from metrics/queues.jsonl): backlog built during faults and drained after the heal."
    return Plot("plot-queues", "Queue depth", caption, _png(fig))


def availability_plot(series: Series, faults: Sequence[FaultWindow], slo: float | None) -> Plot:
    """Per-second request availability, with windows that missed the criteria marked."""
    fig, ax = _figure()
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
    _shade(ax, faults, series.t0, _span(series))
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    caption = "Share of intake requests that succeeded, per second; red dots: seconds that missed the window criteria (error rate or p99)."
    return Plot("plot-availability", "Availability over time", caption, _png(fig))


def _role_rank(role: str) -> tuple[int, str]:
    return next((i for i, p in enumerate(ROLE_ORDER) if role.startswith(p)), len(ROLE_ORDER)), role


def cpu_plot(sat: Saturation, faults: Sequence[FaultWindow], t0: float, span: float) -> Plot:
    """CPU by role over time (cores, stacked), the machine's cores, and the seconds that missed."""
    fig, ax = _figure()
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
    ax.set_ylim(0, cores * 1.5)  # headroom for the legend and the fault labels
    ax.set_ylabel("cores busy")
    _shade(ax, faults, t0, span)
    ax.legend(loc="upper center", fontsize=7, framealpha=0.9, ncol=8)
    caption = (
        "CPU used per role, in cores (stacked; 1 = one core busy), from resources.jsonl; grey: every other "
        "process on the machine; red ticks: seconds whose intake p99 or error rate missed the objective."
    )
    return Plot("plot-cpu", "CPU by role", caption, _png(fig))


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
