"""``drill compare RUN_A RUN_B``: what changed between two runs' report.json, as a table with deltas.

Reads only the two report.json files (``RUN/audit/report.json``, or a path to the file itself), so two
runs audited months apart compare without re-reading their ledgers. A schema-1 report (before
availability was measured) compares too: its performance rows show "—".

Rows: verdict, loss counts, availability (requests, time), latency p50/p99 (intake, accepted → booked,
accepted → delivered), faults and the slowest failover, then the status of every SLO check either run
has. A delta is B − A: counts and times as numbers, availabilities in percentage points (``pp``),
statuses as ``changed`` / ``=``.

:func:`gate` makes the comparison a regression gate (``drill compare --tolerance``), with the drill's exit
codes: 1 when the newer run B regressed against A — its verdict went from PASS to FAIL, a broken-promise
count grew (lost, abandoned, unexpected, duplicated effects, failed but observed), an SLO check went from
passed to failed, or a gated latency (the p99s the objectives are on, the slowest failover) grew by more
than ``tolerance`` (0.2: B above 1.2 × A); 3 when either run is INCONCLUSIVE (its figures prove
nothing; rerun it); 0 otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import rundir
from reports.outcome import EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS, Outcome
from reports.slo import SLO_PREFIX

Kind = Literal["text", "count", "fraction", "ms", "s"]

LOSS_COUNTS = ("lost", "unexpected", "duplicated_effects", "failed_but_observed", "acknowledged", "ok")
ABANDONED = "abandoned"

#: Counts where any increase is a regression: each one is a promise the platform broke.
PROMISE_COUNTS = ("lost", ABANDONED, "unexpected", "duplicated_effects", "failed_but_observed")
#: Times gated by ratio: the percentile the latency objectives are on (p99), and the slowest failover.
#: p50s are shown, not gated: a median moves with the machine's load more than with a regression.
GATED_TIMES = ("intake p99", "accepted→booked p99", "accepted→delivered p99", "slowest failover")
#: Default ``--tolerance``: B's gated time may be up to 20 % above A's.
DEFAULT_TOLERANCE = 0.2


@dataclass(frozen=True)
class Row:
    """One compared figure: its label, both values, and how to show them."""

    label: str
    a: Any
    b: Any
    kind: Kind

    @property
    def delta(self) -> float | None:
        """B − A for numbers (``None`` when either side is missing or not a number)."""
        if self.kind == "text" or not _number(self.a) or not _number(self.b):
            return None
        return float(self.b) - float(self.a)

    @property
    def changed(self) -> bool:
        """The two runs differ on this row."""
        return bool(self.a != self.b)

    def cells(self) -> tuple[str, str, str, str]:
        """label, A, B, delta as display text."""
        return self.label, _fmt(self.a, self.kind), _fmt(self.b, self.kind), self._delta_text()

    def _delta_text(self) -> str:
        if self.kind == "text":
            return "=" if not self.changed else "changed"
        d = self.delta
        if d is None:
            return "=" if not self.changed else "n/a"
        if d == 0:
            return "="
        if self.kind == "fraction":
            return f"{d * 100:+.3f} pp"
        if self.kind == "count":
            return f"{d:+,.0f}"
        if self.kind == "ms":
            return f"{d:+.1f} ms"
        return f"{d:+.3f} s"


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _fmt(x: object, kind: Kind) -> str:
    if x is None:
        return "—"
    if kind == "text" or not _number(x):
        return str(x)
    value = float(str(x))
    if kind == "fraction":
        return f"{value * 100:.3f}%"
    if kind == "count":
        return f"{value:,.0f}"
    if kind == "ms":
        return f"{value:.1f} ms"
    return f"{value:.3f} s"


def load_report(path: Path) -> dict[str, Any]:
    """report.json of a run directory (``RUN/audit/report.json``), or the file at ``path``."""
    candidates = (
        [path]
        if path.is_file()
        else [path / rundir.AUDIT_DIR / rundir.REPORT_JSON, path / rundir.REPORT_JSON]
    )
    for candidate in candidates:
        if candidate.is_file():
            doc = json.loads(candidate.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError(f"{candidate} is not a report.json object")
            return doc
    raise FileNotFoundError(f"no report.json under {path} (run `drill report {path}` first)")


def _get(doc: Mapping[str, Any], *path: str | int) -> Any:
    node: Any = doc
    for key in path:
        if isinstance(node, Mapping) and isinstance(key, str):
            node = node.get(key)
        elif isinstance(node, Sequence) and isinstance(key, int) and -len(node) <= key < len(node):
            node = node[key]
        else:
            return None
    return node


def _slowest_failover(doc: Mapping[str, Any]) -> float | None:
    faults = _get(doc, "performance", "faults") or []
    values = [f.get("failover_s") for f in faults if isinstance(f, Mapping)]
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(numbers) if numbers else None


def _abandoned(doc: Mapping[str, Any]) -> Any:
    # Not judged (None) when the run had no simulator ledger, e.g. an ops-only audit.
    return _get(doc, "service", "counts", ABANDONED)


def _slo_status(doc: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(c.get("name")): str(c.get("status"))
        for c in doc.get("checks") or []
        if isinstance(c, Mapping) and str(c.get("name", "")).startswith(SLO_PREFIX + "[")
    }


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Row]:
    """The rows of the comparison, in reading order."""
    rows = [Row("verdict", a.get("verdict"), b.get("verdict"), "text")]
    rows += [Row(k, _get(a, "totals", k), _get(b, "totals", k), "count") for k in LOSS_COUNTS]
    rows.append(Row(ABANDONED, _abandoned(a), _abandoned(b), "count"))
    perf = ("performance",)
    rows += [
        Row("availability (requests)", _get(a, *perf, "intake", "availability"),
            _get(b, *perf, "intake", "availability"), "fraction"),
        Row("availability (time)", _get(a, *perf, "time_availability", "availability"),
            _get(b, *perf, "time_availability", "availability"), "fraction"),
    ]  # fmt: skip
    for p in ("p50", "p99"):
        rows.append(
            Row(f"intake {p}", _get(a, *perf, "intake", "latency_ms", p), _get(b, *perf, "intake", "latency_ms", p), "ms")
        )  # fmt: skip
    for key, label in (
        ("accepted_to_booked_s", "accepted→booked"),
        ("accepted_to_delivered_s", "accepted→delivered"),
    ):
        for p in ("p50", "p99"):
            rows.append(
                Row(f"{label} {p}", _get(a, *perf, "end_to_end", key, p), _get(b, *perf, "end_to_end", key, p), "s")
            )  # fmt: skip
    faults_a, faults_b = _get(a, *perf, "faults"), _get(b, *perf, "faults")
    rows.append(
        Row("faults", None if faults_a is None else len(faults_a), None if faults_b is None else len(faults_b), "count")
    )  # fmt: skip
    rows.append(Row("slowest failover", _slowest_failover(a), _slowest_failover(b), "s"))
    slo_a, slo_b = _slo_status(a), _slo_status(b)
    for name in sorted(slo_a.keys() | slo_b.keys()):
        rows.append(Row(name, slo_a.get(name), slo_b.get(name), "text"))
    return rows


def render(rows: Sequence[Row], name_a: str = "A", name_b: str = "B") -> str:
    """A plain-text table (fixed-width columns; readable in a CI log and in a terminal)."""
    header = ("", name_a, name_b, "Δ (B − A)")
    table = [header, *(r.cells() for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    lines = []
    for k, line in enumerate(table):
        mark = "*" if k > 0 and rows[k - 1].changed else " "
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        lines.append(f"{mark} " + "  ".join(cells).rstrip())
        if k == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Gate:
    """The comparison as a gate: the exit code and, one per line, why."""

    exit_code: int
    reasons: list[str]

    def line(self) -> str:
        """The closing line a CI log shows: ``REGRESSED: ...``, ``INCONCLUSIVE: ...`` or ``NO REGRESSION``."""
        if self.exit_code == EXIT_FAIL:
            return "REGRESSED: " + "; ".join(self.reasons)
        if self.exit_code == EXIT_INCONCLUSIVE:
            return "INCONCLUSIVE: " + "; ".join(self.reasons)
        return "NO REGRESSION"


def regressions(rows: Sequence[Row], tolerance: float = DEFAULT_TOLERANCE) -> list[str]:
    """Why B is worse than A, one plain sentence per regressed row (empty: no regression).

    A figure missing on either side (an older schema, an ops-only run) is not compared.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, not {tolerance}")
    found = []
    for row in rows:
        if row.label == "verdict":
            if row.a == Outcome.PASS.value and row.b == Outcome.FAIL.value:
                found.append("verdict went from PASS to FAIL")
        elif row.label in PROMISE_COUNTS:
            if row.delta is not None and row.delta > 0:
                found.append(f"{row.label} went from {_fmt(row.a, row.kind)} to {_fmt(row.b, row.kind)}")
        elif row.label.startswith(SLO_PREFIX + "["):
            if row.a == "passed" and row.b == "failed":
                found.append(f"{row.label} went from passed to failed")
        elif row.label in GATED_TIMES and _number(row.a) and _number(row.b):
            a, b = float(row.a), float(row.b)
            if a > 0 and b > a * (1 + tolerance):
                found.append(
                    f"{row.label} went from {_fmt(a, row.kind)} to {_fmt(b, row.kind)} "
                    f"(+{(b / a - 1) * 100:.0f}%, tolerance {tolerance * 100:g}%)"
                )
    return found


def gate(a: Mapping[str, Any], b: Mapping[str, Any], tolerance: float = DEFAULT_TOLERANCE) -> Gate:
    """Did run B regress against run A? The drill's exit codes: 0 no, 1 yes, 3 a run proves nothing.

    An INCONCLUSIVE run (the harness could not carry out its plan) decides, as it does a drill's verdict:
    its figures are not evidence either way.
    """
    inconclusive = [
        f"run {name} is INCONCLUSIVE: rerun it"
        for name, doc in (("A", a), ("B", b))
        if doc.get("verdict") == Outcome.INCONCLUSIVE.value
    ]
    if inconclusive:
        return Gate(EXIT_INCONCLUSIVE, inconclusive)
    found = regressions(compare(a, b), tolerance)
    return Gate(EXIT_FAIL if found else EXIT_PASS, found)
