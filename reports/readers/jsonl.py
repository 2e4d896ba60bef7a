"""Generic op records as JSON lines: ``{"t": 12.5, "kind": "ack", "id": "m-1", "flow": "orders"}``.

Optional fields: ``key`` (string or list, for ``effect`` / ``expect``), ``reason`` (for ``parked``; also
read from ``attrs.reason``), ``attrs`` (kept by typed readers, ignored by the fast path). A record
without ``flow`` goes to the collector's default flow. Blank lines are skipped; any other line that is
not a valid op is counted as malformed (the input check then fails the run).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reports import _json
from reports.ops import Collector, Op, OpError, normalise_key
from reports.readers import SourceStats, gc_paused

READER = "jsonl"


def read_jsonl(path: Path, collector: Collector) -> SourceStats:
    """Feed every op of ``path`` into ``collector``; the fast path used by the audit."""
    stats = SourceStats(source=str(path), reader=READER)
    blank = 0

    def on_error(lineno: int, line: bytes, exc: Exception) -> None:
        nonlocal blank
        if not line.strip():
            blank += 1  # an empty line is not evidence of anything: skip it, don't count it
            return
        stats.error(f"{path.name}:{lineno}", f"{type(exc).__name__}: {exc}")

    with path.open("rb") as fh, gc_paused():
        stats.ops = collector.add_records(fh, _json.loads, on_error)
    stats.records = stats.ops + stats.malformed
    return stats


def parse_op(rec: Any) -> Op:
    """One JSON record as a typed :class:`Op` (for callers that want ops, not a collector)."""
    if not isinstance(rec, dict) or "kind" not in rec or "id" not in rec:
        raise OpError(f"not an op record: {rec!r:.200}")
    attrs = dict(rec.get("attrs") or {})
    if "reason" in rec:
        attrs["reason"] = rec["reason"]
    key = rec.get("key")
    return Op(
        kind=str(rec["kind"]),
        id=str(rec["id"]),
        flow=str(rec.get("flow") or "default"),
        t=rec.get("t"),
        key=None if key is None else normalise_key(key),
        attrs=attrs or None,
    )


def iter_ops(path: Path) -> Iterator[Op]:
    """Typed ops of a JSON-lines file; raises :class:`OpError` (with the line number) on a bad line."""
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield parse_op(_json.loads(line))
            except ValueError as exc:
                raise OpError(f"{path.name}:{lineno}: {exc}") from exc
