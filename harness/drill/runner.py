"""The drill runner: one scenario, every phase, one run directory, one verdict.

The runner only sequences the phases (:mod:`harness.drill.phases`, one module each; each printed as it
starts and timed in ``drill.json``)::

    run dir     .drill/runs/<UTC timestamp>-<name>/: scenario.toml, slo.toml, plan.txt, drill.log
    cluster     start a local rig (the drill's own, stopped at the end), or reuse a running one / the
                cluster given by the caller, or an external one (URLs)
    provision   the vhost, one broker user per service, the topology, <run>/secrets/platform.json
    links       (only when the experiment has link faults) a Toxiproxy proxy per node; the services'
                secrets file points at the proxies, so a link fault cuts services off their broker
    system      <run>/services.toml (free ports, replicas, env, broken switches), the supervisor
                (rig.supervisor.SystemHandle) in <run>, and every replica ready
    traffic     the simulator as a subprocess (its ledger in <run>/simulator/), Locust in a thread
                (loadtests.runner.run_locust, <run>/locust/) when asked; the chaos experiment in a
                thread (chaos.runner.ExperimentRunner, journal <run>/chaos/journal.jsonl) from its
                offset; the observers (samples, the live view) until the simulator has finished its run
                (duration + linger); it keeps only its notification receiver (the customers' phones) up
                from then on
    stop        traffic, chaos (held faults are undone by their own threads)
    heal        FaultInjector.heal: the journal's open faults, then a sweep of the rig
    drain       rig.drain: queues of the vhost and the services' outboxes empty, every notification
                sent (deadline); then the simulator's receiver is stopped (SIGINT, exit 0)
    audit       reports.audit_run + the drill's own checks (completed, traffic, chaos, heal);
                report.json, junit.xml, summary.md, report.html in <run>
    stop        the system, the link proxies and the cluster if this run started them, by PID (in a
                thread that starts with the audit: the audit reads files only)

Exit codes (:mod:`reports.outcome`): 0 PASS, 1 FAIL (the platform broke a promise), 3 INCONCLUSIVE (the
harness could not carry out its plan: a phase failed, a fault was not applied or undone, the rig not
whole, the traffic generator crashed), 130 interrupted; 2 is left to usage errors (a bad scenario file).

Ctrl-C or SIGTERM in any phase: the traffic and the chaos are stopped, the rig is healed, a PARTIAL
report is written (``report.json`` has ``"partial": true`` and the harness error ``drill[completed]``),
everything this run started is stopped, exit 130. Further signals during that clean-up are ignored
(it takes seconds, not minutes). Every PID the run started is in ``<run>/pids.json``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

import rundir
from harness.drill.phases import audit, cluster, drain, heal, links, prepare, provision, stop, system, traffic
from harness.drill.phases.cluster import describe_cluster
from harness.drill.phases.stop_traffic import stop_traffic_and_chaos
from harness.drill.run import DEFAULT_RUNS_DIR, DrillError, DrillRun, default_console, run_dir_name
from harness.drill.scenario import LoadedScenario
from reports import outcome

if TYPE_CHECKING:
    from reports.audit import AuditReport
    from rig.cluster import Cluster

__all__ = ["DEFAULT_RUNS_DIR", "DrillError", "DrillRunner", "describe_cluster"]

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = outcome.EXIT_INTERRUPTED
#: A phase failed: the harness could not carry out its plan.
EXIT_ERROR = outcome.EXIT_INCONCLUSIVE


class DrillRunner:
    """Runs one drill scenario end to end; :meth:`run` returns the exit code."""

    def __init__(
        self,
        scenario: LoadedScenario,
        *,
        runs_dir: Path = DEFAULT_RUNS_DIR,
        cluster: Cluster | None = None,
        cluster_dir: Path | None = None,
        vhost: str | None = None,
        allow_external: bool = False,
        console: Console | None = None,
    ) -> None:
        """``cluster``: use this cluster (never started nor stopped here); ``cluster_dir``: the local rig's
        directory (a running rig there is reused, else one is started there and stopped at the end)."""
        self.run_state = DrillRun(
            sc=scenario,
            run_dir=runs_dir / run_dir_name(scenario.model.name),
            console=console or default_console(),
            vhost=vhost or scenario.model.cluster.vhost,
            allow_external=allow_external,
            given_cluster=cluster,
            cluster_dir=cluster_dir,
        )
        self._step = 0
        self._log_handler: logging.Handler | None = None

    @property
    def run_dir(self) -> Path:
        """The run's directory (its final name once the run has started)."""
        return self.run_state.run_dir

    # ------------------------------------------------------------------ entry point
    def run(self) -> int:
        """Every phase; the exit code: the audit's (0, 1 or 3), 130 when interrupted, 3 when a phase failed
        and no report could be written."""
        r = self.run_state
        main = threading.current_thread() is threading.main_thread()
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
        interrupted = False
        error: str | None = None
        started = time.time()
        try:
            self._log_handler = prepare.prepare(r)
            self._phases()
        except KeyboardInterrupt:
            interrupted = True
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("phase %s failed:\n%s", r.phase, traceback.format_exc())
        # From here on the clean-up runs to its end: a second Ctrl-C only says so.
        old_int = signal.signal(signal.SIGINT, self._ignore) if main else None
        if main:
            signal.signal(signal.SIGTERM, self._ignore)
        try:
            if interrupted or error:
                if interrupted:
                    r.console.print(
                        f"[bold yellow]interrupted[/] during {r.phase}: stopping traffic and chaos, healing, "
                        "writing a partial report, stopping what this run started"
                    )
                else:
                    r.say(f"[bold red]error[/] during {r.phase}: {escape(error or '')}", markup=True)
                self._best_effort(
                    "stop traffic and chaos", lambda: stop_traffic_and_chaos(r, interrupted=True)
                )
                self._best_effort("heal", self._heal)
            stopper = stop.start_stopping(r)
            report = self._best_effort("audit", lambda: self._audit(interrupted, error, started))
            self._best_effort("stop", lambda: self._stop(stopper))
            code = EXIT_INTERRUPTED if interrupted else (EXIT_ERROR if report is None else report.exit_code)
            self._finish(code, interrupted, error, report, started)
            return code
        finally:
            r.env.close()
            if self._log_handler is not None:
                logging.getLogger().removeHandler(self._log_handler)
                self._log_handler.close()
            if main:
                signal.signal(signal.SIGINT, old_int or signal.default_int_handler)
                signal.signal(signal.SIGTERM, old_term or signal.SIG_DFL)

    def _phases(self) -> None:
        """The phases of a run, in order, up to the drain (the audit and the stop always follow)."""
        r = self.run_state
        text, starts = describe_cluster(r.sc, r.cluster_dir, r.given_cluster)
        with self._phase("cluster", text):
            cluster.start_cluster(r, starts)
        with self._phase("provision", f"vhost {r.vhost!r}, one broker user per service, the topology"):
            provision.provision(r)
        if r.sc.uses_link_faults():
            with self._phase("links", "a Toxiproxy proxy per node; the services connect through them"):
                links.start_links(r)
        reps = ", ".join(f"{k} ×{v}" for k, v in r.sc.replicas().items())
        with self._phase("system", f"{reps}; wait until every replica is ready"):
            system.start_system(r)
        with self._phase("traffic", traffic.describe(r)):
            traffic.traffic(r)
        with self._phase("stop traffic", "wait for Locust, stop the chaos experiment (held faults undone)"):
            stop_traffic_and_chaos(r, interrupted=False)
        self._heal()
        with self._phase(
            "drain", f"queues of vhost {r.vhost!r} and the outboxes empty, at most {r.m.drain_deadline:g} s"
        ):
            drain.drain(r)
        drain.release_receiver(r)

    def _heal(self) -> None:
        if self.run_state.injector is None:
            return
        with self._phase(
            "heal", "undo the journal's open faults, sweep the rig (alarms, paused nodes, links)"
        ):
            heal.heal(self.run_state)

    def _audit(self, interrupted: bool, error: str | None, started: float) -> AuditReport:
        with self._phase("audit", audit.describe(interrupted or error is not None)):
            return audit.audit(self.run_state, interrupted, error, started)

    def _stop(self, stopper: threading.Thread) -> None:
        with self._phase("stop", "the system, the link proxies and the cluster this run started, by PID"):
            stop.finish_stopping(self.run_state, stopper)

    def _ignore(self, signum: int, frame: FrameType | None) -> None:
        self.run_state.say(
            f"(signal {signum} ignored: still cleaning up after the run, in {self.run_state.phase})"
        )

    def _best_effort(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            self.run_state.notes.append(f"{what} failed: {type(exc).__name__}: {exc}")
            log.error("%s failed:\n%s", what, traceback.format_exc())
            self.run_state.say(f"[red]{what} failed:[/] {escape(str(exc))}", markup=True)
            return None

    @contextlib.contextmanager
    def _phase(self, name: str, what: str) -> Iterator[None]:
        r = self.run_state
        self._step += 1
        r.phase = name
        r.console.rule(f"[bold]{self._step}. {escape(name)}[/]: {escape(what)}", align="left")
        entry: dict[str, Any] = {"phase": name, "what": what, "started_at": time.time()}
        r.phases.append(entry)
        t0 = time.monotonic()
        try:
            yield
            entry["status"] = "done"
        except KeyboardInterrupt:
            entry["status"] = "interrupted"
            raise
        except Exception as exc:
            entry["status"] = f"failed: {exc}"
            raise
        finally:
            entry["seconds"] = round(time.monotonic() - t0, 2)
            r.save_drill_doc()

    def _finish(
        self, code: int, interrupted: bool, error: str | None, report: AuditReport | None, started: float
    ) -> None:
        r = self.run_state
        verdict = (
            report.verdict_line() if report is not None else "VERDICT: none (no report could be written)"
        )
        if interrupted or error:
            verdict += " (PARTIAL)"
        r.save_drill_doc(
            partial=bool(interrupted or error),
            error=error,
            exit_code=code,
            verdict=verdict,
            seconds=round(time.time() - started, 1),
            left_alive=r.alive_pids(),
        )
        r.console.rule()
        # Plain lines (no markup, no wrapping): what CI logs and tests read.
        print(verdict, flush=True)
        html = r.run_dir / rundir.REPORT_HTML
        print(f"report: {html if html.exists() else r.run_dir}", flush=True)
        print(f"run dir: {r.run_dir} ({time.time() - started:.0f} s, exit {code})", flush=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
