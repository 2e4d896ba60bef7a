"""Runs an experiment: steady state before, the method (timed, sequential or conditional faults, in
parallel where they overlap), rollbacks that always run, steady state after (polled until it returns,
which gives the recovery time), and a result whose ``deviated`` flag decides the exit code.

Each fault runs in its own thread: a fault holds for its duration and is undone by the same thread,
so overlapping faults overlap for real. Ctrl-C (or SIGTERM via the CLI) sets a stop event: every
held fault is undone at once, then the rollbacks run.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos.experiment import Experiment, PlannedFault, fault_kinds, timeline
from chaos.faults import FAULTS, require_supported
from chaos.injector import FaultInjector
from chaos.probes import ProbeResult, run_probe

log = logging.getLogger(__name__)


@dataclass
class FaultOutcome:
    index: int
    kind: str
    target: str
    fault_id: str | None = None
    started_at: float | None = None  # when applying began (applying an alarm can take seconds)
    applied_at: float | None = None
    undone_at: float | None = None
    error: str | None = None
    skipped: str | None = None


@dataclass
class ExperimentResult:
    title: str
    seed: int
    started_at: float
    finished_at: float = 0.0
    steady_before: list[ProbeResult] = field(default_factory=list)
    steady_after: list[ProbeResult] = field(default_factory=list)
    recovery_seconds: float | None = None
    faults: list[FaultOutcome] = field(default_factory=list)
    rollbacks: list[str] = field(default_factory=list)
    unmended: list[str] = field(default_factory=list)  # what the rollbacks' heal could not mend
    interrupted: bool = False
    status: str = "running"

    @property
    def deviated(self) -> bool:
        return (
            not all(p.ok for p in self.steady_before)
            or not all(p.ok for p in self.steady_after)
            or any(f.error for f in self.faults)
            or bool(self.unmended)
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["deviated"] = self.deviated
        return d


class ExperimentRunner:
    def __init__(
        self, experiment: Experiment, injector: FaultInjector, settle_timeout: float = 120.0
    ) -> None:
        """Raises :class:`chaos.faults.UnsupportedFault` when the injector's cluster provider cannot
        perform one of the experiment's faults: refused before the steady state is even probed."""
        if injector.cluster is not None:
            require_supported(fault_kinds(experiment), injector.cluster.provider)
        self.exp = experiment
        self.injector = injector
        self.settle_timeout = settle_timeout
        self.stop = threading.Event()

    def probe_all(self) -> list[ProbeResult]:
        return [run_probe(p, self.injector.cluster) for p in self.exp.steady_state]

    def run(self) -> ExperimentResult:
        res = ExperimentResult(self.exp.experiment.title, self.exp.experiment.seed, time.time())
        try:
            res.steady_before = self.probe_all()
            if not all(p.ok for p in res.steady_before):
                res.status = "steady state not met before the method: method not run"
            else:
                self._method(res)
                res.status = "interrupted" if res.interrupted else "method done"
        except KeyboardInterrupt:
            res.interrupted = True
            res.status = "interrupted"
            self.stop.set()
        finally:
            for rb in self.exp.rollbacks:
                if rb.action == "heal":
                    healed = self.injector.heal()
                    res.rollbacks.extend(healed or ["heal: nothing to do"])
                    res.unmended.extend(healed.unmended)
            # The steady state is awaited after the method only: one that did not hold before is
            # already the verdict (Chaos Toolkit aborts there too).
            if not res.interrupted and all(p.ok for p in res.steady_before):
                self._settle(res)
            res.finished_at = time.time()
        return res

    def _settle(self, res: ExperimentResult) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.settle_timeout
        while True:
            res.steady_after = self.probe_all()
            if all(p.ok for p in res.steady_after) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if all(p.ok for p in res.steady_after):
            res.recovery_seconds = round(time.monotonic() - t0, 2)

    def _method(self, res: ExperimentResult) -> None:
        plan = timeline(self.exp)
        start = time.monotonic()
        threads: list[threading.Thread] = []
        previous_done = threading.Event()
        previous_done.set()
        for pf in plan:
            outcome = FaultOutcome(pf.index, pf.fault, pf.target)
            res.faults.append(outcome)
            done = threading.Event()
            th = threading.Thread(
                target=self._one,
                args=(pf, outcome, start, previous_done, done),
                name=f"fault-{pf.index}",
                daemon=True,
            )
            threads.append(th)
            previous_done = done
        for th in threads:
            th.start()
        try:
            while any(th.is_alive() for th in threads):
                for th in threads:
                    th.join(timeout=0.2)
        except KeyboardInterrupt:
            res.interrupted = True
            self.stop.set()
            for th in threads:
                th.join()

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True when the full time passed."""
        return not self.stop.wait(max(0.0, seconds))

    def _one(
        self,
        pf: PlannedFault,
        out: FaultOutcome,
        start: float,
        previous_done: threading.Event,
        done: threading.Event,
    ) -> None:
        try:
            if pf.after_previous:
                while not previous_done.wait(0.2):
                    if self.stop.is_set():
                        out.skipped = "stopped before it started"
                        return
            elif pf.at is not None and not self._wait(start + pf.at - time.monotonic()):
                out.skipped = "stopped before it started"
                return
            if pf.when is not None and not self._condition(pf, out):
                return
            if self.stop.is_set():
                out.skipped = "stopped before it started"
                return
            fault = FAULTS[pf.fault](pf.target, **pf.params)
            out.started_at = time.time()
            # An instant fault has nothing to hold: no planned duration (its undo restores, e.g. a restart).
            planned = None if fault.instant else pf.duration
            with self.injector.applied(fault, planned_s=planned) as active:
                out.fault_id, out.applied_at = active.fault_id, time.time()
                if not fault.instant:
                    self._wait(pf.duration)
            out.undone_at = time.time()
        except Exception as exc:
            log.warning("fault %s %s failed: %s", pf.fault, pf.target, exc)
            out.error = f"{type(exc).__name__}: {exc}"
        finally:
            done.set()

    def _condition(self, pf: PlannedFault, out: FaultOutcome) -> bool:
        assert pf.when is not None
        deadline = time.monotonic() + pf.when.timeout
        while not self.stop.is_set():
            r = run_probe(pf.when, self.injector.cluster)
            if r.ok:
                return True
            if time.monotonic() > deadline:
                out.skipped = f"condition {pf.when.probe} never held in {pf.when.timeout:g} s: {r.message}"
                return False
            self._wait(0.5)
        out.skipped = "stopped while waiting for its condition"
        return False
