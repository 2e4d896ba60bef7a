"""The chaos journal: one JSON line per fault applied, undone, or whose undo failed.

The reports read it to shade fault windows and to set what happened against what was planned;
``drill chaos heal`` reads it to undo what a crashed runner left applied. Every line is flushed and
fsynced before the fault takes effect (for ``apply``) or after it is undone (for ``undo``), so a SIGKILL
at any point leaves a journal that over-reports open faults, never under-reports them — and undoing an
already-undone fault is harmless.

Events of one fault, in the order they are written::

    apply        journaled before the fault takes effect; carries the undo record and ``planned_s``
    applied      the fault is in effect (``detail``: what applying observed)
    undoing      the undo starts (``reason``: "" when the holder undoes it, "heal", "apply failed: …")
    undo         the undo finished: the fault is over
    undo_failed  the undo raised (``error``); a later ``undoing`` + ``undo`` (heal) may still close it

The reading side (:func:`rundir.records.open_faults`) is shared with the clean-up of crashed runs.
A fault whose apply failed has no ``applied``; a fault undone again after an ``undo_failed`` has a
second ``undoing``. Only ``undo`` closes a fault (:meth:`Journal.open_faults`): a fault whose undo
started but never finished is still open.

Line shape::

    {"ts": 1764380000.12, "event": "apply", "fault_id": "f-3b2c…", "kind": "partition",
     "target": "isolate:3", "params": {...}, "undo": {...what heal needs...}, "planned_s": 20.0}
    {"ts": ..., "event": "applied", "fault_id": "f-3b2c…", "kind": "partition", "detail": {...}}
    {"ts": ..., "event": "undoing", "fault_id": "f-3b2c…", "kind": "partition", "reason": ""}
    {"ts": ..., "event": "undo", "fault_id": "f-3b2c…", "kind": "partition", "detail": {...},
     "reason": ""}

``planned_s`` is how long the fault was meant to be held (an experiment step's ``duration``, ``drill
chaos apply --duration``); null for an instant fault (a kill whose undo is the restart, closing
connections) or one held open-ended. Journals written before ``planned_s`` and ``undoing`` existed
lack both: readers take a missing ``planned_s`` as null and a missing ``undoing`` as "undo time not
measured" (:mod:`reports.faults`).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from rundir.records import OpenFault, journal_records, open_faults

__all__ = ["Journal", "OpenFault"]


class Journal:
    """Append-only JSON-lines journal of faults, safe against a SIGKILL between any two lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def new_fault_id() -> str:
        return f"f-{uuid.uuid4().hex[:12]}"

    def write(self, event: str, fault_id: str, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"ts": time.time(), "event": event, "fault_id": fault_id, "kind": kind, **fields}
        line = json.dumps(record, default=str) + "\n"
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every readable line, in order (a line cut by a crash is skipped)."""
        return journal_records(self.path)

    def open_faults(self) -> list[OpenFault]:
        """Faults applied and not (successfully) undone, oldest first."""
        return open_faults(self.path)
