"""Drain before judging: wait, with a deadline, until the broker's queues and the services' outboxes are
empty, so the audit does not call "lost" what is merely still on its way.

The wait samples queue depths from the management API (any node that answers) and pending outbox rows
from the services' SQLite files (opened read-only), and writes every sample to
``RUN/metrics/queues.jsonl`` — the file the backlog-drain measurement reads. A drain that times out is
not an error: its result says what was left, and the audit then reports those ids as in flight or lost.

Example::

    result = drain(["http://127.0.1.1:15701"], ("drill-admin", "pw"), [Path("run/intake.db")],
                   run_dir=Path("run"), amqp_urls=["amqp://drill-admin:pw@127.0.1.1:5701/"], deadline_s=60)
    result.drained, result.seconds, result.leftover
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rundir

# Parking lots hold what was explained (parked with a reason): they never drain and must not be waited for.
# Retry tiers are waited for: a message there is on its way back to its work queue within the tier's delay.
DEFAULT_IGNORE = r"(^|\.)(parked|parking-lot)($|\.)"


@dataclass
class DrainResult:
    drained: bool
    seconds: float
    samples: int
    leftover: dict[str, int] = field(default_factory=dict)  # queue or outbox -> messages still there
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "drained": self.drained,
            "seconds": round(self.seconds, 2),
            "samples": self.samples,
            "leftover": self.leftover,
            "errors": self.errors[-5:],
        }


def queue_names(
    management_urls: list[str], auth: tuple[str, str], timeout: float = 3.0
) -> list[tuple[str, str]] | None:
    """(vhost, name) of every queue, from the first node whose management API answers (None: none did).

    Only the names come from the management API: its message counts are statistics that lag (see
    rig/cluster/_depth.py); the depths are asked of the queues themselves.
    """
    import httpx

    for url in management_urls:
        try:
            resp = httpx.get(f"{url.rstrip('/')}/api/queues?columns=name,vhost", auth=auth, timeout=timeout)
            resp.raise_for_status()
        except httpx.HTTPError:
            continue
        return [(q["vhost"], q["name"]) for q in resp.json()]
    return None


#: Rows still to go out, per table: the messaging outbox (waiting for a broker confirm) and the
#: notifications service's sends not tried yet. (A send being retried is left out: after the traffic
#: stopped, its provider — the simulator's receiver — is gone, and waiting would only time out.)
#: A missing table counts 0.
PENDING_TABLES = {"outbox": "status = 'pending'", "notifications": "status = 'pending' AND attempts = 0"}
#: The same while the provider is still up (a drill holds the simulator's receiver until it has drained):
#: every notification not sent yet, retries included, must go out.
RECEIVER_UP_TABLES = {"outbox": "status = 'pending'", "notifications": "status = 'pending'"}


def pending_outbox(db: Path, tables: dict[str, str] = PENDING_TABLES) -> int:
    """Rows of ``db`` still waiting to go out (see :data:`PENDING_TABLES`; 0 when it has none of them)."""
    total = 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        for table, where in tables.items():
            try:
                row = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    continue
                raise
            total += int(row[0])
    return total


def drain(
    management_urls: list[str],
    auth: tuple[str, str],
    outboxes: list[Path],
    run_dir: Path,
    amqp_urls: list[str],
    deadline_s: float = 120.0,
    ignore: str = DEFAULT_IGNORE,
    only: str = ".*",
    interval_s: float = 0.5,
    settle_s: float = 2.0,
    receiver_up: bool = False,
) -> DrainResult:
    """Wait until every watched queue and outbox has been empty for ``settle_s`` (the in-flight deliveries
    of a consumer are acked within that time; a queue that empties then refills is not drained).

    Watched queues: ``vhost/name`` matching ``only`` whose name does not match ``ignore``. When ``only``
    is not the default and matches no queue yet, the drain keeps waiting: a queue the broker has not
    listed yet is not an empty one. ``receiver_up``: the notification provider still answers, so a
    notification being retried is waited for too (:data:`RECEIVER_UP_TABLES`).
    """
    tables = RECEIVER_UP_TABLES if receiver_up else PENDING_TABLES
    skip, watch = re.compile(ignore), re.compile(only)
    out = run_dir / rundir.QUEUES
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    result = DrainResult(drained=False, seconds=0.0, samples=0)
    empty_since: float | None = None
    with out.open("a") as fh:
        while True:
            m = measure(management_urls, auth, amqp_urls, outboxes, watch, skip, tables=tables)
            fh.write(m.lines())
            fh.flush()
            result.errors.extend(m.errors)
            left: dict[str, int] = {}
            if m.depths is not None:
                if only != ".*" and not m.watched:
                    left[f"(no queue matches {only})"] = -1
                left.update({name: n for name, n in m.depths.items() if n})
            left.update({f"outbox:{db}": n for db, n in m.pending.items() if n})
            result.samples += 1
            empty = not left and m.depths is not None
            empty_since = (empty_since or time.monotonic()) if empty else None
            result.leftover = left
            result.seconds = time.monotonic() - t0
            if empty_since is not None and time.monotonic() - empty_since >= settle_s:
                result.drained = True
                return result
            if result.seconds >= deadline_s:
                return result
            time.sleep(interval_s)


@dataclass
class Measurement:
    """One sample of every watched queue's depth and every outbox's pending rows."""

    t: float
    #: (vhost, name) of the queues watched (empty when the management API did not answer).
    watched: list[tuple[str, str]]
    #: ``vhost/name`` -> ready messages; None when no node answered.
    depths: dict[str, int] | None
    #: outbox file -> rows pending (-1: unreadable, see ``errors``).
    pending: dict[Path, int]
    errors: list[str] = field(default_factory=list)

    def lines(self) -> str:
        """The JSON lines of ``metrics/queues.jsonl`` (queues, then readable outboxes as ``outbox:<file>``)."""
        recs = [{"t": self.t, "queue": name, "messages": n} for name, n in (self.depths or {}).items()]
        recs += [
            {"t": self.t, "queue": f"outbox:{db.name}", "messages": n}
            for db, n in self.pending.items()
            if n >= 0
        ]
        return "".join(json.dumps(r) + "\n" for r in recs)


def measure(
    management_urls: list[str],
    auth: tuple[str, str],
    amqp_urls: list[str],
    outboxes: list[Path],
    watch: re.Pattern[str],
    skip: re.Pattern[str],
    names: list[tuple[str, str]] | None = None,
    tables: dict[str, str] = PENDING_TABLES,
) -> Measurement:
    """Ask every watched queue its depth (passive declare: the trusted count) and read every outbox.

    ``names``: the queues to consider, when the caller already knows them (else the management API is
    asked). Queues whose ``vhost/name`` does not match ``watch``, or whose name matches ``skip``, are left out.
    """
    from rig.cluster import amqp_queue_depths

    now = time.time()
    if names is None:
        names = queue_names(management_urls, auth)
    watched = [q for q in names or [] if watch.search(f"{q[0]}/{q[1]}") and not skip.search(q[1])]
    depths = amqp_queue_depths(amqp_urls, watched) if names is not None else None
    m = Measurement(now, watched, depths, {})
    if depths is None:
        m.errors.append("no node answered (management API or AMQP)")
    for db in outboxes:
        try:
            m.pending[db] = pending_outbox(db, tables)
        except (sqlite3.Error, OSError) as exc:
            m.errors.append(f"{db}: {exc}")
            m.pending[db] = -1
    return m
