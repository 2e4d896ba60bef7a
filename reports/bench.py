"""``drill bench audit``: generate a large, realistic op ledger on disk, audit it, report the seconds.

The generated mix (seeded, so every run audits the same history)::

    ~95 %  attempt → ack → observe                     ok (2 % of them observed twice: duplicated)
     3 %   attempt → unknown, then one of: a retry that is acked and observed (ok), an observe
           (recovered), nothing (indeterminate)
     1 %   attempt → fail                              failed
     0.5 % attempt → ack → parked(reason)              parked_acked
     0.5 % attempt → ack → inflight                    inflight_acked
     `lost` ids: attempt → ack, nothing else           lost
     20 % of delivered orders also get one notification effect.

The generator knows what it injected, and the bench fails loudly if the audit's counts differ: a fast
audit that miscounts at scale is worse than a slow one. The timed part is exactly what ``drill audit``
does: read the file, classify, run the checks and write the three report files.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import rundir
from reports.audit import AuditConfig, audit_run
from reports.writers import write_all

PARK_REASONS = ("delivery_limit", "no_courier", "invalid_address", "poison_message")
FLOW = "orders"
NOTIFY_FLOW = "notification"


@dataclass
class Injected:
    """What the generator wrote, per category (the expected audit counts)."""

    messages: int = 0
    records: int = 0
    counts: Counter[str] = field(default_factory=Counter)


def generate_ops(path: Path, n: int, *, lost: int = 5, seed: int = 7) -> Injected:
    """Write a JSON-lines op ledger of ``n`` messages to ``path``; returns what was injected."""
    rng = random.Random(seed)
    injected = Injected(messages=n)
    expect = injected.counts
    lost_every = max(1, n // lost) if lost else 0
    lines: list[str] = []
    t = 1_700_000_000.0
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            mid = f"ord-{i:09d}"
            t += 0.001
            head = f'"id":"{mid}","flow":"{FLOW}"'
            lines.append(f'{{"t":{t:.3f},"kind":"attempt",{head}}}\n')
            if lost and i % lost_every == lost_every // 2 and expect["lost"] < lost:
                lines.append(f'{{"t":{t + 0.01:.3f},"kind":"ack",{head}}}\n')
                expect["lost"] += 1
            else:
                _one_message(rng, lines, t, mid, head, expect)
            if len(lines) >= 50_000:
                fh.writelines(lines)
                injected.records += len(lines)
                lines.clear()
        fh.writelines(lines)
        injected.records += len(lines)
    return injected


def _one_message(
    rng: random.Random, lines: list[str], t: float, mid: str, head: str, expect: Counter[str]
) -> None:
    r = rng.random()
    if r < 0.005:
        reason = PARK_REASONS[int(r * 800) % len(PARK_REASONS)]
        lines.append(f'{{"t":{t + 0.01:.3f},"kind":"ack",{head}}}\n')
        lines.append(f'{{"t":{t + 0.2:.3f},"kind":"parked",{head},"reason":"{reason}"}}\n')
        expect["parked"] += 1
        expect[f"reason:{reason}"] += 1
    elif r < 0.010:
        lines.append(f'{{"t":{t + 0.01:.3f},"kind":"ack",{head}}}\n')
        lines.append(f'{{"t":{t + 0.3:.3f},"kind":"inflight",{head}}}\n')
        expect["inflight"] += 1
    elif r < 0.020:
        lines.append(f'{{"t":{t + 0.01:.3f},"kind":"fail",{head}}}\n')
        expect["failed"] += 1
    elif r < 0.050:
        lines.append(f'{{"t":{t + 5.0:.3f},"kind":"unknown",{head}}}\n')
        branch = rng.randrange(3)
        if branch == 0:  # republished after the timeout, confirmed this time
            lines.append(f'{{"t":{t + 5.1:.3f},"kind":"attempt",{head}}}\n')
            lines.append(f'{{"t":{t + 5.2:.3f},"kind":"ack",{head}}}\n')
            lines.append(f'{{"t":{t + 5.5:.3f},"kind":"observe",{head}}}\n')
            expect["ok"] += 1
        elif branch == 1:  # the broker had it after all
            lines.append(f'{{"t":{t + 5.5:.3f},"kind":"observe",{head}}}\n')
            expect["recovered"] += 1
        else:
            expect["indeterminate"] += 1
    else:
        lines.append(f'{{"t":{t + 0.01:.3f},"kind":"ack",{head}}}\n')
        lines.append(f'{{"t":{t + 0.5:.3f},"kind":"observe",{head}}}\n')
        expect["ok"] += 1
        if rng.random() < 0.02:  # redelivered after a consumer was killed
            lines.append(f'{{"t":{t + 0.9:.3f},"kind":"observe",{head}}}\n')
            expect["duplicated"] += 1
        if rng.random() < 0.2:
            key = f'["{mid}","delivered","customer","sms"]'
            lines.append(
                f'{{"t":{t + 0.6:.3f},"kind":"effect","id":"{mid}","flow":"{NOTIFY_FLOW}","key":{key}}}\n'
            )
            expect["effects"] += 1


#: audit count -> generator counter it must equal.
_COMPARED = ("lost", "ok", "recovered", "failed", "indeterminate", "parked", "inflight", "duplicated")


def bench_audit(n: int = 1_000_000, *, workdir: Path | None = None, lost: int = 5, seed: int = 7) -> float:
    """Generate ``n`` messages, audit them as ``drill audit`` would; print and return the audit seconds.

    Raises ``AssertionError`` if the audit's counts differ from what was injected.
    """
    with tempfile.TemporaryDirectory(prefix="audit-bench-", dir=workdir) as tmp:
        run_dir = Path(tmp)
        started = time.perf_counter()
        injected = generate_ops(run_dir / "ops.jsonl", n, lost=lost, seed=seed)
        generated = time.perf_counter() - started
        size_mb = (run_dir / "ops.jsonl").stat().st_size / 1e6
        print(
            f"generated {injected.messages:,} messages = {injected.records:,} records "
            f"({size_mb:.0f} MB) in {generated:.1f} s"
        )

        started, cpu_started = time.perf_counter(), time.process_time()
        report = audit_run(run_dir, AuditConfig())
        write_all(report, run_dir / rundir.AUDIT_DIR)
        seconds = time.perf_counter() - started
        # CPU time too: on a shared 2-core machine the wall clock also measures the neighbours.
        cpu = time.process_time() - cpu_started

        counts = report.flows[FLOW].counts()
        mismatched = {
            k: (counts[k], injected.counts[k]) for k in _COMPARED if counts[k] != injected.counts[k]
        }
        effects = report.flows[NOTIFY_FLOW].counts()["effect_records"] if NOTIFY_FLOW in report.flows else 0
        if effects != injected.counts["effects"]:
            mismatched["effects"] = (effects, injected.counts["effects"])
        if mismatched:
            raise AssertionError(f"audit disagrees with the generator (audit, injected): {mismatched}")
        print(report.verdict_line())
        rate = injected.records / seconds if seconds else float("inf")
        print(
            f"audit of {injected.messages:,} messages ({injected.records:,} records, {size_mb:.0f} MB): "
            f"{seconds:.2f} s wall, {cpu:.2f} s CPU ({rate / 1e6:.2f} M records/s; read+classify+check+write)"
        )
        return seconds
