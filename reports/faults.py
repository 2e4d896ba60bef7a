"""Fault windows from the chaos journal, and queue-depth samples: the context the performance is read in.

Chaos journal (``RUN/chaos/journal.jsonl``, written by :mod:`chaos.journal`), one JSON line per event
``{"ts", "event", "fault_id", "kind", "target", ...}`` with ``event`` one of::

    apply        journaled *before* the fault takes effect  -> the window starts here (conservative);
                 ``planned_s``: how long it was meant to be held (null: instant or open-ended)
    applied      the fault is in effect                      -> failover is measured from here
    undoing      the undo started (the first one counts)     -> the fault was held until here
    undo         the fault was undone (healed)               -> the window ends here
    undo_failed  the undo raised; a later ``undo`` (heal) may still close the window

So one fault's life splits into what was planned and what happened, side by side::

    apply ──apply_s──► applied ──held_s──► undoing ──undo_s──► undo
                       ├──────────── in_effect_s ─────────────────┤
    ├─────────────── the window (report.json duration_s) ─────────┤

``held_s`` is what to set against ``planned_s``; ``undo_s`` is how long putting it back took (a node
that needed 14 s to rejoin after a 2-s kill); ``in_effect_s`` is what the platform lived through. A
fault whose first undo failed and was healed later counts from its first ``undoing`` to the ``undo``
that closed it. An undo (or apply) is **slow** when it took more than :data:`SLOW_S` and longer than the
fault was planned to last. Journals written before ``planned_s`` and ``undoing`` existed are read as
they are: ``planned_s`` null, ``held_s`` and ``undo_s`` null ("not measured"), the rest unchanged.

A fault never undone (the run was cut, or every undo failed) stays open until the end of the run and
is flagged ``undone = false``. A line that is not valid JSON is skipped and counted: the journal is
fsynced line by line, so only a crash mid-write cuts a line, and the fault it named never took effect.

Queue samples (``RUN/metrics/queues.jsonl``, optional): ``{"t": 1764380000.5, "queue": "orders.intake",
"messages": 42}`` per line, e.g. polled from the management API. Without it backlog drain is
"not measured".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import rundir
from reports import _json

JOURNAL_PATH: Final = rundir.JOURNAL
QUEUES_PATH: Final = rundir.QUEUES

#: How far before a fault the queue baseline is taken (the steady state it must drain back to).
BASELINE_WINDOW_S: Final = 30.0
#: Messages of noise allowed above a small baseline before a queue counts as drained.
DRAIN_MARGIN: Final = 10
#: An undo or apply taking longer than this (and longer than planned) is flagged slow: a node restart
#: takes 5-6 s here, so anything beyond is a restart that struggled, not the fault's own length.
SLOW_S: Final = 5.0


def fault_tag(index: int) -> str:
    """``1``, ``2``, ...: the index-th fault's (0-based) number on the plots and in the fault tables."""
    return str(index + 1)


def _seconds(value: object) -> float | None:
    """A non-negative number of seconds from a journal field, else None (missing, null, malformed)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _slow(took: float | None, planned: float | None) -> bool:
    return took is not None and took > SLOW_S and took > (planned or 0.0)


@dataclass
class FaultWindow:
    """One fault, from its ``apply`` to its ``undo`` (``end`` is the run's end when never undone)."""

    fault_id: str
    kind: str
    target: str
    start: float
    end: float
    applied: float | None = None
    undone: bool = False
    undo_failed: bool = False
    #: how long the fault was meant to be held (``apply``'s ``planned_s``; None: instant, open-ended, old journal)
    planned_s: float | None = None
    #: when the (first) undo started (``undoing``; None: not started, or a journal from before the event)
    undoing: float | None = None

    @property
    def effective_start(self) -> float:
        """When the fault was in effect (``applied``), else when it was journaled (``apply``)."""
        return self.applied if self.applied is not None else self.start

    @property
    def apply_s(self) -> float | None:
        """``apply`` → ``applied``: how long applying took (None: never in effect)."""
        return None if self.applied is None else self.applied - self.start

    @property
    def held_s(self) -> float | None:
        """``applied`` → ``undoing``: how long it was held before the undo started (compare ``planned_s``)."""
        if self.applied is None or self.undoing is None:
            return None
        return self.undoing - self.applied

    @property
    def undo_s(self) -> float | None:
        """``undoing`` → ``undo``: how long the undo took (None: not undone, or not measured)."""
        if not self.undone or self.undoing is None:
            return None
        return self.end - self.undoing

    @property
    def in_effect_s(self) -> float | None:
        """``applied`` → ``undo`` (the run's end when never undone): what the platform lived through."""
        return None if self.applied is None else self.end - self.applied

    @property
    def slow_undo(self) -> bool:
        """The undo took more than :data:`SLOW_S` and longer than the fault was planned to last."""
        return _slow(self.undo_s, self.planned_s)

    @property
    def slow_apply(self) -> bool:
        """Applying took more than :data:`SLOW_S` and longer than the fault was planned to last."""
        return _slow(self.apply_s, self.planned_s)

    @property
    def label(self) -> str:
        """``kind target`` for plots and tables."""
        return f"{self.kind} {self.target}".strip()


@dataclass
class JournalStats:
    """What was read from the journal (for report.json)."""

    path: str
    present: bool = False
    records: int = 0
    malformed: int = 0


def read_journal_records(path: Path) -> tuple[list[dict[str, Any]], JournalStats]:
    """The journal's records (cut lines skipped and counted)."""
    stats = JournalStats(str(path))
    records: list[dict[str, Any]] = []
    if not path.is_file():
        return records, stats
    stats.present = True
    for rec in _json.json_lines(path):
        if not isinstance(rec, dict) or not isinstance(rec.get("fault_id"), str):
            stats.malformed += 1
            continue
        stats.records += 1
        records.append(rec)
    return records, stats


def fault_windows(records: Iterable[dict[str, Any]], run_end: float | None) -> list[FaultWindow]:
    """One window per ``fault_id`` that was applied, in apply order.

    ``run_end`` closes the windows of faults never undone (``None``: they end at their own start
    plus zero, i.e. the last thing the journal knows).
    """
    windows: dict[str, FaultWindow] = {}
    for rec in records:
        ts = rec.get("ts")
        if not isinstance(ts, int | float) or isinstance(ts, bool):
            continue
        event, fid = rec.get("event"), rec["fault_id"]
        win = windows.get(fid)
        if event == "apply" and win is None:
            windows[fid] = FaultWindow(
                fid,
                str(rec.get("kind") or "?"),
                str(rec.get("target") or ""),
                float(ts),
                float(ts),
                planned_s=_seconds(rec.get("planned_s")),
            )
        elif win is None:
            continue  # an undo of a fault applied before this journal started: no window to close
        elif event == "applied" and win.applied is None:
            win.applied = float(ts)
        elif event == "undoing" and win.undoing is None and not win.undone:
            win.undoing = float(ts)
        elif event == "undo" and not win.undone:
            win.end, win.undone = float(ts), True
        elif event == "undo_failed":
            win.undo_failed = True
    for win in windows.values():
        if not win.undone:
            last = max(win.start, win.applied or win.start, win.undoing or win.start)
            win.end = max(last, run_end) if run_end is not None else last
    return sorted(windows.values(), key=lambda w: (w.start, w.fault_id))


@dataclass
class QueueSamples:
    """Depth samples per queue, time-sorted."""

    path: str
    present: bool = False
    malformed: int = 0
    by_queue: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        """How many samples were read."""
        return sum(len(v) for v in self.by_queue.values())


def read_queue_samples(path: Path) -> QueueSamples:
    """``RUN/metrics/queues.jsonl`` (absent: ``present = False``, drain "not measured")."""
    out = QueueSamples(str(path))
    if not path.is_file():
        return out
    out.present = True
    for rec in _json.json_lines(path):
        try:
            t, queue, messages = rec["t"], rec["queue"], rec["messages"]
            if isinstance(t, bool) or isinstance(messages, bool):
                raise TypeError("boolean where a number is expected")
            out.by_queue.setdefault(str(queue), []).append((float(t), int(messages)))
        except (ValueError, TypeError, KeyError):  # MALFORMED is not subscriptable: TypeError
            out.malformed += 1
    for series in out.by_queue.values():
        series.sort()
    return out


@dataclass(frozen=True)
class Drain:
    """How long one fault's backlog took to drain after the heal (the slowest queue decides)."""

    measured: bool
    seconds: float | None = None
    queue: str | None = None
    baseline: int | None = None
    peak: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``drain`` entry of a fault in report.json."""
        return {
            "measured": self.measured,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "queue": self.queue,
            "baseline": self.baseline,
            "peak": self.peak,
            "reason": self.reason,
        }


def drain_time(window: FaultWindow, queues: QueueSamples, others: Sequence[FaultWindow] = ()) -> Drain:
    """Heal → every queue back to its baseline.

    A queue's **baseline** is the median of its depth in the :data:`BASELINE_WINDOW_S` before the fault,
    leaving out samples taken inside another fault's window (a previous fault's backlog is not the
    steady state); 0 when it was not sampled then. The median, not the peak, so one burst does not
    set the bar. It is **drained** at the first sample at or after the heal whose depth is within a
    noise margin of the baseline: ``depth ≤ baseline + max(baseline, DRAIN_MARGIN)``. The fault's drain
    time is the slowest queue's; a queue sampled after the heal that never gets back makes the whole
    fault "not drained" (``seconds = None``).
    """
    if not queues.present:
        return Drain(False, reason="not measured (no metrics/queues.jsonl)")
    if not window.undone:
        return Drain(False, reason="fault never undone")
    elsewhere = [(o.start, o.end) for o in others if o.fault_id != window.fault_id]
    worst: tuple[float, str, int, int] | None = None
    for name, series in sorted(queues.by_queue.items()):
        before = sorted(
            m
            for t, m in series
            if window.start - BASELINE_WINDOW_S <= t < window.start
            and not any(a <= t <= b for a, b in elsewhere)
        )
        baseline = before[(len(before) - 1) // 2] if before else 0
        threshold = baseline + max(baseline, DRAIN_MARGIN)
        during = [m for t, m in series if window.start <= t <= window.end]
        peak = max(during) if during else 0
        drained_at = next((t for t, m in series if t >= window.end and m <= threshold), None)
        if drained_at is None:
            if not any(t >= window.end for t, _ in series):
                continue  # not sampled after the heal: this queue says nothing
            return Drain(True, None, name, baseline, peak, "not drained by the end of the samples")
        seconds = drained_at - window.end
        if worst is None or seconds > worst[0]:
            worst = (seconds, name, baseline, peak)
    if worst is None:
        return Drain(False, reason="no queue sampled after the heal")
    return Drain(True, worst[0], worst[1], worst[2], worst[3])


def total_depth(queues: QueueSamples, edges: Sequence[float]) -> list[int]:
    """Sum over queues of the last sample at or before each edge (for the queue-depth series)."""
    totals = [0] * len(edges)
    for series in queues.by_queue.values():
        i = 0
        last = 0
        for k, edge in enumerate(edges):
            while i < len(series) and series[i][0] <= edge:
                last = series[i][1]
                i += 1
            totals[k] += last
    return totals
