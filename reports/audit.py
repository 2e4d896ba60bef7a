"""The audit pipeline over one run directory: discover sources, read, classify, check.

What is read from ``RUN_DIR`` (whatever is there)::

    simulator/ledger.jsonl     the simulator's ledger            (reports.readers.ledger)
    ops.jsonl, ops/*.jsonl     generic op records                (reports.readers.jsonl)
    audit.json                 optional configuration:
        {"chains":     [{"name": "order_to_door", "entry": "intake", "exit": "delivery"}],
         "sqlite":     [{"path": "system/platform.db", "tables": [{TableMap fields}, ...]}],
         "invariants": {"orders_flow": "orders", "booking_flow": "booking",
                        "notification_flow": "notification"}}

Sqlite paths are relative to the run directory. The report object is the single source for every
writer (report.json, junit.xml, summary.md — and later the HTML report), so they never disagree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reports.checks import (
    END_TO_END,
    CheckResult,
    InvariantConfig,
    business_checks,
    exit_code,
    failed_but_observed_check,
    input_check,
    total_queue_check,
)
from reports.ops import Collector
from reports.readers import SourceStats
from reports.readers.jsonl import read_jsonl
from reports.readers.ledger import LEDGER_PATH, read_ledger
from reports.readers.sqlite import TableMap, read_sqlite
from reports.taxonomy import FlowAudit, chain_data, classify, merge_counts, reasons_total

SCHEMA_VERSION = 1
CONFIG_FILE = "audit.json"

#: The counts the verdict line prints, in order (the first three decide validity).
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
    def exit_code(self) -> int:
        """0 only when every check passed."""
        return exit_code(self.checks, strict=self.strict)

    def verdict_line(self) -> str:
        """``VERDICT: PASS lost=0 unexpected=0 duplicated_effects=0 ...`` (one line, for CI logs)."""
        totals = self.totals
        failed = [c.name for c in self.checks if c.status == "failed"]
        skipped = sum(c.status == "skipped" for c in self.checks)
        word = "PASS" if self.exit_code == 0 else "FAIL"
        parts = [f"VERDICT: {word}", *(f"{k}={totals[k]}" for k in VERDICT_COUNTS)]
        parts.append(f"checks={len(self.checks) - len(failed) - skipped}/{len(self.checks)}")
        if skipped:
            parts.append(f"skipped={skipped}")
        if failed:
            parts.append("failed=" + ",".join(failed))
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The report.json document (``schema_version`` bumps on any incompatible change)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_at": self.generated_at,
            "run_dir": self.run_dir,
            "verdict": "PASS" if self.exit_code == 0 else "FAIL",
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
        }


def _flow_dict(audit: FlowAudit) -> dict[str, Any]:
    return {
        "valid": audit.valid,
        "counts": audit.counts(),
        "parked_reasons": dict(audit.parked_reasons.most_common()),
        "samples": audit.samples(),
    }


def read_sources(run_dir: Path, config: AuditConfig, collector: Collector) -> list[SourceStats]:
    """Read every source found in ``run_dir`` (and configured databases) into ``collector``."""
    sources: list[SourceStats] = []
    ledger = run_dir / LEDGER_PATH
    if ledger.is_file():
        sources.append(read_ledger(ledger, collector))
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


def audit_run(run_dir: Path, config: AuditConfig | None = None) -> AuditReport:
    """Read whatever ``run_dir`` holds and audit it (the ``audit`` command without the writing)."""
    started = time.perf_counter()
    if config is None:
        config = load_config(run_dir)
    collector = Collector()
    sources = read_sources(run_dir, config, collector)
    report = audit_collected(collector, sources, config, run_dir=str(run_dir))
    report.seconds = time.perf_counter() - started
    return report
