"""Writers render an :class:`reports.audit.AuditReport`: report.json, junit.xml, summary.md, report.html.

:func:`write_all` writes them into one directory; each writer is also usable alone. report.html is
optional there (``html=True``): it draws plots with matplotlib, which the CI gate (``drill audit``)
does not need to pay for; ``drill report`` always builds it.
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
REPORT_HTML = "report.html"


def write_all(report: AuditReport, out_dir: Path, *, html: bool = False) -> list[Path]:
    """Write report.json, junit.xml, summary.md (and report.html) into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / REPORT_JSON, out_dir / JUNIT_XML, out_dir / SUMMARY_MD]
    write_json(report, paths[0])
    write_junit(report, paths[1])
    write_summary(report, paths[2])
    if html:
        from reports.writers.html import write_html  # lazy: jinja2 + matplotlib only when asked

        paths.append(out_dir / REPORT_HTML)
        write_html(report, paths[3])
    return paths
