"""report.json: the machine-readable result (``schema_version`` first; see ``AuditReport.to_dict``)."""

from __future__ import annotations

from pathlib import Path

from reports import _json
from reports.audit import AuditReport
from reports.writers._atomic import write_text_atomic


def write_json(report: AuditReport, path: Path) -> None:
    """Write the report document as indented JSON."""
    write_text_atomic(path, _json.dumps_pretty(report.to_dict()))
