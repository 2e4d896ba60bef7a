"""report.json: the machine-readable result (``schema_version`` first; see ``AuditReport.to_dict``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports import _json
from reports.audit import AuditReport
from reports.writers._atomic import write_text_atomic


@dataclass(frozen=True)
class RunRecord:
    """What a drill adds to its audit's reports: why it was cut short (``partial``: None for a whole
    run) and its own record (phases, notes, exits: ``drill.json``'s content)."""

    partial: str | None
    drill: Mapping[str, Any]


def write_json(report: AuditReport, path: Path, *, run: RunRecord | None = None) -> None:
    """Write the report document as indented JSON; with ``run`` (a drill's audit), ``partial`` and the
    drill's own record (``drill``) follow the audit's keys."""
    doc = report.to_dict()
    if run is not None:
        doc["partial"] = run.partial is not None
        doc["drill"] = run.drill
    write_text_atomic(path, _json.dumps_pretty(doc))
