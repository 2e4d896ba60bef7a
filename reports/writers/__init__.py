"""Writers render an :class:`reports.audit.AuditReport`: report.json, junit.xml, summary.md, report.html.

:func:`write_all` writes them into one directory; each writer is also usable alone. report.html is
optional there (``html=True``): it draws plots with matplotlib, which the CI gate (``drill audit``)
does not need to pay for; ``drill report`` always builds it.
"""

from __future__ import annotations

from pathlib import Path

import rundir
from reports.audit import AuditReport
from reports.writers.json_report import RunRecord, write_json
from reports.writers.junit import write_junit
from reports.writers.markdown import write_summary

__all__ = ["RunRecord", "write_all"]


def write_all(
    report: AuditReport, out_dir: Path, *, html: bool = False, run: RunRecord | None = None
) -> list[Path]:
    """Write report.json, junit.xml, summary.md (and report.html) into ``out_dir``; returns the paths.

    ``run``: the drill's record; a partial run says so at the top of summary.md and report.html.
    """
    partial = run.partial if run is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / rundir.REPORT_JSON, out_dir / rundir.JUNIT_XML, out_dir / rundir.SUMMARY_MD]
    write_json(report, paths[0], run=run)
    write_junit(report, paths[1])
    write_summary(report, paths[2], partial=partial)
    if html:
        from reports.writers.html import write_html  # lazy: jinja2 + matplotlib only when asked

        paths.append(out_dir / rundir.REPORT_HTML)
        write_html(report, paths[3], partial=partial)
    return paths
