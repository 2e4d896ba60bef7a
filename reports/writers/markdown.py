"""summary.md: the one-page human summary (verdict, headline, availability and latency, saturation,
checks, flows, faults, park reasons, samples, sources)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from reports.audit import VERDICT_COUNTS, AuditReport
from reports.performance import Performance
from reports.saturation import Saturation
from reports.service import Service
from reports.story import headline, pct, seconds, service_sentence, shed_sentence
from reports.taxonomy import FlowAudit, reasons_total
from reports.writers._atomic import write_text_atomic
from reports.writers.fault_rows import LEGEND as FAULT_LEGEND
from reports.writers.fault_rows import fault_timing
from reports.writers.service_rows import service_rows

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
STATUS_MARK = {
    "passed": "✅ passed",
    "failed": "❌ failed",
    "skipped": "⏭ skipped",
    "error": "⚠️ harness error",
}


def _cell(text: object) -> str:
    # A "|" in an id or message would split the table cell; newlines would end the row.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _when(t: float | None) -> str:
    return "—" if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _service_section(service: Service) -> list[str]:
    out = ["## How the accepted orders ended", "", service_sentence(service) or "", ""]
    out += _table(
        ["orders accepted in", "accepted", "delivered", "failed at the door", "cancelled", "refused", "abandoned",
         "unfinished", "served"],
        [
            [r["label"], r["accepted"], r["delivered"], r["failed_by_world"], r["cancelled"], r["refused"],
             r["abandoned"], r["unfinished"], r["served"]]
            for r in service_rows(service)
        ],
    )  # fmt: skip
    if service.abandoned:
        out += ["", "Abandoned (what each asked courier last said): "
                + "; ".join(f"`{e.order}` ({e.why})" for e in service.abandoned[:10])]  # fmt: skip
    shed = shed_sentence(service)
    if shed:
        # Never accepted, so not in the table above; a deliberate answer, so not in availability either.
        out += ["", f"**Shed:** {shed}"]
    return [*out, ""]


def summary_markdown(report: AuditReport, *, partial: str | None = None) -> str:
    """The summary as Markdown text; ``partial``: why the run was cut short (said first)."""
    sentences = headline(report)
    out = [f"> **PARTIAL RUN** — {partial}; the figures cover the run up to there.", ""] if partial else []
    out += [f"# {report.name}: {report.outcome.value}", "", f"**{sentences[0]}**", ""]
    out += [f"`{report.verdict_line()}`", ""]
    span = ""
    if report.t_min is not None and report.t_max is not None:
        span = f" · ops from {_when(report.t_min)} to {_when(report.t_max)} ({report.t_max - report.t_min:.1f} s)"
    out += [f"Run `{report.run_dir}` · audited in {report.seconds:.2f} s{span}", ""]
    if report.broker:
        out += [f"Broker: {report.broker}", ""]
    out += [" ".join(sentences[1:]), ""]
    out += [
        "Jepsen total-queue validity (nothing lost, nothing unexpected, no effect twice): "
        + ("**valid**" if report.valid else "**INVALID**"),
        "",
    ]
    if report.service is not None and report.service.accepted:
        out += _service_section(report.service)
    if report.performance is not None:
        out += _performance_section(report.performance)
    if report.saturation is not None:
        out += _saturation_section(report.saturation)
    out += ["## Checks", ""]
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


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms"


def _s(v: float | None) -> str:
    return "—" if v is None else seconds(v)


def _performance_section(perf: Performance) -> list[str]:
    """Availability, latency and the fault table (see reports.performance for the definitions)."""
    out = ["## Availability and latency", ""]
    if not perf.measured:
        return [*out, f"Not measured: {perf.reason}.", ""]
    intake, ta = perf.intake, perf.time
    lat, booked, delivered = perf.intake.latency, perf.accepted_to_booked, perf.accepted_to_delivered
    out += [
        f"- Intake availability (requests): **{pct(intake.availability)}** — {intake.ok:,} ok / "
        f"{intake.eligible:,} ({intake.unavailable:,} unavailable; {intake.rejected:,} rejected for bad "
        "input, not counted)",
        f"- Intake availability (time): **{pct(ta.availability)}** — {ta.good:,} of {ta.windows:,} one-second "
        f"windows with error rate < {pct(ta.error_rate_below)} and p99 < {ta.p99_ms_below:g} ms"
        + (f" ({ta.empty:,} seconds without traffic not counted)" if ta.empty else ""),
        f"- Intake latency: p50 {_ms(lat.get('p50'))}, p99 **{_ms(lat.get('p99'))}**, max {_ms(lat.get('max'))}",
        f"- Accepted → booked: p50 {_s(booked.get('p50'))}, p99 **{_s(booked.get('p99'))}** "
        f"({booked.get('count')} orders)",
        f"- Accepted → delivered: p50 {_s(delivered.get('p50'))}, p99 **{_s(delivered.get('p99'))}** "
        f"({delivered.get('count')} orders; delivered = {perf.delivered_source or 'not seen'})",
        "",
    ]
    if perf.faults:
        timings = [fault_timing(i, f.window) for i, f in enumerate(perf.faults)]
        out += _table(
            (
                "#",
                "fault",
                "kind",
                "target",
                "planned",
                "apply",
                "held",
                "undo",
                "in effect",
                "availability",
                "time avail.",
                "p99",
                "failover",
                "drain",
                "notes",
            ),
            (
                (
                    t.marker,
                    f.window.fault_id,
                    f.window.kind,
                    f.window.target,
                    t.planned,
                    t.apply,
                    t.held,
                    t.undo,
                    t.in_effect,
                    pct(f.intake.availability),
                    pct(f.time.availability),
                    _ms(f.intake.latency.get("p99")),
                    _s(f.failover_s) if f.traffic_after else "— (no traffic after)",
                    _s(f.drain.seconds) if f.drain.measured else f.drain.reason,
                    "; ".join(t.notes),
                )
                for t, f in zip(timings, perf.faults, strict=True)
            ),
        )
        out += ["", f"_{FAULT_LEGEND}_", ""]
    else:
        out += ["No fault was injected (no chaos journal entry).", ""]
    return out


def _saturation_section(sat: Saturation) -> list[str]:
    """Which resource ran out when the objectives were missed, and throughput against the offered load."""
    out = ["## Saturation", "", sat.sentence, ""]
    tp = sat.throughput
    if tp.measured or sat.measured:
        out += [tp.sentence(), ""]
    rows = sat.table()
    if rows:
        out += _table(("", "seconds that missed the objective", "good seconds"), rows)
        out.append("")
    if tp.measured and tp.phases:
        short = tp.booked_short()
        out += _table(
            (
                "phase",
                "nominal orders/s",
                "offered /s (sent)",
                "accepted /s",
                "accepted that got a courier",
                "followed",
            ),
            (
                (
                    f"{p.start_s:.0f}–{p.end_s:.0f} s",
                    "—" if p.nominal_per_s is None else f"{p.nominal_per_s:g}",
                    f"{p.offered_per_s:.1f}",
                    f"{p.accepted_per_s:.1f}",
                    "—" if p.booked_share is None else f"{p.booked_share:.0%}",
                    "yes" if p.followed and p not in short else "**no**",
                )
                for p in tp.phases
            ),
        )
        out.append("")
    if sat.measured:
        out += [f"_{sat.rule_text()}_", ""]
    return out


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


def write_summary(report: AuditReport, path: Path, *, partial: str | None = None) -> None:
    """Write summary.md."""
    write_text_atomic(path, summary_markdown(report, partial=partial))
