"""A synthetic run directory: a simulator ledger, a chaos journal and queue samples that agree.

Used by the tests, the HTML screenshot test and ``bench`` (``--ledger``): it writes exactly the shapes
the real producers write (``simulator/ledger.py``, ``chaos/journal.py``, ``metrics/queues.jsonl``), so
the whole report pipeline runs on it, deterministically (seeded).

The story it tells: orders arrive at ``rate``/s; each fault makes intake fail (unknown outcome, 503 or a
timeout) for its ``outage_s`` after being applied, with slow answers in the second after; a failed
order is retried once the outage is over and accepted then. Accepted orders are booked 1-3 s later
and delivered 20-40 s later (later when their acceptance fell in a fault window: the backlog);
1 % of requests are rejected for bad input (422). Queue depths grow during each fault and drain after
the heal.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rundir
from reports.faults import JOURNAL_PATH, QUEUES_PATH
from reports.readers.ledger import LEDGER_PATH

T0 = 1_764_380_000.0


#: Seconds from a synthetic fault's ``apply`` to its ``applied``.
APPLY_S = 0.05


@dataclass(frozen=True)
class SyntheticFault:
    """A fault ``start_s`` into the run, undone ``duration_s`` later; intake fails for ``outage_s``.

    Its journal says it was planned for ``planned_s`` (null: instant or open-ended) and that its undo
    started ``undo_s`` before the end (so it was held ``duration_s - APPLY_S - undo_s``).
    """

    kind: str
    target: str
    start_s: float
    duration_s: float
    outage_s: float
    planned_s: float | None = None
    undo_s: float = 0.1


DEFAULT_FAULTS = (
    # A 2-s kill whose node took 5.9 s to come back: the report must flag the slow undo.
    SyntheticFault("kill", "node:2", 20.0, 8.0, 1.5, planned_s=2.0, undo_s=5.9),
    SyntheticFault("partition", "isolate:3", 55.0, 15.0, 4.2, planned_s=14.8, undo_s=0.15),
    SyntheticFault("alarm", "memory:1", 90.0, 10.0, 0.0, planned_s=9.9, undo_s=0.05),
)

QUEUES = ("orders.intake", "courier.requests", "notifications.customer")


@dataclass
class SyntheticRun:
    """What was written (for tests to compare against)."""

    run_dir: Path
    orders: int = 0
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    unavailable: int = 0


def _notify(t: float, ref: str, state: str) -> dict[str, Any]:
    return {
        "t": round(t, 6),
        "kind": "notification_received",
        "order_ref": ref,
        "audience": "customer",
        "channel": "sms",
        "state": state,
        "to": f"+4477009{int(ref.rsplit('-', 1)[-1]) % 100000:05d}",
        "delivery_id": f"d-{ref}",
    }


def write_synthetic_run(
    run_dir: Path,
    *,
    seconds: float = 120.0,
    rate: float = 20.0,
    faults: Sequence[SyntheticFault] = DEFAULT_FAULTS,
    seed: int = 1,
    queues: bool = True,
    lost: int = 0,
    resources: bool = False,
) -> SyntheticRun:
    """Write ``simulator/ledger.jsonl``, ``chaos/journal.jsonl``, (``queues``) ``metrics/queues.jsonl``
    and (``resources``) ``resources.jsonl``: a 2-core machine that runs flat out during every fault.

    ``lost`` accepted orders never get a delivered notification (the audit must call them lost).
    """
    rng = random.Random(seed)
    out = SyntheticRun(run_dir)
    records: list[dict[str, Any]] = []
    outages = [(T0 + f.start_s, T0 + f.start_s + f.outage_s) for f in faults if f.outage_s > 0]
    windows = [(T0 + f.start_s, T0 + f.start_s + f.duration_s) for f in faults]
    n = int(seconds * rate)
    lost_every = max(1, n // lost) if lost else 0
    req = 0
    for i in range(n):
        ref = f"s{seed}-{i:07d}"
        t = T0 + i / rate + rng.random() / rate
        out.orders += 1
        attempt = 0
        accepted_at: float | None = None
        while accepted_at is None:
            attempt += 1
            req += 1
            out.requests += 1
            records.append({"t": round(t, 6), "kind": "order_sent", "order_ref": ref, "req": req,
                            "attempt": attempt, "channel": "rest", "key": f"k-{ref}"})  # fmt: skip
            outage = next(((a, b) for a, b in outages if a <= t < b), None)
            answer: dict[str, Any] = {"kind": "order_answer", "order_ref": ref, "req": req}
            if outage is not None:
                timeout = rng.random() < 0.5
                latency = 2000.0 if timeout else rng.uniform(5, 50)
                answer.update(outcome="unknown", http_status=None if timeout else 503,
                              delivery_id=None, error="timeout" if timeout else "503")  # fmt: skip
                out.unavailable += 1
                # The retailer retries once intake answers again (just after the outage).
                t_next = outage[1] + rng.random() * 0.5
            elif attempt == 1 and rng.random() < 0.01:
                latency = rng.uniform(5, 30)
                answer.update(outcome="rejected", http_status=422, delivery_id=None, error="bad address")
                out.rejected += 1
                t_next = -1.0
            else:
                slow = any(b <= t < b + 1.0 for _, b in outages)
                latency = rng.uniform(300, 900) if slow else rng.lognormvariate(math.log(40), 0.4)
                answer.update(outcome="accepted", http_status=202, delivery_id=f"d-{ref}", error=None)
                out.accepted += 1
                t_next = 0.0
            answer["latency_ms"] = round(latency, 3)
            answer["t"] = round(t + latency / 1000, 6)
            records.append(answer)
            if t_next < 0:
                break  # rejected for bad input: the retailer does not retry
            if t_next == 0.0:
                accepted_at = answer["t"]
            else:
                t = t_next
        if accepted_at is None:
            continue
        in_fault = any(a <= accepted_at < b for a, b in windows)
        booked = accepted_at + rng.uniform(1, 3) + (rng.uniform(2, 6) if in_fault else 0)
        delivered = booked + rng.uniform(20, 40)
        job = f"job-{ref}"
        records += [
            {"t": round(booked - 0.2, 6), "kind": "booking_seen", "order_ref": ref, "courier": "dashly",
             "quote_id": f"q-{ref}", "delivery_id": f"d-{ref}"},
            {"t": round(booked, 6), "kind": "booking_answer_sent", "order_ref": ref,
             "type": "booking_accepted", "courier": "dashly", "courier_job_id": job},
            _notify(booked + 0.3, ref, "booked"),
            {"t": round(delivered, 6), "kind": "status_sent", "order_ref": ref, "courier": "dashly",
             "status": "delivered", "courier_job_id": job, "canonical": "delivered"},
        ]  # fmt: skip
        if not (lost and i % lost_every == lost_every // 2):
            records.append(_notify(delivered + 0.2, ref, "delivered"))
    records.sort(key=lambda r: r["t"])
    ledger = run_dir / LEDGER_PATH
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with ledger.open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in records)

    journal = run_dir / JOURNAL_PATH
    journal.parent.mkdir(parents=True, exist_ok=True)
    lines: list[dict[str, Any]] = []
    for k, f in enumerate(faults):
        fid = f"f-{seed:04d}{k:08d}"
        start = T0 + f.start_s
        head = {"fault_id": fid, "kind": f.kind}
        end = start + f.duration_s
        lines += [
            {"ts": start, "event": "apply", **head, "target": f.target, "params": {}, "undo": {},
             "planned_s": f.planned_s},
            {"ts": start + APPLY_S, "event": "applied", **head, "detail": {}},
            {"ts": max(start + APPLY_S, end - f.undo_s), "event": "undoing", **head, "reason": ""},
            {"ts": end, "event": "undo", **head, "detail": {}, "reason": ""},
        ]  # fmt: skip
    lines.sort(key=lambda r: r["ts"])
    journal.write_text("".join(json.dumps(r) + "\n" for r in lines))

    if queues:
        _write_queues(run_dir / QUEUES_PATH, seconds, windows, rng)
    if resources:
        _write_resources(run_dir / rundir.RESOURCES, seconds, windows, rng)
    return out


def _write_resources(
    path: Path, seconds: float, windows: Sequence[tuple[float, float]], rng: random.Random
) -> None:
    """One sample per second in rig/resources.py's format: ~60% busy, 98% during faults."""
    lines: list[str] = []
    for s in range(1, int(seconds) + 1):
        t = T0 + s
        busy = 0.98 if any(a <= t - 0.5 < b for a, b in windows) else rng.uniform(0.5, 0.7)
        roles = {f"broker.{n}": 0.22 * busy * 200 for n in (1, 2, 3)} | {
            "service.intake": 0.2 * busy * 200,
            "service.quoting": 0.08 * busy * 200,
            "simulator": 6.0,
        }
        doc = {
            "t": t, "dt": 1.0, "cores": 2, "cpu_busy": busy, "iowait": 0.01, "steal": 0.0,
            "load1": 2.0 * busy, "load5": 1.5, "load15": 1.0, "mem_total_mb": 8000.0, "mem_available_mb": 5000.0,
            "roles": {r: {"cpu": round(c, 1), "max": round(min(c, 95.0), 1), "rss_mb": 150.0, "procs": 1}
                      for r, c in roles.items()},
        }  # fmt: skip
        lines.append(json.dumps(doc) + "\n")
    path.write_text("".join(lines))


def _write_queues(
    path: Path, seconds: float, windows: Sequence[tuple[float, float]], rng: random.Random
) -> None:
    """One sample per queue per second: a small baseline, growth during faults, drain after the heal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for s in range(int(seconds) + 60):
        t = T0 + s + 0.5
        for q, queue in enumerate(QUEUES):
            depth = rng.randint(0, 3)
            for a, b in windows:
                if a <= t < b:
                    depth += int((t - a) * (15 + 10 * q))
                elif b <= t:
                    peak = (b - a) * (15 + 10 * q)
                    # drains at 60 msg/s after the heal
                    depth += max(0, int(peak - (t - b) * 60))
            lines.append(json.dumps({"t": t, "queue": queue, "messages": depth}) + "\n")
    path.write_text("".join(lines))
