"""The fault table's timing cells, shared by summary.md and report.html so the two never disagree.

Per fault, side by side: what was planned and what happened (definitions in :mod:`reports.faults`)::

    #  planned  apply  held  undo    in effect  notes
    6  2.0 s    125 ms 2.0 s 14.0 s ⚠  16.0 s   ⚠ slow undo: 14.0 s (planned 2.0 s)

``#`` is the fault's number on the plots (:func:`reports.faults.fault_tag`). A journal from before
``planned_s`` and ``undoing`` existed shows "—" as planned and "not measured" as held and undo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from reports.faults import SLOW_S, FaultWindow, fault_tag
from reports.story import seconds

NOT_MEASURED: Final = "not measured"
SLOW_MARK: Final = "⚠"
FAILED_MARK: Final = "✗"
#: What the columns mean, for the line under the table.
LEGEND: Final = (
    "# = the fault's number on the charts. Planned: how long the fault was meant to be held (— for an "
    "instant or open-ended fault, or a journal too old to say). Apply: journaled → in effect. "
    "Held: in effect → undo started. "
    f"Undo: undo started → undone ({SLOW_MARK} slower than {SLOW_S:g} s and than planned; "
    f"{FAILED_MARK} an undo failed). In effect: in effect → undone, what the platform lived through."
)


@dataclass(frozen=True)
class FaultTiming:
    """The formatted timing cells of one fault, and why it is flagged (empty ``notes``: nothing to say)."""

    marker: str
    planned: str
    apply: str
    held: str
    undo: str
    in_effect: str
    notes: tuple[str, ...]
    #: "failed" (an undo failed or never ran), "slow" (a slow undo or apply), or "" (as planned)
    flag: str


def fault_timing(index: int, w: FaultWindow) -> FaultTiming:
    """The cells of the ``index``-th fault (0-based, the order of the fault table and the plots)."""
    planned = seconds(w.planned_s)
    notes: list[str] = []
    if w.undo_s is not None:
        undo = seconds(w.undo_s) + (f" {SLOW_MARK}" if w.slow_undo else "")
    elif w.undo_failed and not w.undone:
        undo = f"failed {FAILED_MARK}"
    elif not w.undone:
        undo = "never undone"
    else:
        undo = NOT_MEASURED  # undone, but the journal predates the "undoing" event
    if w.held_s is not None:
        held = seconds(w.held_s)
    elif w.applied is not None and w.undone and w.undoing is None:
        held = NOT_MEASURED
    else:
        held = "—"
    in_effect = seconds(w.in_effect_s)
    if w.in_effect_s is not None and not w.undone:
        in_effect += " (to the run's end)"
    if w.slow_undo:
        notes.append(
            f"{SLOW_MARK} slow undo: {seconds(w.undo_s)} "
            + (f"(planned {planned})" if w.planned_s is not None else "(an instant fault)")
        )
    if w.slow_apply:
        notes.append(f"{SLOW_MARK} slow apply: {seconds(w.apply_s)}")
    if w.undo_failed:
        notes.append(f"{FAILED_MARK} undo failed" + ("; undone later" if w.undone else "; never undone"))
    elif not w.undone:
        notes.append(f"{FAILED_MARK} never undone")
    if w.applied is None:
        notes.append("never in effect (apply failed or was cut)")
    flag = "failed" if w.undo_failed or not w.undone else ("slow" if w.slow_undo or w.slow_apply else "")
    return FaultTiming(
        marker=fault_tag(index),
        planned=planned,
        apply=seconds(w.apply_s),
        held=held,
        undo=undo,
        in_effect=in_effect,
        notes=tuple(notes),
        flag=flag,
    )
