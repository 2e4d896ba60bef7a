"""The audit pipeline over one run directory: discover sources, read, classify, check.

What is read from ``RUN_DIR`` (whatever is there)::

    simulator/ledger.jsonl     the simulator's ledger            (reports.readers.ledger)
    locust/ledger.jsonl        the Locust load test's ledger     (the same reader and kinds)
    ops.jsonl, ops/*.jsonl     generic op records                (reports.readers.jsonl)
    audit.json                 optional configuration:
        {"chains":     [{"name": "order_to_door", "entry": "intake", "exit": "delivery"}],
         "sqlite":     [{"path": "system/platform.db", "tables": [{TableMap fields}, ...]}],
         "invariants": {"orders_flow": "orders", "booking_flow": "booking",
                        "notification_flow": "notification"}}

    chaos/journal.jsonl        the chaos journal: fault windows   (reports.faults)
    metrics/queues.jsonl       optional queue-depth samples       (reports.faults; backlog drain)
    slo.toml                   optional objectives                (reports.slo; defaults in code)
    resources.jsonl            optional CPU / memory samples      (reports.saturation; the drill writes it)

Sqlite paths are relative to the run directory. The report object is the single source for every
writer (report.json, junit.xml, summary.md, report.html), so they never disagree.

report.json, ``schema_version`` 2 (top-level keys, in order)::

    schema_version  3 (2 had no "outcome" / "service" and no check status "error"; 1 had no "slo" /
                    "performance"; every earlier key is unchanged)
    generated_at, run_dir, verdict ("PASS"|"FAIL"|"INCONCLUSIVE", as outcome), outcome, exit_code (0 |
                    1 | 3: reports.outcome), valid, strict, audit_seconds, span
    totals, parked_reasons, checks[] ({name, status, passed, message, counts, samples, details};
                    SLO checks are named "slo[<objective>]"), flows, chains, sources   (as in v1)
    headline        the plain-words verdict, one sentence per list item (reports.story)
    service         how every accepted order ended (reports.service): {accepted, counts {delivered,
                    cancelled, failed_by_world, refused, abandoned, unfinished}, served_share,
                    abandon_reasons, samples, abandoned_why, by_window[] {label, start, end, counts,
                    served_share}, shedding {offered, requests, shed_requests, request_share,
                    shed_orders, shed_share, accepted_after_shed, given_up_after_shed, unresolved,
                    reasons, given_up_why}}  (null when no simulator ledger was read)
    slo             the objectives used: {availability, time_availability, window_error_rate,
                    window_p99_ms, intake_p99_ms, accepted_to_booked_p99_s,
                    accepted_to_delivered_p99_s, failover_s, drain_s}  (a null value = switched
                    off; the whole section is null, like "performance", when only ops were audited)
    performance     {measured, reason, rules,
                     intake: {requests, ok, rejected, unavailable, eligible, availability,
                              latency_ms: {count, p50, p90, p99, max}, http_status: {"2xx": n, ...}},
                     time_availability: {window_s, windows, good, empty, availability, criteria},
                     end_to_end: {accepted_to_booked_s: {count, p50, p90, p99, max},
                                  accepted_to_delivered_s: {...}, delivered_source},
                     faults[]: {fault_id, marker, kind, target, start, applied, undoing, end,
                                duration_s (apply → undo), planned_s, apply_s, held_s, undo_s,
                                in_effect_s, slow_apply, slow_undo, undone, undo_failed,
                                intake: {...as above}, time_availability,
                                accepted_to_booked_s, accepted_to_delivered_s, failover_s, drain: {measured, seconds,
                                queue, baseline, peak, reason}},
                     journal: {present, source, records, malformed},
                     queues: {measured, source, samples, malformed, peak: {queue: n}},
                     series: {t0, bucket_s, accepted_per_s[], delivered_per_s[], requests[],
                              unavailable[], availability[], good[], p50_ms[], p99_ms[],
                              queue_depth[] | null}  (null when nothing was timed)}
    saturation      {verdict ("saturated"|"not saturated"|"not shown"|"no samples"), resource ("cpu"|
                     "process:<role>"|"io"|"memory"|null), sentence, rule {thresholds}, cores,
                     latency_limit_ms, windows {bucket_s, with_traffic, bad, bad_with_samples,
                     bad_in_faults, good}, bad|good|overall {seconds, samples, cpu_busy, steal, iowait,
                     load1, mem_available, cores_by_role, busiest_process}, peak_cpu,
                     throughput {measured, reason, followed, follow_ratio, phases[], peak_sustained_per_s,
                     sustain_s}, source}  (an explanation only: no check, no effect on the verdict;
                     null when only ops were audited)

Times are unix seconds; availabilities are fractions in [0, 1] or null when there was nothing to
measure. The definitions are in :mod:`reports.timeline` (request classes) and
:mod:`reports.performance` (availability, percentiles, failover, drain).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import rundir
from reports.checks import (
    END_TO_END,
    CheckResult,
    InvariantConfig,
    business_checks,
    exit_code,
    failed_but_observed_check,
    harness_traffic_check,
    input_check,
    total_queue_check,
)
from reports.faults import JOURNAL_PATH, QUEUES_PATH, fault_windows, read_journal_records, read_queue_samples
from reports.ops import Collector
from reports.outcome import Outcome, decide
from reports.performance import Performance, measure
from reports.readers import SourceStats
from reports.readers.jsonl import read_jsonl
from reports.readers.ledger import LEDGER_PATH, LOCUST_LEDGER_PATH, read_ledger
from reports.readers.sqlite import TableMap, read_sqlite
from reports.saturation import Saturation, analyse_run
from reports.service import ABANDONED, Service, Window, WorldRecord, service_check
from reports.service import classify as classify_endings
from reports.slo import SloConfig, load_slo
from reports.slo_checks import slo_checks
from reports.story import headline
from reports.taxonomy import FlowAudit, chain_data, classify, merge_counts, reasons_total
from reports.timeline import Timeline

SCHEMA_VERSION = 3
CONFIG_FILE = str(rundir.AUDIT_CONFIG)

#: The counts the verdict line prints, in order (the first three decide validity); ``abandoned`` (from
#: the served audit) is printed right after ``lost``.
VERDICT_COUNTS = (
    "lost",
    "unexpected",
    "duplicated_effects",
    "failed_but_observed",
    "attempts",
    "acknowledged",
    "ok",
    "recovered",
    "duplicated",
    "parked",
    "inflight",
)


@dataclass(frozen=True)
class Chain:
    """An end-to-end view: attempts/outcomes of flow ``entry`` against observations of flow ``exit``."""

    name: str
    entry: str
    exit: str


@dataclass(frozen=True)
class SqliteSource:
    """One database and the table maps to read from it."""

    path: Path
    tables: tuple[TableMap, ...]


@dataclass(frozen=True)
class AuditConfig:
    """Everything the audit can be told; the defaults suit the simulator ledger alone."""

    chains: tuple[Chain, ...] = ()
    sqlite: tuple[SqliteSource, ...] = ()
    invariants: InvariantConfig = field(default_factory=InvariantConfig)
    strict: bool = False

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], base: Path) -> AuditConfig:
        """Parse ``audit.json``; relative sqlite paths are resolved against ``base`` (the run dir)."""
        chains = tuple(Chain(str(c["name"]), str(c["entry"]), str(c["exit"])) for c in raw.get("chains", ()))
        sqlite = tuple(
            SqliteSource(
                path=base / str(s["path"]),
                tables=tuple(TableMap.from_dict(t) for t in s.get("tables", ())),
            )
            for s in raw.get("sqlite", ())
        )
        invariants = InvariantConfig(**raw.get("invariants", {}))
        return cls(chains=chains, sqlite=sqlite, invariants=invariants, strict=bool(raw.get("strict", False)))


#: What the platform's own databases add to the ledgers: the notifications service's rows are what it
#: owed (one per state change, audience and channel, decided in the consumer's transaction), so the
#: one-notification check is *exactly once* against them: owed and never received is ``missing``,
#: received and never owed is ``unowed``. (The drain waits for their pending sends first.)
PLATFORM_AUDIT: Final[dict[str, Any]] = {
    "sqlite": [
        {
            "path": "notifications.db",
            "tables": [
                {
                    "table": "notifications",
                    "id_column": "order_reference",
                    "kind": "expect",
                    "flow": "notification",
                    "key_columns": ["delivery_id", "state", "audience", "recipient", "channel"],
                }
            ],
        }
    ]
}


def write_platform_config(run_dir: Path) -> Path | None:
    """Write :data:`PLATFORM_AUDIT` as the run's ``audit.json`` when the run has a notifications DB and
    no audit.json of its own; the path written, or None."""
    path = run_dir / CONFIG_FILE
    if path.exists() or not (run_dir / "notifications.db").exists():
        return None
    path.write_text(json.dumps(PLATFORM_AUDIT, indent=2) + "\n")
    return path


def load_config(run_dir: Path) -> AuditConfig:
    """The run's ``audit.json`` if there is one, else the defaults."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return AuditConfig()
    return AuditConfig.from_dict(json.loads(path.read_text()), run_dir)


@dataclass
class AuditReport:
    """The whole result of one audit; every writer renders this and nothing else."""

    run_dir: str
    sources: list[SourceStats]
    flows: dict[str, FlowAudit]
    chains: dict[str, FlowAudit]
    checks: list[CheckResult]
    strict: bool = False
    t_min: float | None = None
    t_max: float | None = None
    seconds: float = 0.0
    #: availability / latency / recovery (None when the audit was run on ops alone, e.g. in tests).
    performance: Performance | None = None
    #: which resource ran out when the objectives were missed (explains; never changes the verdict)
    saturation: Saturation | None = None
    #: how every accepted order ended (None when no simulator ledger was read)
    service: Service | None = None
    #: the scenario's name (JUnit suite and class names): drill.json's, else the run directory's
    name: str = "audit"
    #: the broker the run drilled, as drill.json recorded it (``RabbitMQ 4.0.5 (broker 4.0)``); None: unknown
    broker: str | None = None
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def totals(self) -> dict[str, int]:
        """Counts summed over flows (chains re-count the same ids, so they are not added)."""
        return merge_counts(self.flows.values())

    @property
    def valid(self) -> bool:
        """Jepsen validity of every flow and chain (lost, unexpected, duplicated effects empty)."""
        return all(a.valid for a in (*self.flows.values(), *self.chains.values()))

    @property
    def outcome(self) -> Outcome:
        """PASS, FAIL or INCONCLUSIVE (:mod:`reports.outcome`)."""
        return decide(self.checks, strict=self.strict)

    @property
    def exit_code(self) -> int:
        """0 PASS, 1 FAIL, 3 INCONCLUSIVE."""
        return exit_code(self.checks, strict=self.strict)

    @property
    def abandoned(self) -> int | None:
        """Accepted orders the platform abandoned (None when not judged: no simulator ledger)."""
        return None if self.service is None else self.service.counts[ABANDONED]

    def verdict_line(self) -> str:
        """``VERDICT: PASS lost=0 abandoned=0 unexpected=0 ...`` (one line, for CI logs)."""
        totals = self.totals
        failed = [c.name for c in self.checks if c.status == "failed"]
        errors = [c.name for c in self.checks if c.status == "error"]
        skipped = sum(c.status == "skipped" for c in self.checks)
        counts = [f"{k}={totals[k]}" for k in VERDICT_COUNTS]
        if self.abandoned is not None:
            counts.insert(1, f"abandoned={self.abandoned}")
        if self.service is not None and self.service.shedding.shed_requests:
            # Shed requests were never accepted: their own count, beside the loss figures.
            counts.append(f"shed={self.service.shedding.shed_requests}")
        parts = [f"VERDICT: {self.outcome.value}", *counts]
        passed = len(self.checks) - len(failed) - len(errors) - skipped
        parts.append(f"checks={passed}/{len(self.checks)}")
        if skipped:
            parts.append(f"skipped={skipped}")
        if errors:
            parts.append("harness_errors=" + ",".join(errors))
        if failed:
            parts.append("failed=" + ",".join(failed))
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The report.json document (``schema_version`` bumps on any incompatible change)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_at": self.generated_at,
            "run_dir": self.run_dir,
            "name": self.name,
            "broker": self.broker,
            "verdict": self.outcome.value,
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            "valid": self.valid,
            "strict": self.strict,
            "audit_seconds": round(self.seconds, 3),
            "span": {"t_min": self.t_min, "t_max": self.t_max},
            "totals": self.totals,
            "parked_reasons": dict(reasons_total(self.flows.values())),
            "checks": [c.to_dict() for c in self.checks],
            "flows": {name: _flow_dict(a) for name, a in sorted(self.flows.items())},
            "chains": {name: _flow_dict(a) for name, a in sorted(self.chains.items())},
            "sources": [s.to_dict() for s in self.sources],
            "headline": headline(self),
            "service": None if self.service is None else self.service.to_dict(),
            "slo": None if self.performance is None else self.performance.slo.to_dict(),
            "performance": None if self.performance is None else self.performance.to_dict(),
            "saturation": None if self.saturation is None else self.saturation.to_dict(),
        }

    def attach_performance(self, performance: Performance) -> None:
        """Add the performance figures and one check per objective (the exit code now needs them)."""
        self.performance = performance
        self.checks.extend(slo_checks(performance))

    def attach_saturation(self, saturation: Saturation) -> None:
        """Add the saturation finding (no check: it explains the figures, the checks decide)."""
        self.saturation = saturation

    def attach_service(self, service: Service, index: int | None = None) -> None:
        """Add how every accepted order ended and its check ``no_order_abandoned`` (at ``index``)."""
        self.service = service
        check = service_check(service)
        if index is None:
            self.checks.append(check)
        else:
            self.checks.insert(index, check)


def _flow_dict(audit: FlowAudit) -> dict[str, Any]:
    return {
        "valid": audit.valid,
        "counts": audit.counts(),
        "parked_reasons": dict(audit.parked_reasons.most_common()),
        "samples": audit.samples(),
    }


def read_sources(
    run_dir: Path,
    config: AuditConfig,
    collector: Collector,
    timeline: Timeline | None = None,
    world: WorldRecord | None = None,
    harness_faults: list[dict[str, Any]] | None = None,
) -> list[SourceStats]:
    """Read every source found in ``run_dir`` (and configured databases) into ``collector``; the
    ledger's times also go into ``timeline``, what the world did into ``world`` and the harness's own
    fault records into ``harness_faults``, during the same read."""
    sources: list[SourceStats] = []
    for ledger in (run_dir / LEDGER_PATH, run_dir / LOCUST_LEDGER_PATH):
        if ledger.is_file():
            sources.append(read_ledger(ledger, collector, timeline, world, harness_faults))
    generic = [run_dir / "ops.jsonl", *sorted((run_dir / "ops").glob("*.jsonl"))]
    for path in generic:
        if path.is_file():
            sources.append(read_jsonl(path, collector))
    for db in config.sqlite:
        sources.append(read_sqlite(db.path, db.tables, collector))
    return sources


def audit_collected(
    collector: Collector,
    sources: Sequence[SourceStats],
    config: AuditConfig = AuditConfig(),
    *,
    run_dir: str = "",
) -> AuditReport:
    """Classify every flow and chain of ``collector`` and run every check."""
    flows = {name: classify(data) for name, data in sorted(collector.flows.items())}
    chains: dict[str, FlowAudit] = {}
    chain_checks: list[CheckResult] = []
    for chain in config.chains:
        entry, exit_ = collector.flows.get(chain.entry), collector.flows.get(chain.exit)
        if entry is None or exit_ is None:
            missing = [f for f, d in ((chain.entry, entry), (chain.exit, exit_)) if d is None]
            chain_checks.append(
                CheckResult(
                    f"{END_TO_END}[{chain.name}]", "failed", f"chain flow(s) absent from the run: {missing}"
                )
            )
            continue
        chains[chain.name] = audit = classify(chain_data(chain.name, entry, exit_, collector.flows.values()))
        chain_checks.append(total_queue_check(audit, prefix=END_TO_END))

    checks = [input_check(sources)]
    checks += [total_queue_check(a) for a in flows.values()]
    checks += chain_checks
    checks.append(failed_but_observed_check([*flows.values(), *chains.values()]))
    checks += business_checks(flows, collector.flows, config.invariants)
    return AuditReport(
        run_dir=run_dir,
        sources=list(sources),
        flows=flows,
        chains=chains,
        checks=checks,
        strict=config.strict,
        t_min=collector.t_min,
        t_max=collector.t_max,
    )


def measure_run(run_dir: Path, timeline: Timeline, slo: SloConfig, run_end: float | None) -> Performance:
    """Availability, latency and recovery of ``run_dir`` from an already-filled ``timeline`` plus the
    chaos journal and queue samples (both small: read here)."""
    records, journal = read_journal_records(run_dir / JOURNAL_PATH)
    # A fault never undone stays open to the end of the run as the evidence sees it.
    windows = fault_windows(records, run_end)
    queues = read_queue_samples(run_dir / QUEUES_PATH)
    return measure(timeline, windows, queues, slo, journal)


def audit_run(run_dir: Path, config: AuditConfig | None = None, slo: SloConfig | None = None) -> AuditReport:
    """Read whatever ``run_dir`` holds and audit it (the ``audit`` command without the writing).

    ``slo`` defaults to ``RUN/slo.toml`` or the built-in objectives (``ValueError`` on a bad file).
    """
    started = time.perf_counter()
    if config is None:
        config = load_config(run_dir)
    if slo is None:
        slo = load_slo(run_dir)
    collector = Collector()
    timeline = Timeline()
    world = WorldRecord()
    harness_faults: list[dict[str, Any]] = []
    sources = read_sources(run_dir, config, collector, timeline, world, harness_faults)
    report = audit_collected(collector, sources, config, run_dir=str(run_dir))
    report.name = run_name(run_dir)
    report.broker = run_broker(run_dir)
    run_end = max((t for t in (collector.t_max, _last(timeline.answered)) if t is not None), default=None)
    report.attach_performance(measure_run(run_dir, timeline, slo, run_end))
    report.attach_saturation(analyse_run(run_dir, report.performance))
    has_ledger = (run_dir / LEDGER_PATH).is_file()
    orders = report.flows.get(config.invariants.orders_flow)
    if has_ledger and orders is not None:
        report.attach_service(
            classify_endings(world, orders.acknowledged, service_windows(report)),
            index=_after_business(report),
        )
    report.checks.insert(1 if report.checks and report.checks[0].name == "input" else 0,
                         harness_traffic_check(harness_faults, has_ledger))  # fmt: skip
    drained = drain_check(run_dir)
    if drained is not None:
        report.checks.insert(0, drained)
    report.seconds = time.perf_counter() - started
    return report


def run_name(run_dir: Path) -> str:
    """The scenario a run played: ``drill.json``'s ``scenario``, else the run directory's name without
    its leading timestamp (``20261207T010737Z-demo`` → ``demo``)."""
    try:
        doc = json.loads((run_dir / rundir.DRILL).read_text())
        if isinstance(doc, dict) and isinstance(doc.get("scenario"), str) and doc["scenario"]:
            return str(doc["scenario"])
    except (OSError, ValueError):
        pass
    name = run_dir.resolve().name
    head, _, tail = name.partition("-")
    return tail if tail and len(head) == 16 and head.endswith("Z") else name or "audit"


def run_broker(run_dir: Path) -> str | None:
    """The broker a drill ran on, from ``drill.json``'s ``cluster`` record: the version the nodes reported
    and the rig's setting (``RabbitMQ 4.0.5 (broker 4.0)``); None when the run did not record one."""
    try:
        doc = json.loads((run_dir / rundir.DRILL).read_text())
    except (OSError, ValueError):
        return None
    cluster = doc.get("cluster") if isinstance(doc, dict) else None
    if not isinstance(cluster, dict):
        return None
    version, setting = cluster.get("broker_version"), cluster.get("broker")
    if not version and not setting:
        return None
    text = f"RabbitMQ {version}" if version else "RabbitMQ (version not reported)"
    return text + (f" (broker {setting})" if setting else "")


def service_windows(report: AuditReport) -> list[Window]:
    """The spans the endings are broken down by: each traffic phase (when the run sampled them) and each
    fault (orders accepted while it held)."""
    windows: list[Window] = []
    sat, perf = report.saturation, report.performance
    if sat is not None and perf is not None and perf.series is not None and sat.throughput.measured:
        t0 = perf.series.t0
        for p in sat.throughput.phases:
            windows.append(Window(f"{p.start_s:.0f}–{p.end_s:.0f} s", t0 + p.start_s, t0 + p.end_s))
    if perf is not None:
        for i, f in enumerate(perf.faults, 1):
            w = f.window
            windows.append(Window(f"fault {i}: {w.label}", w.start, w.end))
    return windows


def _after_business(report: AuditReport) -> int:
    """Where the served check goes: right after the business invariants (before the objectives)."""
    names = [c.name for c in report.checks]
    for i in range(len(names) - 1, -1, -1):
        if not names[i].startswith("slo["):
            return i + 1
    return len(names)


def drain_check(run_dir: Path) -> CheckResult | None:
    """The ``drained`` check from ``RUN/drain.json`` (written by ``audit --drain``), if the run was drained.

    A failed drain is its own failing check: ids still queued are then reported by the loss audit as
    lost unless an ``inflight`` record explains them, and this check says why.
    """
    path = run_dir / rundir.DRAIN
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    left = {str(k): int(v) for k, v in (doc.get("leftover") or {}).items()}
    if doc.get("drained"):
        return CheckResult("drained", "passed", f"queues and outboxes empty after {doc.get('seconds', 0):.1f} s",
                           details=doc)  # fmt: skip
    return CheckResult(
        "drained",
        "failed",
        f"not drained after {doc.get('seconds', 0):.1f} s: {sum(left.values())} message(s) left in {len(left)} place(s)",
        counts=left,
        details=doc,
    )


def _last(values: Sequence[float]) -> float | None:
    return max(values) if len(values) else None
