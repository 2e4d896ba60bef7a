"""Drill runs whose runner died (``kill -9``, an OOM kill, a lost terminal) and what they left behind.

A run directory (``.drill/runs/<UTC>-<name>/``, its files named in :mod:`rundir`) holds ``pids.json``
(``runner``, ``cluster``, ``links``, ``supervisor``, ``replicas``, ``simulator``, ``locust``), the chaos
journal ``chaos/journal.jsonl``, the supervisor's ``system.json`` and ``drill.json``, whose
``exit_code`` is written only when the run ends. A run is *crashed* when its runner is gone and
``drill.json`` has no ``exit_code``: nobody will undo its faults nor stop its processes.

``drill chaos heal``, ``drill system down`` and ``drill cluster down`` find such runs by themselves
(:func:`find_crashed_runs`) or take one with ``--run RUN_DIR`` (:func:`load_run`), then use the
``stop_*`` functions here (what chaos left — open faults, link proxies, partition chains — is
``chaos.crashed``'s). A recorded PID is signalled only when the process is verifiably the one the
run started (:func:`verify`): its command line or environment names the run's directory (or the
rig's, for broker processes) — a PID the kernel has since given to another process is left alone.

Example::

    for run in find_crashed_runs(default_runs_dir()):
        print(run.describe())
        for line in stop_traffic(run):
            print(line)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rundir
from rig import procs as rig_procs
from rundir.records import open_faults, read_json

#: The runner's start is known from its first files to about this much (file times, process times).
CLOCK_SLACK_S = 2.0
#: How long the simulator and Locust get to flush their ledgers after SIGINT (the runner's own grace).
TRAFFIC_GRACE_S = 20.0
#: How long the supervisor gets to stop its replicas gracefully (its own grace is 15 s).
SUPERVISOR_GRACE_S = 25.0

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class RunError(Exception):
    """Not a run directory, or a run whose runner still runs: the message says which."""


def default_runs_dir() -> Path:
    """Where ``drill run`` puts its runs: ``$DRILL_ROOT/.drill/runs`` (the project by default)."""
    return Path(os.environ.get("DRILL_ROOT", PROJECT_ROOT)) / ".drill" / "runs"


@dataclass
class CrashedRun:
    """One run directory and what it says it started."""

    run_dir: Path
    pids: dict[str, Any]
    started_at: float  # when the run wrote its first file (seconds since the epoch)
    cluster_dir: Path | None  # the local rig the run used, when it can be told
    cluster_started_by_run: bool

    @property
    def runner_pid(self) -> int | None:
        pid = self.pids.get("runner")
        return pid if isinstance(pid, int) else None

    @property
    def journal(self) -> Path:
        return self.run_dir / rundir.JOURNAL

    def runner_alive(self) -> bool:
        """The runner's PID is alive *and* that process started before the run's first file: a
        process that started later got a recycled PID."""
        pid = self.runner_pid
        started = rig_procs.start_time(pid)
        return rig_procs.alive(pid) and started is not None and started <= self.started_at + CLOCK_SLACK_S

    def finished(self) -> bool:
        """``drill.json`` has the runner's final ``exit_code`` (written only at the very end)."""
        return "exit_code" in read_json(self.run_dir / rundir.DRILL, {})

    def describe(self) -> str:
        where = (
            f"its cluster {self.cluster_dir} ({'started by the run' if self.cluster_started_by_run else 'reused'})"
            if self.cluster_dir is not None
            else "no local cluster known"
        )
        left = self.leftovers()
        return (
            f"crashed run {self.run_dir}: runner PID {self.runner_pid} is gone and drill.json has no "
            f"verdict; {where}; left: {'; '.join(left) if left else 'nothing'}"
        )

    def leftovers(self) -> list[str]:
        """What the run left: open faults in its journal, and recorded processes still alive that are
        verifiably the run's (:func:`verify`). Empty: nothing to do."""
        out = []
        faults = open_faults(self.journal) if self.journal.exists() else []
        if faults:
            out.append(f"{len(faults)} open fault(s) in its journal")
        state = read_json(self.run_dir / rundir.SYSTEM, {})
        extra = {  # the supervisor's and Locust's own records may name PIDs pids.json has not caught
            "supervisor": [state.get("supervisor_pid")],
            "replicas": [r.get("pid") for r in state.get("replicas", [])],
            "locust": read_json(self.run_dir / rundir.LOCUST_PIDS, []),
        }
        roles = {"replicas": "replica"}
        for key in ("simulator", "locust", "supervisor", "replicas", "links", "cluster"):
            pids = dict.fromkeys(self.pid_list(key) + list(extra.get(key, [])))
            # Verified, not merely alive: a PID recycled long after an old crash is not a leftover.
            alive = [p for p in pids if isinstance(p, int) and verify(p, self, roles.get(key, key)) is None]
            if alive:
                out.append(f"{key} PID {', '.join(map(str, alive))} alive")
        return out

    def pid_list(self, key: str) -> list[int]:
        value = self.pids.get(key)
        items = value if isinstance(value, list) else [value]
        return [p for p in items if isinstance(p, int) and p > 0]


def load_run(run_dir: Path) -> CrashedRun:
    """The run in ``run_dir`` (crashed or not: the caller checks :meth:`CrashedRun.runner_alive` and
    :meth:`CrashedRun.finished`). Raises :class:`RunError` when it is not a run directory."""
    run_dir = run_dir.resolve()
    pids = read_json(run_dir / rundir.PIDS, None)
    if not isinstance(pids, dict):
        raise RunError(f"{run_dir} is not a drill run directory (no readable pids.json)")
    firsts = [run_dir / n for n in (rundir.SCENARIO, rundir.PLAN, rundir.PIDS)]
    started = min((p.stat().st_mtime for p in firsts if p.exists()), default=run_dir.stat().st_mtime)
    cluster_dir = _cluster_dir(run_dir, pids)
    return CrashedRun(run_dir, pids, started, cluster_dir, bool(pids.get("cluster")))


def find_crashed_runs(runs_dir: Path, *, with_leftovers: bool = False) -> list[CrashedRun]:
    """Runs in ``runs_dir`` whose runner is gone and that have no verdict, oldest first; with
    ``with_leftovers``, only those that still left something (see :meth:`CrashedRun.leftovers`)."""
    if not runs_dir.is_dir():
        return []
    out = []
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        try:
            run = load_run(d)
        except (RunError, OSError):
            continue
        if not run.finished() and not run.runner_alive() and (not with_leftovers or run.leftovers()):
            out.append(run)
    return out


def find_runs_to_clean(run: Path | None, *, explicit: bool) -> list[CrashedRun]:
    """What a clean-up command works on: the run given with ``--run`` (refused while its runner
    lives), else — when the command was not pointed elsewhere (``explicit``) — every crashed run."""
    if run is not None:
        found = load_run(run)
        require_crashed(found)
        return [found]
    # A crashed run already cleaned stays crashed (it has no verdict): only those with leftovers count.
    return [] if explicit else find_crashed_runs(default_runs_dir(), with_leftovers=True)


def clean_runs(
    runs: list[CrashedRun],
    steps: Callable[[CrashedRun], Iterable[Callable[[], Outcome]]],
    say: Callable[[str], None],
) -> list[str]:
    """Run each crashed run's clean-up ``steps`` in order, saying what each did; returns what failed.

    ``steps`` are thunks so each runs only after the one before it has stopped its part (traffic before
    the services, the services before the brokers they use)."""
    failed: list[str] = []
    for r in runs:
        say(r.describe())
        for step in steps(r):
            out = step()
            for line in out.done:
                say(f"  {line}")
            failed.extend(out.failed)
    return failed


def require_crashed(run: CrashedRun) -> None:
    """Refuse to clean a run whose runner still runs: it heals and stops its own (Ctrl-C it)."""
    if run.runner_alive():
        raise RunError(
            f"the runner of {run.run_dir} (PID {run.runner_pid}) is still running: it heals and stops what it "
            "started itself; interrupt it (Ctrl-C, or kill -INT) instead"
        )


# ------------------------------------------------------------------------------------ which cluster
_STARTED = re.compile(r"start \d+ local RabbitMQ node\(s\) in (/.+?) \(stopped at the end\)")
_REUSED = re.compile(r"reuse the local rig running from (/.+?) \(\d+ nodes")


def _cluster_dir(run_dir: Path, pids: dict[str, Any]) -> Path | None:
    """The rig's run directory: recorded by the runner (``cluster_dir`` in pids.json), else the cluster
    phase's own words in drill.json / plan.txt, else the environment of a recorded broker process."""
    if isinstance(pids.get("cluster_dir"), str):
        return Path(pids["cluster_dir"])
    texts = [str(p.get("what", "")) for p in read_json(run_dir / rundir.DRILL, {}).get("phases", [])]
    with contextlib.suppress(OSError):
        texts.append((run_dir / rundir.PLAN).read_text())
    for text in texts:
        for pattern in (_STARTED, _REUSED):
            m = pattern.search(text)
            if m:
                return Path(m.group(1))
    for pid in pids.get("cluster") or []:
        home = rig_procs.environ(pid).get("HOME")
        if home and Path(home).name == "home":  # the rig gives its processes <rig dir>/home
            return Path(home).parent
    return None


# ------------------------------------------------------------------------------------ whose process
def verify(pid: int, run: CrashedRun, role: str) -> str | None:
    """None when ``pid`` is alive and verifiably the run's ``role`` process; else why not.

    Evidence per role: the simulator and the supervisor have the run directory on their command line;
    Locust and the replicas have it as ``DRILL_RUN_DIR`` in their environment; the link proxy server
    is ``chaos.toxiproxy`` (or ``toxiproxy-server``) started after the run began; broker processes
    have the rig's ``<dir>/home`` as ``HOME``.
    """
    if not rig_procs.alive(pid):
        return "gone"
    started = rig_procs.start_time(pid)
    if started is None or started < run.started_at - CLOCK_SLACK_S:
        return "started before the run: not the run's process (a recycled PID)"
    argv = " ".join(rig_procs.cmdline(pid))
    env = rig_procs.environ(pid)
    ok = False
    if role in ("simulator", "supervisor"):
        ok = str(run.run_dir) in argv
    elif role in ("locust", "replica"):
        ok = _same(env.get("DRILL_RUN_DIR"), run.run_dir)
    elif role == "links":
        ok = "chaos.toxiproxy" in argv or "toxiproxy-server" in argv
    elif role == "cluster":
        ok = run.cluster_dir is not None and _same(env.get("HOME"), run.cluster_dir / "home")
    return (
        None
        if ok
        else f"its command line and environment do not name the run (a recycled PID: {argv[:80]!r})"
    )


def _same(text: str | None, path: Path) -> bool:
    return bool(text) and Path(text or "").resolve() == path.resolve()


def stop_pids(pids: list[int], sig: signal.Signals, grace: float) -> list[int]:
    """``sig`` to each (SIGCONT first: a frozen process cannot act on it), up to ``grace`` seconds for
    them to exit, then SIGKILL of their process groups (each was started in its own session) and of
    them. Returns those still alive after that (none, normally)."""
    for pid in pids:
        rig_procs.send(pid, signal.SIGCONT)
        rig_procs.send(pid, sig)
    if rig_procs.wait_gone(pids, timeout=grace):
        return []
    for pid in pids:
        if rig_procs.alive(pid):
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(pid) == pid:  # a session leader: its helpers go with it
                    rig_procs.kill_group(pid)
            rig_procs.send(pid, signal.SIGKILL)
    rig_procs.wait_gone(pids, timeout=5)
    return [p for p in pids if rig_procs.alive(p)]


@dataclass
class Outcome:
    """What a ``stop_*`` step did, and what it could not do."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def verify_claimed(run: CrashedRun, pids: list[int], role: str, out: Outcome) -> list[int]:
    """Those of ``pids`` verifiably the run's ``role`` processes (:func:`verify`); each other one still
    alive is noted in ``out`` as left alone."""
    mine = []
    for pid in dict.fromkeys(pids):
        why = verify(pid, run, role)
        if why is None:
            mine.append(pid)
        elif why != "gone":
            out.done.append(f"left PID {pid} alone ({role} of the run? {why})")
    return mine


# ------------------------------------------------------------------------------------ stopping
def stop_traffic(run: CrashedRun) -> Outcome:
    """The simulator and Locust (master and workers): SIGINT, so they flush their ledgers, then SIGKILL."""
    out = Outcome()
    locust = run.pid_list("locust") + [
        p for p in read_json(run.run_dir / rundir.LOCUST_PIDS, []) if isinstance(p, int)
    ]
    for role, pids in (("simulator", run.pid_list("simulator")), ("locust", locust)):
        mine = verify_claimed(run, pids, role, out)
        if not mine:
            continue
        left = stop_pids(mine, signal.SIGINT, TRAFFIC_GRACE_S)
        stopped = [p for p in mine if p not in left]
        if stopped:
            out.done.append(f"stopped the run's {role} (PID {', '.join(map(str, stopped))})")
        if left:
            out.failed.append(f"the run's {role} survived SIGKILL: PID {left}")
    return out


def stop_system(run: CrashedRun) -> Outcome:
    """The run's supervisor (SIGTERM: it stops its replicas gracefully), then any replica left."""
    out = Outcome()
    state = read_json(run.run_dir / rundir.SYSTEM, {})
    sup = run.pid_list("supervisor") + ([state["supervisor_pid"]] if state.get("supervisor_pid") else [])
    mine = verify_claimed(run, sup, "supervisor", out)
    if mine:
        left = stop_pids(mine, signal.SIGTERM, SUPERVISOR_GRACE_S)
        if left:
            out.failed.append(f"the run's supervisor survived SIGKILL: PID {left}")
        else:
            out.done.append(f"stopped the run's supervisor (PID {', '.join(map(str, mine))})")
    state = read_json(run.run_dir / rundir.SYSTEM, state)  # the supervisor's last write
    replicas = run.pid_list("replicas") + [r["pid"] for r in state.get("replicas", []) if r.get("pid")]
    mine = verify_claimed(run, replicas, "replica", out)
    if mine:
        left = stop_pids(mine, signal.SIGTERM, 15.0)
        if left:
            out.failed.append(f"replicas of the run survived SIGKILL: PID {left}")
        out.done.append(f"stopped {len(mine) - len(left)} replica(s) of the run the supervisor left")
    if not any(rig_procs.alive(p) for p in sup + replicas):
        (run.run_dir / rundir.SYSTEM).unlink(missing_ok=True)
    return out


def stop_cluster(
    run: CrashedRun, kernel_cleanup: Callable[[int, str | None], list[str]] | None = None
) -> Outcome:
    """The cluster the run started (the rig's own teardown, from its state file). A cluster the run only
    reused is left running.

    ``kernel_cleanup(address_block, node_host)`` runs once the cluster is stopped and says what it did:
    the chaos injector removes there the iptables chain a partition may have left on the rig's
    addresses (the rig knows nothing of partitions)."""
    from rig.cluster import ClusterError, ClusterSpec, LocalCluster
    from rig.cluster import state as cluster_state

    out = Outcome()
    if not run.cluster_started_by_run:
        if run.cluster_dir is not None:
            out.done.append(
                f"its cluster {run.cluster_dir} was not started by the run: left running "
                f"(`./drill cluster down --run-dir {run.cluster_dir}` stops it)"
            )
        return out
    recorded = run.pid_list("cluster")
    st = cluster_state.load(run.cluster_dir) if run.cluster_dir is not None else None
    if st is not None and run.cluster_dir is not None and set(st.owned_pids()) & set(recorded):
        lc = LocalCluster.attach(ClusterSpec(run_dir=run.cluster_dir))
        block = lc.spec.address_block
        try:
            lc.stop()
            out.done.append(f"stopped the run's cluster in {run.cluster_dir}")
        except ClusterError as exc:
            out.failed.append(f"the run's cluster in {run.cluster_dir}: {exc}")
        if kernel_cleanup is not None:
            out.done.extend(kernel_cleanup(block, st.nodes[0].host if st.nodes else None))
        return out
    # No state file to go by (deleted, or the rig recorded elsewhere): the recorded PIDs themselves.
    mine = verify_claimed(run, recorded, "cluster", out)
    if mine:
        left = stop_pids(mine, signal.SIGTERM, 30.0)
        if left:
            out.failed.append(f"broker processes of the run survived SIGKILL: PID {left}")
        else:
            out.done.append(f"stopped the run's broker processes (PID {', '.join(map(str, mine))})")
    return out
