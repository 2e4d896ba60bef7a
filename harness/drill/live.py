"""What the live view shows while traffic runs, and where each figure comes from.

- orders sent / accepted / delivered: the simulator's ``progress`` records in its ledger
  (``<run>/simulator/ledger.jsonl``, one a second), read incrementally by :class:`LedgerTail`;
- intake availability so far: accepted / answered, where answered = every create with an outcome
  (accepted + rejected + unknown) — the live approximation of the audit's figure;
- msgs/s and total queue depth of the platform's vhost: the management API (``GET /api/vhosts/<vhost>``),
  polled in a thread by :class:`BrokerPoller` so a dead node never freezes the view; these are the
  management statistics (they lag for quorum queues: fine for a view, never for a verdict);
- the current fault: the chaos journal's open faults (applied, not yet undone);
- replicas running / wanted and restarts: the supervisor's ``system.json``.

:func:`format_lines` turns a :class:`Snapshot` into text lines (pure: unit-tested); the runner shows them
in a rich ``Live`` panel on a terminal and prints one plain line every few seconds otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class Progress:
    """The simulator's running counts (its latest ``progress`` record)."""

    run_s: float = 0.0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    unknown: int = 0
    delivered: int = 0
    sent_rate: float = 0.0

    @property
    def answered(self) -> int:
        """Creates with an outcome."""
        return self.accepted + self.rejected + self.unknown

    @property
    def availability(self) -> float | None:
        """accepted / answered (None before the first answer)."""
        return self.accepted / self.answered if self.answered else None


class LedgerTail:
    """Reads the new lines of a JSON-lines ledger since the last call (a cut last line waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._rest = b""
        self.progress = Progress()
        self.finished = False
        self.records = 0

    def poll(self) -> Progress:
        """Read what was appended; returns the latest progress."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return self.progress
        self._offset += len(chunk)
        data = self._rest + chunk
        lines = data.split(b"\n")
        self._rest = lines.pop()  # b"" after a complete last line
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            self.records += 1
            kind = rec.get("kind")
            if kind in ("progress", "run_finished"):
                self.progress = _progress(rec, self.progress)
            if kind in ("run_finished", "run_aborted"):
                self.finished = True
        return self.progress


def _progress(rec: dict[str, Any], old: Progress) -> Progress:
    def num(key: str, default: float) -> float:
        v = rec.get(key, default)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else default

    return Progress(
        run_s=num("run_s", old.run_s),
        sent=int(num("sent", old.sent)),
        accepted=int(num("accepted", old.accepted)),
        rejected=int(num("rejected", old.rejected)),
        unknown=int(num("unknown", old.unknown)),
        delivered=int(num("delivered", old.delivered)),
        sent_rate=num("sent_rate", old.sent_rate),
    )


def open_faults(journal: Path, now: float | None = None) -> list[str]:
    """The faults applied and not undone, as ``kind target (N s)``, oldest first."""
    from chaos.journal import Journal

    if not journal.is_file():
        return []
    now = time.time() if now is None else now
    return [
        f"{f.kind} {f.target}".strip() + f" ({now - f.applied_at:.0f} s)"
        for f in Journal(journal).open_faults()
    ]


def faults_applied(journal: Path) -> int:
    """How many faults the journal shows applied so far."""
    from chaos.journal import Journal

    if not journal.is_file():
        return 0
    return sum(r.get("event") == "applied" for r in Journal(journal).records())


@dataclass(frozen=True)
class BrokerFigures:
    """The vhost's figures from the management API (None: no node answered yet)."""

    depth: int | None = None
    publish_rate: float | None = None
    node: int | None = None
    error: str = ""


class BrokerPoller:
    """Polls ``GET /api/vhosts/<vhost>`` in a daemon thread, trying each node in turn."""

    def __init__(
        self, management_urls: Sequence[str], auth: tuple[str, str], vhost: str, every_s: float = 2.0
    ):
        self.urls = list(management_urls)
        self.auth = auth
        self.vhost = vhost
        self.every_s = every_s
        self.figures = BrokerFigures()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drill-broker-poller", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (returns within one request timeout)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        import httpx

        with httpx.Client(auth=self.auth, timeout=1.5) as client:
            while not self._stop.is_set():
                self.figures = self.poll_once(client)
                self._stop.wait(self.every_s)

    def poll_once(self, client: Any) -> BrokerFigures:
        """One sample from the first node that answers."""
        errors = []
        for i, url in enumerate(self.urls, start=1):
            try:
                resp = client.get(f"{url.rstrip('/')}/api/vhosts/{quote(self.vhost, safe='')}")
                resp.raise_for_status()
                doc = resp.json()
            except Exception as exc:  # a node down or paused: ask the next
                errors.append(f"node {i}: {type(exc).__name__}")
                continue
            rate = ((doc.get("message_stats") or {}).get("publish_details") or {}).get("rate")
            depth = doc.get("messages")
            return BrokerFigures(
                int(depth) if isinstance(depth, int | float) else None,
                float(rate) if isinstance(rate, int | float) else None,
                i,
            )
        return BrokerFigures(error="; ".join(errors) or "no management URL")


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame of the live view shows."""

    phase: str
    elapsed_s: float
    duration_s: float
    progress: Progress = field(default_factory=Progress)
    broker: BrokerFigures = field(default_factory=BrokerFigures)
    faults: tuple[str, ...] = ()
    faults_applied: int = 0
    chaos: str = ""  # "" no chaos | "waiting" | "running" | "done"
    replicas_running: int = 0
    replicas_wanted: int = 0
    restarts: int = 0
    locust: str = ""


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 100:.2f}%"


def _clock(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def format_lines(s: Snapshot) -> list[str]:
    """The live view as text lines (the same on a terminal and in a log)."""
    p = s.progress
    if s.elapsed_s <= s.duration_s:
        when = f"{_clock(s.elapsed_s)} / {_clock(s.duration_s)}"
    else:
        when = f"{_clock(s.elapsed_s)} (traffic {_clock(s.duration_s)} done; couriers finishing)"
    lines = [
        f"{s.phase}  {when}",
        f"orders   sent {p.sent}  accepted {p.accepted}  delivered {p.delivered}"
        f"  rejected {p.rejected}  unknown {p.unknown}  ({p.sent_rate:.1f}/s)",
        f"intake   availability so far {_pct(p.availability)} (accepted / answered, {p.answered} answered)",
    ]
    b = s.broker
    if b.depth is None and b.publish_rate is None:
        lines.append(f"broker   no management API answered{': ' + b.error if b.error else ''}")
    else:
        rate = "-" if b.publish_rate is None else f"{b.publish_rate:.0f}"
        depth = "-" if b.depth is None else str(b.depth)
        lines.append(f"broker   {rate} msgs/s published, {depth} messages queued (node {b.node})")
    lines.append(
        f"services {s.replicas_running}/{s.replicas_wanted} replicas running, {s.restarts} restart(s)"
    )
    if s.chaos:
        now = ", ".join(s.faults) if s.faults else "none"
        lines.append(f"chaos    {s.chaos}; {s.faults_applied} fault(s) applied; now: {now}")
    if s.locust:
        lines.append(f"locust   {s.locust}")
    return lines


def status_line(s: Snapshot) -> str:
    """One compact line for logs (no terminal): the figures of :func:`format_lines`."""
    p = s.progress
    b = s.broker
    fault = ",".join(f.rsplit(" (", 1)[0] for f in s.faults) or "-"
    return (
        f"[{_clock(s.elapsed_s)}/{_clock(s.duration_s)}] sent={p.sent} accepted={p.accepted} "
        f"delivered={p.delivered} avail={_pct(p.availability)} "
        f"msgs/s={'-' if b.publish_rate is None else f'{b.publish_rate:.0f}'} "
        f"depth={'-' if b.depth is None else b.depth} "
        f"replicas={s.replicas_running}/{s.replicas_wanted} fault={fault}"
    )


def replica_counts(state: dict[str, Any] | None) -> tuple[int, int, int]:
    """(running, wanted, restarts) from a ``system.json`` document (stopped replicas are not wanted)."""
    if not state:
        return 0, 0, 0
    reps = [r for r in state.get("replicas", []) if r.get("state") != "stopped"]
    running = sum(r.get("state") == "running" for r in reps)
    return running, len(reps), sum(int(r.get("restarts") or 0) for r in state.get("replicas", []))
