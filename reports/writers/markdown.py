"""summary.md: the one-page human summary (verdict, checks, flows, park reasons, samples, sources)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from reports.audit import VERDICT_COUNTS, AuditReport
from reports.taxonomy import FlowAudit, reasons_total
from reports.writers._atomic import write_text_atomic

FLOW_COLUMNS = (
    "attempts",
    "acknowledged",
    "ok",
    "lost",
    "unexpected",
    "duplicated",
    "duplicated_effects",
    "recovered",
    "failed_but_observed",
    "failed",
    "indeterminate",
    "parked",
    "inflight",
    "effect_records",
)
STATUS_MARK = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "⏭ skipped"}


def _cell(text: object) -> str:
    # A "|" in an id or message would split the table cell; newlines would end the row.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _when(t: float | None) -> str:
    return "—" if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def summary_markdown(report: AuditReport) -> str:
    """The summary as Markdown text."""
    verdict = "PASS" if report.exit_code == 0 else "FAIL"
    out = [f"# Loss audit: {verdict}", "", f"`{report.verdict_line()}`", ""]
    span = ""
    if report.t_min is not None and report.t_max is not None:
        span = f" · ops from {_when(report.t_min)} to {_when(report.t_max)} ({report.t_max - report.t_min:.1f} s)"
    out += [f"Run `{report.run_dir}` · audited in {report.seconds:.2f} s{span}", ""]
    out += [
        "Jepsen total-queue validity (nothing lost, nothing unexpected, no effect twice): "
        + ("**valid**" if report.valid else "**INVALID**"),
        "",
        "## Checks",
        "",
    ]
    out += _table(
        ("check", "status", "message"), ((c.name, STATUS_MARK[c.status], c.message) for c in report.checks)
    )
    out += ["", "## Flows", ""]
    rows: list[list[object]] = []
    for label, audits in (("flow", report.flows), ("chain", report.chains)):
        for name, audit in audits.items():
            counts = audit.counts()
            rows.append([f"{name} ({label})", *(counts[c] for c in FLOW_COLUMNS)])
    totals = report.totals
    rows.append(["**all flows**", *(totals[c] for c in FLOW_COLUMNS)])
    out += _table(("flow", *FLOW_COLUMNS), rows)
    reasons = reasons_total(report.flows.values())
    if reasons:
        out += ["", "## Parked, by reason", ""]
        out += _table(("reason", "ids"), reasons.items())
    out += _samples_section([*report.flows.values(), *report.chains.values()])
    out += ["", "## Sources", ""]
    out += _table(
        ("source", "reader", "records", "ops", "malformed", "ignored"),
        (
            (
                s.source,
                s.reader,
                s.records,
                s.ops,
                s.malformed,
                ", ".join(f"{k}={v}" for k, v in s.ignored.items()),
            )
            for s in report.sources
        ),
    )
    errors = [e for s in report.sources for e in s.errors]
    if errors:
        out += ["", "Malformed records (samples):", "", *(f"- `{e}`" for e in errors)]
    out += ["", f"Counts shown in the verdict: {', '.join(VERDICT_COUNTS)}.", ""]
    return "\n".join(out)


def _samples_section(audits: Sequence[FlowAudit]) -> list[str]:
    """Sample ids of the categories a reader investigates first."""
    interesting = ("lost", "unexpected", "duplicated_effects", "failed_but_observed", "missing_effects")
    lines: list[str] = []
    for audit in audits:
        samples = audit.samples()
        for category in interesting:
            if category in samples:
                lines.append(f"- **{audit.name}** · {category}: `{'`, `'.join(samples[category])}`")
    return ["", "## Samples", "", *lines] if lines else []


def write_summary(report: AuditReport, path: Path) -> None:
    """Write summary.md."""
    write_text_atomic(path, summary_markdown(report))
