"""Resource samples during a drill's traffic: ``<run>/resources.jsonl`` (``rundir.RESOURCES``), one JSON
line per second.

:class:`ResourceSampler` is a thread the runner starts when the traffic starts and stops when it stops.
Every ``interval_s`` it reads ``/proc`` directly (no psutil: it is not one of the project's dependencies)
and appends one line::

    {"t": 1795934575.51,            wall clock (time.time()) at the end of the interval: aligns with the ledger
     "dt": 1.0,                     the interval measured, s (monotonic)
     "cores": 2,                    CPUs in /proc/stat
     "cpu_busy": 0.93,              machine CPU busy over the interval, fraction of ALL cores
                                    (user + nice + system + irq + softirq; idle, iowait, steal excluded)
     "iowait": 0.01, "steal": 0.02, the same fractions for I/O wait and time stolen by a hypervisor
     "load1": 5.2, "load5": 3.1, "load15": 1.4,
     "mem_total_mb": 7963.1, "mem_available_mb": 3120.5,
     "roles": {"broker.1": {"cpu": 48.2, "max": 48.2, "rss_mb": 210.3, "procs": 1},
               "service.intake": {"cpu": 61.0, "max": 33.4, "rss_mb": 120.9, "procs": 2}, ...}}

A role's ``cpu`` is (utime + stime) of its processes over the interval / wall interval, in percent of
ONE core (two busy processes = 200); ``max`` is its busiest process (the single-core question: each
Python service and the simulator runs its event loop on one thread); ``rss_mb`` the summed resident
memory; ``procs`` the processes alive at the end of the interval (0: all down, e.g. killed by chaos).

Roles (:func:`drill_roles`): ``broker.<n>`` (each node's beam.smp), ``service.<name>`` (summed over its
replicas, PIDs re-read from the supervisor's ``system.json`` every sample, since a restarted replica
has a new PID), ``simulator``, ``locust``, ``supervisor``, ``links`` (the link proxies, when this run
started them) and ``drill`` (this process: the runner, its live view and this sampler).

Edge cases, on purpose: a process is keyed by (PID, start time), so a reused PID is never diffed
against another process; a process that started during the interval counts all its CPU time; one
that died during the interval loses its last partial second (it can no longer be read). A PID that
vanishes mid-read is skipped. Nothing here may stop the drill: every error is logged and the next
sample is taken.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from rig.supervisor import SystemHandle

if TYPE_CHECKING:
    from rig.cluster import Cluster

log = logging.getLogger(__name__)

INTERVAL_S: Final = 1.0
PROC: Final = Path("/proc")
_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PAGE: Final = os.sysconf("SC_PAGE_SIZE")
_MB: Final = 1024.0 * 1024.0
#: Errors logged in full before the sampler goes quiet (then one line per this many).
_LOUD_ERRORS: Final = 5
_ERROR_EVERY: Final = 60

Roles = Mapping[str, Iterable[int]]


@dataclass(frozen=True)
class CpuTimes:
    """The machine's aggregate CPU counters (clock ticks since boot) from the first line of /proc/stat."""

    busy: int
    iowait: int
    steal: int
    total: int


@dataclass(frozen=True)
class ProcTimes:
    """One process: its start (ticks since boot; with the PID, its identity), CPU ticks and RSS bytes."""

    start: int
    cpu: int
    rss: int


def read_cpu(proc: Path = PROC) -> tuple[CpuTimes, int]:
    """Aggregate CPU counters and the number of CPUs, from /proc/stat."""
    lines = (proc / "stat").read_text().splitlines()
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    values = [int(v) for v in lines[0].split()[1:9]]
    values += [0] * (8 - len(values))
    user, nice, system, _idle, iowait, irq, softirq, steal = values
    cores = sum(1 for line in lines[1:] if line.startswith("cpu") and line[3:4].isdigit())
    times = CpuTimes(user + nice + system + irq + softirq, iowait, steal, sum(values))
    return times, cores or os.cpu_count() or 1


def read_process(pid: int, proc: Path = PROC) -> ProcTimes | None:
    """utime + stime, start time and RSS of ``pid``; ``None`` when it is gone (or unreadable)."""
    try:
        data = (proc / str(pid) / "stat").read_bytes()
    except OSError:  # FileNotFoundError, ProcessLookupError (gone mid-read), PermissionError
        return None
    # The command name is in parentheses and may contain spaces: the fields follow the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        # fields[0] is field 3 (state): utime = field 14, stime = 15, starttime = 22, rss = 24 (pages)
        return ProcTimes(
            start=int(fields[19]), cpu=int(fields[11]) + int(fields[12]), rss=int(fields[21]) * _PAGE
        )
    except (IndexError, ValueError):
        return None


def _loadavg(proc: Path) -> list[float]:
    try:
        return [float(x) for x in (proc / "loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def _meminfo(proc: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                out[key] = int(rest.split()[0]) / 1024.0  # kB -> MB
    except (OSError, ValueError, IndexError):
        pass
    return out


@dataclass
class _Reading:
    wall: float
    mono: float
    boot: float  # CLOCK_BOOTTIME: what a process's start time is counted in
    cpu: CpuTimes
    procs: dict[tuple[int, int], ProcTimes]


class ResourceSampler(threading.Thread):
    """Samples the machine and the drill's processes every ``interval_s`` into ``path`` (JSON lines).

    ``roles`` is called before every sample and returns role -> PIDs (it may change between samples).
    :meth:`stop` ends the thread; :attr:`samples` counts the lines written, :attr:`errors` the failures.
    """

    def __init__(
        self,
        path: Path,
        roles: Callable[[], Roles],
        *,
        interval_s: float = INTERVAL_S,
        proc: Path = PROC,
    ) -> None:
        super().__init__(name="drill-resources", daemon=True)
        self.path = path
        self.roles_fn = roles
        self.interval_s = interval_s
        self.proc = proc
        self.samples = 0
        self.errors = 0
        self._halt = threading.Event()
        self._roles: dict[str, list[int]] = {}
        self._prev: _Reading | None = None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling (the current sample is finished) and wait for the thread."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as out:
                self._loop(out)
        except Exception:  # never the drill's problem: no samples is a finding the report states
            log.exception("resource sampler stopped: %s", self.path)

    def _loop(self, out: TextIO) -> None:
        next_at = time.monotonic()
        while True:
            try:
                line = self.sample()
                if line is not None:
                    out.write(json.dumps(line, separators=(",", ":")) + "\n")
                    out.flush()
                    self.samples += 1
            except Exception:
                self._error("resource sample failed")
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # late (a stalled machine): keep the cadence, do not burst to catch up
                next_at, delay = time.monotonic(), 0.0
            if self._halt.wait(delay):
                return

    def _error(self, what: str) -> None:
        self.errors += 1
        if self.errors <= _LOUD_ERRORS:
            log.warning("%s (error %d)", what, self.errors, exc_info=True)
        elif self.errors % _ERROR_EVERY == 0:
            log.warning("%s (%d errors so far)", what, self.errors)

    def _read_roles(self) -> dict[str, list[int]]:
        try:
            self._roles = {role: [int(p) for p in pids if p] for role, pids in self.roles_fn().items()}
        except Exception:  # a state file being replaced, a half-started run: keep the last known PIDs
            self._error("resource roles unavailable (kept the previous ones)")
        return self._roles

    def sample(self) -> dict[str, object] | None:
        """Take one reading; the JSON record of the interval since the previous one (``None`` the first
        time: a rate needs two readings)."""
        roles = self._read_roles()
        wall, mono, boot = time.time(), time.monotonic(), time.clock_gettime(time.CLOCK_BOOTTIME)
        cpu, cores = read_cpu(self.proc)
        procs: dict[tuple[int, int], ProcTimes] = {}
        by_role: dict[str, list[tuple[int, int]]] = {}
        for role, pids in roles.items():
            keys = by_role.setdefault(role, [])
            for pid in dict.fromkeys(pids):
                p = read_process(pid, self.proc)
                if p is not None:
                    procs[(pid, p.start)] = p
                    keys.append((pid, p.start))
        reading = _Reading(wall, mono, boot, cpu, procs)
        prev, self._prev = self._prev, reading
        if prev is None:
            return None
        dt = max(mono - prev.mono, 1e-6)
        total = max(cpu.total - prev.cpu.total, 1)
        mem = _meminfo(self.proc)
        load = _loadavg(self.proc)
        record: dict[str, object] = {
            "t": round(wall, 3),
            "dt": round(dt, 3),
            "cores": cores,
            "cpu_busy": round((cpu.busy - prev.cpu.busy) / total, 4),
            "iowait": round((cpu.iowait - prev.cpu.iowait) / total, 4),
            "steal": round((cpu.steal - prev.cpu.steal) / total, 4),
        }
        if len(load) == 3:
            record.update(load1=load[0], load5=load[1], load15=load[2])
        if "MemTotal" in mem and "MemAvailable" in mem:
            record.update(
                mem_total_mb=round(mem["MemTotal"], 1), mem_available_mb=round(mem["MemAvailable"], 1)
            )
        record["roles"] = {
            role: self._role_usage(keys, procs, prev, dt) for role, keys in sorted(by_role.items())
        }
        return record

    def _role_usage(
        self,
        keys: list[tuple[int, int]],
        procs: Mapping[tuple[int, int], ProcTimes],
        prev: _Reading,
        dt: float,
    ) -> dict[str, float | int]:
        total = busiest = 0.0
        rss = 0
        for key in keys:
            p = procs[key]
            rss += p.rss
            before = prev.procs.get(key)
            if before is not None:
                ticks = p.cpu - before.cpu
            elif p.start / _TICKS >= prev.boot:  # started during the interval: all its CPU is in it
                ticks = p.cpu
            else:  # first seen now (its role just appeared): no baseline yet
                continue
            pct = 100.0 * max(ticks, 0) / _TICKS / dt
            total += pct
            busiest = max(busiest, pct)
        return {
            "cpu": round(total, 1),
            "max": round(busiest, 1),
            "rss_mb": round(rss / _MB, 1),
            "procs": len(keys),
        }


# ----------------------------------------------------------------------------------------- the drill's roles
def service_roles(run_dir: Path) -> dict[str, list[int]]:
    """``service.<name>`` -> its replicas' current PIDs, from the supervisor's ``system.json``."""
    st = SystemHandle(run_dir).state()
    out: dict[str, list[int]] = {}
    for r in (st or {}).get("replicas", []):
        pids = out.setdefault(f"service.{r.get('service')}", [])
        if isinstance(r.get("pid"), int):
            pids.append(r["pid"])
    if st is not None and isinstance(st.get("supervisor_pid"), int):
        out["supervisor"] = [st["supervisor_pid"]]
    return out


def drill_roles(
    cluster: Cluster | None, run_dir: Path, own: Callable[[], Mapping[str, Iterable[int]]]
) -> Callable[[], dict[str, list[int]]]:
    """The roles of a running drill (re-read on every call: PIDs change when chaos restarts things):
    this process, each node's VM (when the cluster :attr:`~rig.cluster.Cluster.runs_here`), the services
    and their supervisor, and what ``own()`` names — the processes the drill started itself (the
    simulator, Locust, the link proxies)."""

    def roles() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"drill": [os.getpid()]}
        if cluster is not None and cluster.runs_here:
            for n, pid in cluster.vm_pids().items():
                out[f"broker.{n}"] = [pid] if pid else []
        out.update(service_roles(run_dir))
        out.update({role: list(pids) for role, pids in own().items()})
        return out

    return roles
