"""report.html: the stakeholder's report, one self-contained file.

No external URL of any kind (CSS inline, plots inline base64 PNG, no script, no font, a ``data:``
favicon so the browser does not even look for one): it opens from a CI artifact, an e-mail or an
air-gapped laptop the same way. The verdict comes first in plain words (:mod:`reports.story`), then the
plots (:mod:`reports.plots`), then the tables. The template is package data,
``reports/templates/report.html.j2``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from reports.audit import AuditReport
from reports.story import headline, pct, seconds, service_sentence, shed_sentence
from reports.writers._atomic import write_text_atomic
from reports.writers.fault_rows import LEGEND as FAULT_LEGEND
from reports.writers.fault_rows import fault_timing
from reports.writers.markdown import FLOW_COLUMNS
from reports.writers.service_rows import service_rows

TEMPLATE = "report.html.j2"
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

_env = jinja2.Environment(
    # Next to this package, not PackageLoader("reports"): a test directory named "reports" on
    # sys.path would shadow the package name and the template would not be found.
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,  # a typo in the template fails the build, not the reader
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(t: float | None) -> str:
    return "—" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms"


def _s(v: float | None) -> str:
    return "—" if v is None else seconds(v)


def context(report: AuditReport, *, plots: bool = True) -> dict[str, Any]:
    """Everything the template shows, pre-formatted (the template stays free of arithmetic)."""
    perf = report.performance
    cards: list[tuple[str, str, str]] = []
    fault_rows: list[dict[str, Any]] = []
    rendered: list[Any] = []
    if perf is not None:
        if perf.measured:
            cards += [
                ("Availability (time)", pct(perf.time.availability), "share of 1-s windows meeting the objective"),
                ("Availability (requests)", pct(perf.intake.availability), f"{perf.intake.ok:,} ok of {perf.intake.eligible:,}"),
                ("Intake p99", _ms(perf.intake.latency.get("p99")), f"p50 {_ms(perf.intake.latency.get('p50'))}"),
                ("Accepted → booked p99", _s(perf.accepted_to_booked.get("p99")), f"p50 {_s(perf.accepted_to_booked.get('p50'))}"),
                ("Accepted → delivered p99", _s(perf.accepted_to_delivered.get("p99")), f"p50 {_s(perf.accepted_to_delivered.get('p50'))}"),
            ]  # fmt: skip
        slowest = perf.slowest_recovery()
        cards.append(
            (
                "Faults",
                str(len(perf.faults)),
                "none injected"
                if not perf.faults
                else f"slowest recovery {_s(slowest.failover_s) if slowest else '—'}",
            )
        )
        t0 = perf.series.t0 if perf.series is not None else None
        for i, f in enumerate(perf.faults):
            w = f.window
            timing = fault_timing(i, w)
            fault_rows.append(
                {
                    "tag": timing.marker,
                    "id": w.fault_id,
                    "kind": w.kind,
                    "target": w.target,
                    "start": "—" if t0 is None else f"+{w.start - t0:.1f} s",
                    "planned": timing.planned,
                    "apply": timing.apply,
                    "held": timing.held,
                    "undo": timing.undo,
                    "in_effect": timing.in_effect,
                    "notes": timing.notes,
                    "flag": timing.flag,
                    "requests": f"{f.intake.requests:,}",
                    "availability": pct(f.intake.availability),
                    "time_availability": pct(f.time.availability),
                    "p99": _ms(f.intake.latency.get("p99")),
                    "delivered_p99": _s(f.accepted_to_delivered.get("p99")),
                    "failover": _s(f.failover_s)
                    if perf.measured and f.traffic_after
                    else "— (no traffic after)",
                    "drain": _s(f.drain.seconds) if f.drain.measured else f.drain.reason or "not measured",
                }
            )
        if plots:
            from reports.plots import all_plots  # lazy: matplotlib only when an HTML report is built

            rendered = all_plots(perf, report.saturation)
    flows = [
        {"name": f"{name} ({label})", "counts": audit.counts()}
        for label, audits in (("flow", report.flows), ("chain", report.chains))
        for name, audit in audits.items()
    ]
    return {
        "verdict": report.outcome.value,
        "name": report.name,
        "service": _service(report),
        "headline": headline(report),
        "verdict_line": report.verdict_line(),
        "run_dir": report.run_dir,
        "broker": report.broker or "",
        "generated_at": report.generated_at,
        "span": f"{_when(report.t_min)} → {_when(report.t_max)}",
        "cards": cards,
        "plots": rendered,
        "perf_reason": "" if perf is None or perf.measured else perf.reason,
        "flow_columns": FLOW_COLUMNS,
        "flows": flows,
        "totals": report.totals,
        "checks": [{"name": c.name, "status": c.status, "message": c.message} for c in report.checks],
        "faults": fault_rows,
        "fault_legend": FAULT_LEGEND,
        "saturation": _saturation(report),
        "slo": [] if perf is None else [(k, v) for k, v in perf.slo.to_dict().items()],
        "sources": [s.to_dict() for s in report.sources],
    }


def _service(report: AuditReport) -> dict[str, Any] | None:
    """The served/abandoned section (None when no simulator ledger was read)."""
    service = report.service
    if service is None or not service.accepted:
        return None
    return {
        "sentence": service_sentence(service) or "",
        "rows": service_rows(service),
        "why": [(e.order, e.why) for e in service.abandoned[:10]],
        "shed": shed_sentence(service),
    }


def _saturation(report: AuditReport) -> dict[str, Any] | None:
    """The saturation section, pre-formatted (``None`` when the audit had no run directory to read)."""
    sat = report.saturation
    if sat is None:
        return None
    tp = sat.throughput
    short = tp.booked_short() if tp.measured else []
    return {
        "verdict": sat.verdict,
        "sentence": sat.sentence,
        "throughput": tp.sentence() if tp.measured or sat.measured else "",
        "rows": sat.table(),
        "phases": [
            {
                "span": f"{p.start_s:.0f}–{p.end_s:.0f} s",
                "nominal": "—" if p.nominal_per_s is None else f"{p.nominal_per_s:g}",
                "offered": f"{p.offered_per_s:.1f}",
                "accepted": f"{p.accepted_per_s:.1f}",
                "booked": "—" if p.booked_share is None else f"{p.booked_share:.0%}",
                "followed": p.followed and p not in short,
            }
            for p in (tp.phases if tp.measured else [])
        ],
        "rule": sat.rule_text() if sat.measured else "",
    }


def report_html(report: AuditReport, *, plots: bool = True, partial: str | None = None) -> str:
    """The report as one HTML document; ``partial``: why the run was cut short (a banner at the top)."""
    return _env.get_template(TEMPLATE).render(**context(report, plots=plots), partial=partial)


def write_html(report: AuditReport, path: Path, *, partial: str | None = None) -> None:
    """Write report.html."""
    write_text_atomic(path, report_html(report, partial=partial))
