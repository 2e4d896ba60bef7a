"""The records of the run directory's files, with the readers every package shares.

- ``pids.json`` (:class:`Pids`): every PID a drill run started, by role;
- ``chaos/journal.jsonl``: one line per fault event (``apply``, ``applied``, ``undoing``, ``undo``,
  ``undo_failed``; ``chaos.journal`` writes it and documents each field); :func:`journal_records` and
  :func:`open_faults` read it;
- ``metrics/queues.jsonl`` (:class:`QueueDepth`): one line per queue or outbox per sample;
- ``locust/pids.json``: Locust's master and workers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from rundir import JOURNAL, LOCUST_PIDS


class Pids(TypedDict, total=False):
    """``pids.json``: what a drill run started (each written before it is spawned)."""

    runner: int
    #: the local rig's directory (so a crashed run's clean-up finds its cluster)
    cluster_dir: str
    #: the broker processes of a cluster this run started
    cluster: list[int]
    links: int
    supervisor: int
    replicas: list[int]
    simulator: int
    locust: list[int]


class QueueDepth(TypedDict):
    """A line of ``metrics/queues.jsonl``: a queue (``vhost/name``) or an outbox (``outbox:<file>``)."""

    t: float
    queue: str
    messages: int


def read_json(path: Path, default: Any) -> Any:
    """The JSON document in ``path``, or ``default`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, doc: Any) -> None:
    """Replace ``path`` with ``doc`` at once (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def locust_pids(run_dir: Path) -> list[int]:
    """Locust's master and workers (``locust/pids.json``, written by ``loadtests.runner``)."""
    try:
        return [int(p) for p in json.loads((run_dir / LOCUST_PIDS).read_text())]
    except (OSError, ValueError, TypeError):
        return []


@dataclass(frozen=True)
class OpenFault:
    """A fault of the journal that was applied and not (successfully) undone."""

    fault_id: str
    kind: str
    target: str
    undo: dict[str, Any]
    applied_at: float


def journal_records(path: Path) -> list[dict[str, Any]]:
    """Every readable line of a chaos journal, in order (a line cut by a crash is skipped)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash mid-write: the fault it named was never applied
    return out


def open_faults(path: Path) -> list[OpenFault]:
    """Faults of the journal in ``path`` applied and not (successfully) undone, oldest first: only an
    ``undo`` event closes a fault."""
    applied: dict[str, OpenFault] = {}
    for r in journal_records(path):
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


def run_journal(run_dir: Path) -> Path:
    """The chaos journal of the run in ``run_dir``."""
    return run_dir / JOURNAL
