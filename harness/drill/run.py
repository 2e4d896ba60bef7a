"""One drill run's shared state: what the phases read and write, and the run's own records.

Each phase (:mod:`harness.drill.phases`) takes the :class:`DrillRun` and fills in what it started:
the cluster, the link proxies, the services, the simulator, Locust, the chaos thread. The records
follow as they change: ``pids.json`` (every PID the run started, written before each spawn, so a
crashed run can be cleaned up) and ``drill.json`` (the phases, notes, and at the very end the exit
code and verdict). The runner (:mod:`harness.drill.runner`) only sequences the phases.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

import rundir
from harness.drill.scenario import ROOT, LoadedScenario
from rig import procs
from rundir.records import locust_pids, write_json

if TYPE_CHECKING:
    from chaos.injector import FaultInjector
    from chaos.links import LinkProxies
    from harness.drill.chaos_thread import ChaosThread
    from harness.drill.scenario import DrillScenario
    from harness.drill.services import RunServices
    from loadtests.runner import LocustResult
    from rig.cluster import Cluster

DEFAULT_RUNS_DIR = ROOT / ".drill" / "runs"
DEFAULT_CLUSTER_DIR = ROOT / ".drill" / "cluster"


class DrillError(Exception):
    """A phase could not be done; the message says which and why."""


def run_dir_name(name: str, now: dt.datetime | None = None) -> str:
    """``<UTC timestamp>-<name>``, e.g. ``20260118T101500Z-demo``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{name}"


@dataclass
class DrillRun:
    """Everything one drill run knows; the phases fill it in as they go."""

    sc: LoadedScenario
    run_dir: Path
    console: Console
    vhost: str
    allow_external: bool = False
    #: a cluster handed in by the caller: used, never started nor stopped here
    given_cluster: Cluster | None = None
    #: the local rig's directory (a running rig there is reused, else one is started there)
    cluster_dir: Path | None = None
    cluster: Cluster | None = None
    started_cluster: bool = False
    #: the RabbitMQ version the cluster's nodes report (asked once it is up; None: unknown)
    broker_version: str | None = None
    #: the link proxies, when this run started them
    links: LinkProxies | None = None
    injector: FaultInjector | None = None
    services: RunServices | None = None
    system_started: bool = False
    #: as provisioned: every user, the nodes themselves
    platform_secrets: Path | None = None
    #: what the services get (through the link proxies when used)
    secrets: Path | None = None
    retailers: Path | None = None
    intake_url: str = ""
    intake_urls: list[str] = field(default_factory=list)
    notify_port: int = 0
    simulator: subprocess.Popen[bytes] | None = None
    simulator_stopped: bool = False
    locust: threading.Thread | None = None
    locust_result: LocustResult | None = None
    locust_error: str | None = None
    chaos: ChaosThread | None = None
    heal_log: list[str] = field(default_factory=list)
    #: what the heal could not mend (the rig is not whole: the run proves nothing)
    unmended: list[str] = field(default_factory=list)
    #: what the stop phase stopped, one line each
    stopped: list[str] = field(default_factory=list)
    drain_doc: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: the phase running now (or the last one)
    phase: str = "start"
    phases: list[dict[str, Any]] = field(default_factory=list)
    pids: dict[str, Any] = field(default_factory=lambda: {"runner": os.getpid()})
    #: environment changes undone when the run ends
    env: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def m(self) -> DrillScenario:
        """The scenario's validated model."""
        return self.sc.model

    def say(self, text: str, *, markup: bool = False) -> None:
        """A line on the console. Plain by default: check names like drill[chaos] and paths are not
        rich markup."""
        self.console.print(text, highlight=False, soft_wrap=True, markup=markup)

    # ------------------------------------------------------------------ records
    def save_pids(self) -> None:
        """``pids.json`` as it stands (a write that fails must not stop the run)."""
        with contextlib.suppress(OSError):
            write_json(self.run_dir / rundir.PIDS, self.pids)

    def record_system_pids(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        """Add the supervisor's and the replicas' PIDs of ``state`` (its ``system.json``) to pids.json."""
        if state is None:
            return None
        changed = False
        if self.pids.get("supervisor") != state.get("supervisor_pid"):
            self.pids["supervisor"] = state.get("supervisor_pid")
            changed = True
        known = set(self.pids.setdefault("replicas", []))
        for r in state.get("replicas", []):
            if r.get("pid") and r["pid"] not in known:
                self.pids["replicas"].append(r["pid"])
                changed = True
        if changed:
            self.save_pids()
        return state

    def locust_pids(self) -> list[int]:
        """Locust's master and workers, as ``loadtests.runner`` recorded them."""
        return locust_pids(self.run_dir)

    def own_roles(self) -> dict[str, list[int]]:
        """The processes this run started itself, by role (for the resource sampler)."""
        out: dict[str, list[int]] = {}
        if self.simulator is not None:
            out["simulator"] = [self.simulator.pid]
        if self.locust is not None:
            out["locust"] = self.locust_pids()
        links = self.pids.get("links")
        if isinstance(links, int):
            out["links"] = [links]
        return out

    def alive_pids(self) -> list[int]:
        """PIDs this run started that are still alive (a reused cluster's are not the run's)."""
        pids: list[int] = []
        for key, value in self.pids.items():
            if key == "runner":
                continue
            pids.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
        return [p for p in pids if procs.alive(p)]

    def drill_doc(self, *, partial: bool = False, error: str | None = None) -> dict[str, Any]:
        """``drill.json``'s content (also the ``drill`` key of report.json)."""
        return {
            "scenario": self.m.name,
            "scenario_file": str(self.sc.path),
            "run_dir": str(self.run_dir),
            "partial": partial,
            "error": error,
            "phases": self.phases,
            "cluster": {
                "provider": self.cluster.provider if self.cluster is not None else None,
                "started_by_run": self.started_cluster,
                "broker": self.m.cluster.broker if self.m.cluster.provider == "local" else None,
                "broker_version": self.broker_version,
            },
            "vhost": self.vhost,
            "intake_url": self.intake_url,
            "simulator_exit": self.simulator.returncode if self.simulator is not None else None,
            "locust_exit": self.locust_result.exit_code if self.locust_result is not None else None,
            "chaos": self.chaos.state if self.chaos is not None else None,
            "heal": self.heal_log,
            "drain": self.drain_doc,
            "notes": self.notes,
        }

    def save_drill_doc(self, **extra: Any) -> None:
        """``drill.json`` as it stands, with ``extra`` keys (the exit code at the end)."""
        with contextlib.suppress(OSError):
            write_json(self.run_dir / rundir.DRILL, {**self.drill_doc(), **extra})

    def phase_at_fault(self) -> str:
        """The first phase that did not finish (the one interrupted or failed)."""
        for p in self.phases:
            if p.get("status") not in ("done", None) and p["phase"] != "audit":
                return str(p["phase"])
        return self.phase

    def partial_reason(self, interrupted: bool, error: str | None) -> str:
        """Why the run is partial, in words (the reports say it first)."""
        if interrupted:
            return f"interrupted during the {self.phase_at_fault()} phase"
        return f"error during the {self.phase_at_fault()} phase: {error}"


def default_console() -> Console:
    """The console of a run: the terminal's width, or 150 columns when the output is a file."""
    return Console(width=None if sys.stdout.isatty() else 150)
