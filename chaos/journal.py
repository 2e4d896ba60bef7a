"""The chaos journal: one JSON line per fault applied, undone, or whose undo failed.

The reports read it to shade fault windows; ``drill chaos heal`` reads it to undo what a crashed
runner left applied. Every line is flushed and fsynced before the fault takes effect (for ``apply``)
or after it is undone (for ``undo``), so a SIGKILL at any point leaves a journal that over-reports
open faults, never under-reports them — and undoing an already-undone fault is harmless.

Line shape::

    {"ts": 1764380000.12, "event": "apply", "fault_id": "f-3b2c…", "kind": "partition",
     "target": "isolate:3", "undo": {...what heal needs...}, "detail": {...}}
    {"ts": ..., "event": "undo", "fault_id": "f-3b2c…", "kind": "partition", "detail": {...}}
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class OpenFault:
    fault_id: str
    kind: str
    target: str
    undo: dict[str, Any]
    applied_at: float


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
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write: the fault it named was never applied
        return out

    def open_faults(self) -> list[OpenFault]:
        """Faults applied and not (successfully) undone, oldest first."""
        applied: dict[str, OpenFault] = {}
        for r in self.records():
            if r.get("event") == "apply":
                applied[r["fault_id"]] = OpenFault(
                    r["fault_id"],
                    r["kind"],
                    str(r.get("target", "")),
                    dict(r.get("undo") or {}),
                    float(r["ts"]),
                )
            elif r.get("event") == "undo":
                applied.pop(r["fault_id"], None)
        return list(applied.values())
