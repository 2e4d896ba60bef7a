"""Writers render an :class:`reports.audit.AuditReport`: report.json, junit.xml, summary.md.

:func:`write_all` writes the three into one directory; each writer is also usable alone.
"""

from __future__ import annotations

from pathlib import Path

from reports.audit import AuditReport
from reports.writers.json_report import write_json
from reports.writers.junit import write_junit
from reports.writers.markdown import write_summary

REPORT_JSON = "report.json"
JUNIT_XML = "junit.xml"
SUMMARY_MD = "summary.md"


def write_all(report: AuditReport, out_dir: Path) -> list[Path]:
    """Write report.json, junit.xml and summary.md into ``out_dir`` (created); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / REPORT_JSON, out_dir / JUNIT_XML, out_dir / SUMMARY_MD]
    write_json(report, paths[0])
    write_junit(report, paths[1])
    write_summary(report, paths[2])
    return paths
