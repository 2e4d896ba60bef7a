"""Ops from SQLite tables, through a small mapping, so the platform's own databases (outbox, inbox,
effects, parking lot) can feed the audit::

    TableMap(table="outbox", id_column="message_id", kind="ack", flow="dispatch",
             t_column="confirmed_at", where="status = 'confirmed'")
    TableMap(table="inbox", id_column="message_id", kind="observe", flow="dispatch")
    TableMap(table="notifications", id_column="delivery_id", kind="effect", flow="notification",
             key_columns=("delivery_id", "state", "recipient", "channel"))
    TableMap(table="parked", id_column="message_id", kind="parked", flow="dispatch",
             reason_column="reason")

Several maps may read the same table with different ``where`` clauses (e.g. outbox rows by status).
Table and column names are quoted; ``where`` is raw SQL and must come from trusted configuration
(the run's ``audit.json``). The database is opened read-only, so auditing a live run cannot alter it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reports.ops import EFFECT, EXPECT, KINDS, PARKED, Collector, OpError
from reports.readers import SourceStats

READER = "sqlite"


@dataclass(frozen=True)
class TableMap:
    """How the rows of one table (optionally filtered) become ops of one kind and flow."""

    table: str
    id_column: str
    kind: str
    flow: str
    t_column: str | None = None
    key_columns: tuple[str, ...] = ()
    reason_column: str | None = None
    where: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown op kind {self.kind!r} for table {self.table!r}")
        if self.kind in (EFFECT, EXPECT) and not self.key_columns:
            raise ValueError(f"{self.kind} map for table {self.table!r} needs key_columns")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TableMap:
        """Parse one entry of ``audit.json`` (``key_columns`` may be a list)."""
        known = {"table", "id_column", "kind", "flow", "t_column", "key_columns", "reason_column", "where"}
        extra = set(raw) - known
        if extra:
            raise ValueError(f"unknown table-map field(s): {sorted(extra)}")
        return cls(
            table=str(raw["table"]),
            id_column=str(raw["id_column"]),
            kind=str(raw["kind"]),
            flow=str(raw["flow"]),
            t_column=raw.get("t_column"),
            key_columns=tuple(raw.get("key_columns") or ()),
            reason_column=raw.get("reason_column"),
            where=raw.get("where"),
        )

    def query(self) -> str:
        """The SELECT for this map: id, t, reason, then the key columns."""
        cols = [
            _quote(self.id_column),
            _quote(self.t_column) if self.t_column else "NULL",
            _quote(self.reason_column) if self.reason_column else "NULL",
            *(_quote(c) for c in self.key_columns),
        ]
        sql = f"SELECT {', '.join(cols)} FROM {_quote(self.table)}"
        if self.where:
            sql += f" WHERE {self.where}"
        return sql


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_sqlite(path: Path, maps: Sequence[TableMap], collector: Collector) -> SourceStats:
    """Feed the ops the ``maps`` select from database ``path`` into ``collector``.

    A missing table or column is a source error (the input check fails): a renamed outbox table must not
    turn into "nothing was published, nothing was lost".
    """
    stats = SourceStats(source=str(path), reader=READER)
    if not path.exists():
        stats.error(str(path), "database file not found")
        return stats
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        for table_map in maps:
            try:
                rows = conn.execute(table_map.query())
                _feed(rows, table_map, collector, stats)
            except sqlite3.Error as exc:
                stats.error(f"{path.name}:{table_map.table}", f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    return stats


def _feed(
    rows: Iterable[tuple[Any, ...]], table_map: TableMap, collector: Collector, stats: SourceStats
) -> None:
    add = collector.add_record
    has_key = bool(table_map.key_columns)
    for row in rows:
        stats.records += 1
        rec: dict[str, Any] = {"kind": table_map.kind, "id": row[0], "flow": table_map.flow}
        if row[1] is not None:
            rec["t"] = _seconds(row[1])
        if table_map.kind == PARKED and row[2] is not None:
            rec["reason"] = row[2]
        if has_key:
            rec["key"] = ["" if v is None else str(v) for v in row[3:]]
        try:
            add(rec)
        except OpError as exc:
            stats.error(f"{table_map.table} row {stats.records}", str(exc))
            continue
        stats.ops += 1


def _seconds(value: Any) -> Any:
    """A time column as epoch seconds: numbers pass, ISO-8601 text is parsed (naive = UTC).

    Anything else is passed through unchanged, so the collector reports the row as malformed.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return value
