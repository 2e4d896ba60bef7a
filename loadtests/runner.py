"""Run Locust headless in processes of its own and read back what it measured.

Locust monkey-patches the standard library with gevent on import, so it must never be imported into a
drill's asyncio processes: :func:`run_locust` starts it as ``python -m locust`` subprocess(es), waits,
and parses the CSV files it leaves in ``<run>/locust/``::

    stats.json                 final per-name stats with latency histograms (``--json-file``), exact
    stats_stats.csv            per request name and the Aggregated row (counts, latency percentiles, RPS)
    stats_stats_history.csv    one row per second per name (``--csv-full-history``), with the user count
    stats_failures.csv         failures grouped by name and error
    stats_exceptions.csv       exceptions raised in user code
    report.html                Locust's HTML report
    master.log, worker-<i>.log stdout/stderr of each process
    pids.json                  the PIDs started (master first), written as soon as each is spawned
    ledger.jsonl               every intake request and its outcome (:mod:`loadtests.ledger`), merged
                               from the per-process ``ledger-<pid>.jsonl`` files after the run

Only the PIDs this module started are ever signalled: on a normal end Locust stops itself (run time or
shape), on Ctrl-C / an exception / a hang past the deadline the master gets SIGTERM (Locust then stops
its users and still writes its CSV files), then SIGKILL after a grace period; workers likewise.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

import rundir

#: Seconds Locust gives running tasks to finish at the end (``--stop-timeout``): an order in flight
#: gets its answer, so the ledger holds the outcome the platform gave rather than a cut-off request.
STOP_TIMEOUT_S: Final = 5.0
#: Seconds between SIGTERM and SIGKILL when we have to stop a process ourselves.
KILL_GRACE_S: Final = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointStats:
    """One row of ``stats_stats.csv`` (``name == "Aggregated"`` for the total)."""

    type: str
    name: str
    requests: int
    failures: int
    median_ms: float
    avg_ms: float
    min_ms: float
    max_ms: float
    p95_ms: float | None
    p99_ms: float | None
    rps: float
    failures_per_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryRow:
    """One aggregated row of ``stats_stats_history.csv``: the state at ``timestamp``."""

    timestamp: int
    user_count: int
    rps: float
    failures_per_s: float
    requests: int
    failures: int


@dataclasses.dataclass(frozen=True, slots=True)
class LocustResult:
    """What a Locust run measured, parsed from its CSV files."""

    exit_code: int | None
    worker_exit_codes: tuple[int | None, ...]
    duration_s: float
    total: EndpointStats | None
    endpoints: tuple[EndpointStats, ...]
    history: tuple[HistoryRow, ...]
    csv_prefix: Path
    html: Path
    ledger: Path | None
    ledger_records: int
    pids: tuple[int, ...] = ()

    @property
    def requests(self) -> int:
        """All requests of the run."""
        return self.total.requests if self.total else 0

    @property
    def failures(self) -> int:
        """Requests counted as failures."""
        return self.total.failures if self.total else 0

    @property
    def rps(self) -> float:
        """Average requests per second over the run."""
        return self.total.rps if self.total else 0.0

    @property
    def median_ms(self) -> float | None:
        """Median response time of all requests, ms."""
        return self.total.median_ms if self.total else None

    @property
    def p95_ms(self) -> float | None:
        """95th percentile response time, ms."""
        return self.total.p95_ms if self.total else None

    @property
    def p99_ms(self) -> float | None:
        """99th percentile response time, ms."""
        return self.total.p99_ms if self.total else None

    @property
    def max_users(self) -> int:
        """The highest user count seen in the history."""
        return max((h.user_count for h in self.history), default=0)

    def endpoint(self, name: str, type_: str | None = None) -> EndpointStats | None:
        """The stats row of request ``name`` (and ``type_`` when given)."""
        for e in self.endpoints:
            if e.name == name and (type_ is None or e.type == type_):
                return e
        return None


# --- CSV parsing ------------------------------------------------------------------------------------


def _num(value: str | None) -> float | None:
    if value is None or value.strip() in ("", "N/A"):
        return None
    return float(value)


def _int(value: str | None) -> int:
    number = _num(value)
    return int(number) if number is not None else 0


def parse_stats_csv(path: Path) -> tuple[EndpointStats | None, list[EndpointStats]]:
    """(Aggregated row, per-name rows) of a Locust ``*_stats.csv``."""
    total: EndpointStats | None = None
    rows: list[EndpointStats] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            e = EndpointStats(
                type=r.get("Type") or "",
                name=r["Name"],
                requests=_int(r["Request Count"]),
                failures=_int(r["Failure Count"]),
                median_ms=_num(r["Median Response Time"]) or 0.0,
                avg_ms=_num(r["Average Response Time"]) or 0.0,
                min_ms=_num(r["Min Response Time"]) or 0.0,
                max_ms=_num(r["Max Response Time"]) or 0.0,
                p95_ms=_num(r.get("95%")),
                p99_ms=_num(r.get("99%")),
                rps=_num(r["Requests/s"]) or 0.0,
                failures_per_s=_num(r["Failures/s"]) or 0.0,
            )
            if e.name == "Aggregated" and not e.type:
                total = e
            else:
                rows.append(e)
    return total, rows


def percentile(histogram: Mapping[int, int], count: int, share: float) -> float:
    """Locust's percentile over a ``{rounded ms: count}`` histogram (same rounding, same answer)."""
    target = int(count * share)
    seen = 0
    for ms in sorted(histogram, reverse=True):
        seen += histogram[ms]
        if count - seen <= target:
            return float(ms)
    return 0.0


def _entry_from_json(type_: str, name: str, entries: Sequence[Mapping[str, Any]]) -> EndpointStats:
    hist: dict[int, int] = {}
    for e in entries:
        for ms, n in (e.get("response_times") or {}).items():
            hist[int(ms)] = hist.get(int(ms), 0) + int(n)
    requests = sum(int(e["num_requests"]) for e in entries)
    timed = requests - sum(int(e.get("num_none_requests") or 0) for e in entries)
    failures = sum(int(e["num_failures"]) for e in entries)
    start = min(float(e["start_time"]) for e in entries)
    last = max(float(e.get("last_request_timestamp") or e["start_time"]) for e in entries)
    span = max(last - start, 1e-9)
    mins = [float(e["min_response_time"]) for e in entries if e.get("min_response_time") is not None]
    return EndpointStats(
        type=type_,
        name=name,
        requests=requests,
        failures=failures,
        median_ms=percentile(hist, timed, 0.5),
        avg_ms=sum(float(e["total_response_time"]) for e in entries) / timed if timed else 0.0,
        min_ms=min(mins) if mins else 0.0,
        max_ms=max(float(e["max_response_time"]) for e in entries),
        p95_ms=percentile(hist, timed, 0.95) if timed else None,
        p99_ms=percentile(hist, timed, 0.99) if timed else None,
        rps=requests / span,
        failures_per_s=failures / span,
    )


def parse_stats_json(path: Path) -> tuple[EndpointStats | None, list[EndpointStats]]:
    """(Aggregated, per-name rows) from Locust's ``--json-file`` output, written at exit.

    Preferred over ``*_stats.csv``, which Locust rewrites once a second and so misses the last second
    (the requests finishing during ``--stop-timeout``). Percentiles use Locust's own algorithm.
    """
    doc = json.loads(path.read_text(encoding="utf-8"))
    rows = [_entry_from_json(e.get("method") or "", e["name"], [e]) for e in doc]
    rows.sort(key=lambda r: (r.name, r.type))
    total = _entry_from_json("", "Aggregated", doc) if doc else None
    return total, rows


def parse_history_csv(path: Path) -> list[HistoryRow]:
    """The Aggregated rows of a Locust ``*_stats_history.csv``, in time order."""
    out: list[HistoryRow] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["Name"] != "Aggregated":
                continue
            out.append(
                HistoryRow(
                    timestamp=_int(r["Timestamp"]),
                    user_count=_int(r["User Count"]),
                    rps=_num(r["Requests/s"]) or 0.0,
                    failures_per_s=_num(r["Failures/s"]) or 0.0,
                    requests=_int(r["Total Request Count"]),
                    failures=_int(r["Total Failure Count"]),
                )
            )
    return out


def merge_ledgers(locust_dir: Path) -> tuple[Path | None, int]:
    """Append every ``ledger-<pid>.jsonl`` to ``ledger.jsonl`` and remove the parts; (path, records).

    Whole files are appended one after the other, so lines of different processes never interleave.
    A part is removed only after its bytes are in the merged file (flushed and fsynced).
    """
    parts = sorted(locust_dir.glob("ledger-*.jsonl"))
    target = locust_dir / rundir.LOCUST_LEDGER.name
    if not parts and not target.exists():
        return None, 0
    with target.open("ab") as out:
        for part in parts:
            data = part.read_bytes()
            if data and not data.endswith(b"\n"):
                data += b"\n"  # a process killed mid-line: keep what it wrote, on a line of its own
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            part.unlink()
    with target.open("rb") as fh:
        records = sum(1 for line in fh if line.strip())
    return target, records


# --- processes --------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (bound then released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[bytes], grace_s: float = KILL_GRACE_S) -> int | None:
    """SIGTERM, then SIGKILL after ``grace_s``: only this PID, only if it still runs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)
    return proc.returncode


def _stop_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Stop ``procs`` in order; a second Ctrl-C while waiting turns the rest into an immediate SIGKILL."""
    try:
        for p in procs:
            _stop(p)
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5.0)
        raise


def _spawn(cmd: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    fh: IO[bytes] = log.open("ab")
    try:
        # A session of its own: a Ctrl-C in the drill's terminal reaches us, not Locust directly, so the
        # shutdown order stays ours (master first, so it can collect the workers' last stats).
        return subprocess.Popen(
            list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd, start_new_session=True
        )
    finally:
        fh.close()  # the child has its own descriptor


def _record_pids(out_dir: Path, procs: Sequence[subprocess.Popen[bytes]]) -> None:
    # Written before the wait: if the drill itself is SIGKILLed, an operator (or the harness) still
    # knows exactly which processes were ours. Master first.
    (out_dir / rundir.LOCUST_PIDS.name).write_text(
        json.dumps([p.pid for p in procs]) + "\n", encoding="utf-8"
    )


def run_locust(
    locustfile: str | Path,
    host: str,
    run_dir: str | Path,
    users: int,
    spawn_rate: float,
    duration: float,
    shape: str | None = None,
    workers: int = 0,
    *,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    deadline_s: float | None = None,
) -> LocustResult:
    """Run ``locustfile`` headless against ``host``; return what the CSV files say.

    ``shape`` (steady|step|doubles|spike) sets ``DRILL_SHAPE`` and, unless ``env`` gives them, the
    shape's users / spawn rate / duration from the arguments. ``workers`` > 0 runs one master and that
    many workers on loopback (distributed mode). ``deadline_s`` (default ``duration`` + 60 s) bounds the
    wait; past it the processes are stopped and the result is whatever they wrote.
    """
    run = Path(run_dir).resolve()
    out_dir = run / rundir.LOCUST_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_prefix = out_dir / "stats"
    html = out_dir / "report.html"
    child_env = {**os.environ, "DRILL_RUN_DIR": str(run), "PYTHONUNBUFFERED": "1"}
    if shape:
        child_env.update(
            DRILL_SHAPE=shape,
            DRILL_SHAPE_USERS=str(users),
            DRILL_SHAPE_SPAWN_RATE=str(spawn_rate),
            DRILL_SHAPE_DURATION=str(duration),
        )
    child_env.update(env or {})
    run_time = f"{max(1, round(duration))}s"
    base = [sys.executable, "-m", "locust", "-f", str(locustfile), "--host", host]
    master_cmd = [
        *base,
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--csv",
        str(csv_prefix),
        "--csv-full-history",
        "--html",
        str(html),
        "--json-file",
        str(csv_prefix),
        "--stop-timeout",
        f"{round(STOP_TIMEOUT_S)}s",
        "--only-summary",
    ]
    if not shape:
        master_cmd += ["--run-time", run_time]
    port = 0
    if workers > 0:
        port = free_port()
        master_cmd += [
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(workers),
            "--expect-workers-max-wait",
            "30",
        ]
    master_cmd += list(extra_args)
    cwd = Path.cwd()
    deadline = time.monotonic() + (deadline_s if deadline_s is not None else duration + 60.0)

    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    master: subprocess.Popen[bytes] | None = None
    try:
        master = _spawn(master_cmd, child_env, out_dir / "master.log", cwd)
        procs.append(master)
        _record_pids(out_dir, procs)
        for i in range(workers):
            worker_cmd = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
            procs.append(_spawn(worker_cmd, child_env, out_dir / f"worker-{i + 1}.log", cwd))
            _record_pids(out_dir, procs)
        try:
            master.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _stop(master)
        # Workers quit when the master tells them; give them a moment, then stop what is left.
        for p in procs[1:]:
            try:
                p.wait(timeout=max(5.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _stop(p)
    finally:
        # Ctrl-C, an exception, or the normal path (then these are no-ops): master first.
        _stop_all(procs)
        ledger_parts_merged = False
        with contextlib.suppress(OSError):
            # Even when interrupted, leave one ledger file behind for the audit.
            ledger, records = merge_ledgers(out_dir)
            ledger_parts_merged = True
    elapsed = time.monotonic() - started

    stats_csv = Path(f"{csv_prefix}_stats.csv")
    history_csv = Path(f"{csv_prefix}_stats_history.csv")
    stats_json = Path(f"{csv_prefix}.json")
    if stats_json.exists():
        total, rows = parse_stats_json(stats_json)
    elif stats_csv.exists():
        total, rows = parse_stats_csv(stats_csv)
    else:
        total, rows = None, []
    history = parse_history_csv(history_csv) if history_csv.exists() else []
    if not ledger_parts_merged:
        ledger, records = merge_ledgers(out_dir)  # raise the error this time
    return LocustResult(
        exit_code=master.returncode if master else None,
        worker_exit_codes=tuple(p.returncode for p in procs[1:]),
        duration_s=elapsed,
        total=total,
        endpoints=tuple(rows),
        history=tuple(history),
        csv_prefix=csv_prefix,
        html=html,
        ledger=ledger,
        ledger_records=records,
        pids=tuple(p.pid for p in procs),
    )
