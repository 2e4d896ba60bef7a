"""Phase "audit": :func:`reports.audit.audit_run` and the drill's own checks (completed, traffic, chaos,
heal); report.json (with the drill's record), junit.xml, summary.md, report.html in the run directory —
a partial run says so at the top of each (:class:`reports.writers.RunRecord`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.drill.checks import drill_checks
from harness.drill.run import DrillRun

if TYPE_CHECKING:
    from reports.audit import AuditReport


def describe(partial: bool) -> str:
    """What the phase does, for its heading."""
    return "report.json, junit.xml, summary.md, report.html" + (" (PARTIAL)" if partial else "")


def audit(run: DrillRun, interrupted: bool, error: str | None, started: float) -> AuditReport:
    """Audit the run directory, write the reports, say the verdict's sentences and each failed check."""
    from reports.audit import audit_run, write_platform_config
    from reports.story import headline
    from reports.writers import RunRecord, write_all

    partial = interrupted or error is not None
    write_platform_config(run.run_dir)  # notifications checked exactly once against what was owed
    report = audit_run(run.run_dir)
    for i, check in enumerate(drill_checks(run, interrupted, error, started)):
        report.checks.insert(i, check)
    record = RunRecord(
        partial=run.partial_reason(interrupted, error) if partial else None,
        drill=run.drill_doc(partial=partial, error=error),
    )
    write_all(report, run.run_dir, html=True, run=record)
    for sentence in headline(report):
        run.say(sentence)
    for check in report.checks:
        if check.status != "passed":
            status = "HARNESS" if check.status == "error" else check.status.upper()
            run.say(f"  {status:7} {check.name}: {check.message}")
    return report
