"""The drill runner: one scenario, every phase, one run directory, one verdict.

Phases (each printed as it starts, timed in ``drill.json``)::

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
                offset; a live view until the simulator has finished its run (duration + linger); it
                keeps only its notification receiver (the customers' phones) up from then on
    stop        traffic, chaos (held faults are undone by their own threads)
    heal        FaultInjector.heal: the journal's open faults, then a sweep of the rig
    drain       rig.drain: queues of the vhost and the services' outboxes empty, every notification
                sent (deadline); then the simulator's receiver is stopped (SIGINT, exit 0)
    audit       reports.audit_run + three drill checks (completed, traffic, chaos); report.json,
                junit.xml, summary.md, report.html in <run>
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
import datetime as dt
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

import rundir
from harness.drill.live import (
    BrokerFigures,
    BrokerPoller,
    LedgerTail,
    Snapshot,
    faults_applied,
    format_lines,
    open_faults,
    replica_counts,
    status_line,
)
from harness.drill.plan import plan_lines
from harness.drill.scenario import ROOT, LoadedScenario
from harness.drill.services import RunServices, build_services
from reports import outcome
from rig import procs
from rig.cluster import Cluster, ClusterSpec, ExternalCluster, LocalCluster, ManagementClient
from rig.cluster import state as cluster_state
from rig.drain import DEFAULT_IGNORE
from rig.ports import free_port, free_port_base

if TYPE_CHECKING:
    from chaos.experiment import Experiment
    from chaos.injector import FaultInjector
    from chaos.runner import ExperimentResult, ExperimentRunner
    from loadtests.runner import LocustResult
    from reports.audit import AuditReport
    from reports.checks import CheckResult

log = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = ROOT / ".drill" / "runs"
DEFAULT_CLUSTER_DIR = ROOT / ".drill" / "cluster"
EXIT_INTERRUPTED = outcome.EXIT_INTERRUPTED
#: A phase failed: the harness could not carry out its plan.
EXIT_ERROR = outcome.EXIT_INCONCLUSIVE
#: Past duration + linger, the simulator gets this long before the drill stops it.
SIMULATOR_GRACE_S = 180.0
#: How long a stopped simulator / Locust gets to write its ledger before SIGKILL.
STOP_GRACE_S = 20.0
#: Undoing held faults (a node restart, a whole cluster start) can take this long.
CHAOS_STOP_S = 300.0
LIVE_EVERY_S = 0.5
#: Not waited for by the drain: parking lots and retry tiers (rig.drain's default), and the couriers'
#: request queues — the couriers are the simulator, gone once the traffic is over, so what the platform
#: asks them afterwards stays there by definition.
DRAIN_IGNORE = DEFAULT_IGNORE + r"|^courier\."
LOG_EVERY_S = 5.0


class DrillError(Exception):
    """A phase could not be done; the message says which and why."""


# ----------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _environ(updates: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``updates`` inside the block (children started there inherit them)."""
    old = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def run_dir_name(name: str, now: dt.datetime | None = None) -> str:
    """``<UTC timestamp>-<name>``, e.g. ``20260118T101500Z-demo``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{name}"


def describe_cluster(
    sc: LoadedScenario, cluster_dir: Path | None, given: Cluster | None = None
) -> tuple[str, bool]:
    """(what the cluster phase will do, whether it starts a cluster) — without touching anything."""
    m = sc.model.cluster
    if given is not None:
        return f"use the {given.provider} cluster given ({len(given.node_indices)} nodes)", False
    if m.provider == "external":
        return f"external cluster: {len(m.amqp_urls)} node(s) (not started nor stopped by the drill)", False
    where = cluster_dir or DEFAULT_CLUSTER_DIR
    st = cluster_state.load(where) if where.is_dir() else None
    if st is not None and any(procs.alive(p) for p in st.owned_pids()):
        return f"reuse the local rig running from {where} ({len(st.nodes)} nodes; left running)", False
    return f"start {m.nodes} local RabbitMQ node(s) in {where} (stopped at the end)", True


# ----------------------------------------------------------------------------------------- chaos
class ChaosThread(threading.Thread):
    """The experiment in a thread of its own, from ``start_after`` seconds; :meth:`halt` stops it early
    (held faults are undone by their own threads, then the rollbacks heal)."""

    def __init__(
        self, experiment: Experiment, injector: FaultInjector, start_after: float, result_path: Path
    ):
        super().__init__(name="drill-chaos", daemon=True)
        self.experiment = experiment
        self.injector = injector
        self.start_after = start_after
        self.result_path = result_path
        self.runner: ExperimentRunner | None = None
        self.result: ExperimentResult | None = None
        self.error: str | None = None
        self.state = "waiting"
        self.halted = False
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        from chaos.runner import ExperimentRunner

        try:
            if self._halt.wait(self.start_after):
                self.state = "stopped before it started"
                return
            with self._lock:
                if self._halt.is_set():
                    self.state = "stopped before it started"
                    return
                self.runner = ExperimentRunner(self.experiment, self.injector)
            self.state = "running"
            self.result = self.runner.run()
            self.state = "done"
        except Exception as exc:  # a broken experiment must not take the drill down: it is a failed check
            log.exception("chaos experiment failed")
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = "failed"
        finally:
            doc: dict[str, Any] = {"state": self.state, "error": self.error, "halted": self.halted}
            if self.result is not None:
                doc["result"] = self.result.to_json()
            with contextlib.suppress(OSError):
                _write_json(self.result_path, doc)

    def halt(self) -> None:
        """Stop now: faults not started are skipped, held ones undone, then the rollbacks."""
        self.halted = True
        self._halt.set()
        with self._lock:
            if self.runner is not None:
                self.runner.settle_timeout = 0.0  # one look at the steady state, no waiting for it
                self.runner.stop.set()


# ----------------------------------------------------------------------------------------- runner
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
        self.sc = scenario
        self.m = scenario.model
        self.runs_dir = runs_dir
        self.given_cluster = cluster
        self.cluster_dir = cluster_dir
        self.vhost = vhost or self.m.cluster.vhost
        self.allow_external = allow_external
        self.console = console or Console(width=None if sys.stdout.isatty() else 150)
        self.run_dir = runs_dir / run_dir_name(self.m.name)
        self.cluster: Cluster | None = None
        self.started_cluster = False
        self.links: Any = None  # chaos.links.LinkProxies when this run started them
        self.injector: FaultInjector | None = None
        self.services: RunServices | None = None
        self.system_started = False
        self.platform_secrets: Path | None = None  # as provisioned: every user, the nodes themselves
        self.secrets: Path | None = None  # what the services get (through the link proxies when used)
        self.retailers: Path | None = None
        self.intake_url = ""
        self.intake_urls: list[str] = []
        self.notify_port = 0
        self.simulator: subprocess.Popen[bytes] | None = None
        self.simulator_stopped = False
        self.locust: threading.Thread | None = None
        self.locust_result: LocustResult | None = None
        self.locust_error: str | None = None
        self.chaos: ChaosThread | None = None
        self.heal_log: list[str] = []
        #: what the heal could not mend (the rig is not whole: the run proves nothing)
        self.unmended: list[str] = []
        self._stopped: list[str] = []
        self.drain_doc: dict[str, Any] | None = None
        self.notes: list[str] = []
        self.phase = "start"
        self.phases: list[dict[str, Any]] = []
        self.pids: dict[str, Any] = {"runner": os.getpid()}
        self._step = 0
        self._log_handler: logging.Handler | None = None
        self._env_restore: contextlib.ExitStack = contextlib.ExitStack()

    # ------------------------------------------------------------------ entry point
    def run(self) -> int:
        """Every phase; the exit code: the audit's (0, 1 or 3), 130 when interrupted, 3 when a phase failed
        and no report could be written."""
        main = threading.current_thread() is threading.main_thread()
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
        interrupted = False
        error: str | None = None
        started = time.time()
        try:
            self._prepare()
            self._do_cluster()
            self._do_provision()
            if self.sc.uses_link_faults():
                self._do_links()
            self._do_system()
            self._do_traffic()
            with self._phase(
                "stop traffic", "wait for Locust, stop the chaos experiment (held faults undone)"
            ):
                self._stop_traffic_and_chaos(interrupted=False)
            self._do_heal()
            self._do_drain()
            self._release_receiver()
        except KeyboardInterrupt:
            interrupted = True
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("phase %s failed:\n%s", self.phase, traceback.format_exc())
        # From here on the clean-up runs to its end: a second Ctrl-C only says so.
        old_int = signal.signal(signal.SIGINT, self._ignore) if main else None
        if main:
            signal.signal(signal.SIGTERM, self._ignore)
        try:
            if interrupted or error:
                where = self.phase
                if interrupted:
                    self.console.print(
                        f"[bold yellow]interrupted[/] during {where}: stopping traffic and chaos, healing, "
                        "writing a partial report, stopping what this run started"
                    )
                else:
                    self._say(f"[bold red]error[/] during {where}: {escape(error or '')}", markup=True)
                self._best_effort(
                    "stop traffic and chaos", lambda: self._stop_traffic_and_chaos(interrupted=True)
                )
                self._best_effort("heal", self._do_heal)
            stopper = self._start_stopping()
            report = self._best_effort("audit", lambda: self._do_audit(interrupted, error, started))
            self._best_effort("stop", lambda: self._finish_stopping(stopper))
            code = EXIT_INTERRUPTED if interrupted else (EXIT_ERROR if report is None else report.exit_code)
            self._finish(code, interrupted, error, report, started)
            return code
        finally:
            self._env_restore.close()
            if self._log_handler is not None:
                logging.getLogger().removeHandler(self._log_handler)
                self._log_handler.close()
            if main:
                signal.signal(signal.SIGINT, old_int or signal.default_int_handler)
                signal.signal(signal.SIGTERM, old_term or signal.SIG_DFL)

    def _ignore(self, signum: int, frame: FrameType | None) -> None:
        self._say(f"(signal {signum} ignored: still cleaning up after the run, in {self.phase})")

    def _best_effort(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            self.notes.append(f"{what} failed: {type(exc).__name__}: {exc}")
            log.error("%s failed:\n%s", what, traceback.format_exc())
            self._say(f"[red]{what} failed:[/] {escape(str(exc))}", markup=True)
            return None

    @contextlib.contextmanager
    def _phase(self, name: str, what: str) -> Iterator[None]:
        self._step += 1
        self.phase = name
        self.console.rule(f"[bold]{self._step}. {escape(name)}[/]: {escape(what)}", align="left")
        entry: dict[str, Any] = {"phase": name, "what": what, "started_at": time.time()}
        self.phases.append(entry)
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
            self._save_drill_doc()

    def _say(self, text: str, *, markup: bool = False) -> None:
        # Plain by default: check names like drill[chaos] and paths are not rich markup.
        self.console.print(text, highlight=False, soft_wrap=True, markup=markup)

    # ------------------------------------------------------------------ prepare
    def _prepare(self) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for i in range(2, 100):
            if not self.run_dir.exists():
                break
            self.run_dir = self.runs_dir / f"{run_dir_name(self.m.name)}-{i}"
        self.run_dir.mkdir(parents=True)
        handler = logging.FileHandler(self.run_dir / "drill.log")
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s")
        )
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        self._log_handler = handler
        # One line per management/HTTP request would bury what the drill log is for.
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.phase = "run dir"
        (self.run_dir / "scenario.toml").write_text(self.sc.text)
        (self.run_dir / "slo.toml").write_text(slo_toml(self.m.slo))
        cluster_text, starts = describe_cluster(self.sc, self.cluster_dir, self.given_cluster)
        plan = plan_lines(self.sc, cluster=cluster_text, run_dir=str(self.run_dir), starts_cluster=starts)
        (self.run_dir / "plan.txt").write_text("\n".join(plan) + "\n")
        for line in plan:
            self._say(line)
        self._save_pids()
        self._save_drill_doc()

    # ------------------------------------------------------------------ cluster
    def _do_cluster(self) -> None:
        text, starts = describe_cluster(self.sc, self.cluster_dir, self.given_cluster)
        with self._phase("cluster", text):
            m = self.m.cluster
            if self.given_cluster is not None:
                self.cluster = self.given_cluster
            elif m.provider == "external":
                ext = ExternalCluster(m.amqp_urls, m.management_urls, self.allow_external)
                ext.start()
                self.cluster = ext
            else:
                spec = ClusterSpec(run_dir=(self.cluster_dir or DEFAULT_CLUSTER_DIR).resolve(), nodes=m.nodes)
                # Where the rig lives, so `drill cluster down` after a SIGKILLed runner finds it.
                self.pids["cluster_dir"] = str(spec.run_dir)
                self._save_pids()
                if not starts:
                    self.cluster = LocalCluster.attach(spec)
                else:
                    lc = LocalCluster(spec)
                    t0 = time.monotonic()
                    try:
                        lc.start()  # a failed or interrupted start stops what it started itself
                    finally:
                        if lc.is_running():
                            self.started_cluster = True
                            self.cluster = lc
                            self.pids["cluster"] = lc.state.owned_pids()
                            self._save_pids()
                    self._say(
                        f"{len(lc.node_indices)} nodes up and clustered in {time.monotonic() - t0:.1f} s"
                    )
            if isinstance(self.cluster, LocalCluster) or self.sc.experiment is not None:
                from chaos.injector import FaultInjector
                from chaos.journal import Journal

                self.injector = FaultInjector(
                    self.cluster, Journal(self.run_dir / "chaos" / "journal.jsonl"), self.allow_external
                )

    # ------------------------------------------------------------------ provision
    def _do_provision(self) -> None:
        from rig.provision import provision_platform

        assert self.cluster is not None
        with self._phase("provision", f"vhost {self.vhost!r}, one broker user per service, the topology"):
            if not self.started_cluster and self._vhost_exists():
                if isinstance(self.cluster, LocalCluster):
                    # A previous run's vhost: its leftover messages must not reach this run's services.
                    self._say(f"vhost {self.vhost!r} exists (a previous run's): deleting it to start clean")
                    self._mgmt_delete(f"vhosts/{quote(self.vhost, safe='')}")
                else:
                    raise DrillError(
                        f"vhost {self.vhost!r} already exists on the external cluster; pick another with --vhost"
                    )
            t0 = time.monotonic()
            prov = provision_platform(self.cluster, self.run_dir, vhost=self.vhost)
            self.secrets = self.platform_secrets = prov.secrets_path
            self._say(
                f"vhost {prov.vhost}: {prov.queues} queues, {len(prov.users)} service users, secrets in "
                f"{prov.secrets_path} ({time.monotonic() - t0:.1f} s)"
            )

    def _mgmt(self) -> ManagementClient:
        assert self.cluster is not None
        errors = []
        for n in self.cluster.node_indices:
            client = ManagementClient(self.cluster.management_url(n), *self.cluster.admin, timeout=10.0)
            try:
                client.get("overview")
                return client
            except Exception as exc:
                errors.append(f"node {n}: {exc}")
                client.close()
        raise DrillError("no management API answered: " + "; ".join(errors))

    def _vhost_exists(self) -> bool:
        import httpx

        with self._mgmt() as mc:
            try:
                mc.get(f"vhosts/{quote(self.vhost, safe='')}")
                return True
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 404:
                    return False
                raise

    def _mgmt_delete(self, path: str) -> None:
        with self._mgmt() as mc:
            mc.delete(path)

    # ------------------------------------------------------------------ links
    def _do_links(self) -> None:
        from chaos.links import LinkProxies

        with self._phase("links", "a Toxiproxy proxy per node; the services connect through them"):
            if not isinstance(self.cluster, LocalCluster):
                raise DrillError(
                    "link faults need the local provider (the proxies stand in front of its nodes)"
                )
            links = LinkProxies.attach(self.cluster.spec.run_dir)
            if links is None:
                with procs.interrupts_deferred():
                    links = LinkProxies.start(self.cluster)
                self.links = links
                self.pids["links"] = links.state.pid
                self._save_pids()
            else:
                self._say(f"reusing the link proxies already running for {self.cluster.spec.run_dir}")
            assert self.secrets is not None
            doc = json.loads(self.secrets.read_text())
            doc["nodes"] = [listen for _, listen in sorted(links.state.proxies.items())]
            path = self.secrets.with_name("platform-services.json")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, indent=1)
            self.secrets = path
            self._say(f"services connect through {', '.join(doc['nodes'])} (secrets {path})")

    # ------------------------------------------------------------------ system
    def _do_system(self) -> None:
        from rig.supervisor import SystemHandle
        from simulator.world import build_retailers, write_retailers_file
        from system.platform.settings import amqp_urls_from_secrets

        assert self.secrets is not None
        reps = self.sc.replicas()
        what = ", ".join(f"{k} ×{v}" for k, v in reps.items())
        with self._phase("system", f"{what}; wait until every replica is ready"):
            self.retailers = self.run_dir / "secrets" / "retailers.json"
            write_retailers_file(
                self.retailers, self.m.traffic.seed, build_retailers(self.m.traffic.seed, self.sc.traffic)
            )
            self.notify_port = free_port()
            runner_env = {
                "DRILL_PLATFORM_SECRETS": str(self.secrets),
                "DRILL_RETAILERS": str(self.retailers),
                "DRILL_NOTIFICATIONS_NOTIFY_URL": f"http://127.0.0.1:{self.notify_port}",
            }
            self.services = build_services(
                self.sc.services,
                replicas=reps,
                env={**runner_env, **self.m.system.env},
                broken={sw.service: dict(sw.env) for sw in self.m.broken},
                ready=dict(self.m.system.ready),
                free_base=free_port_base,
            )
            spec_path = self.run_dir / "services.toml"
            spec_path.write_text(self.services.to_toml())
            http = next(iter(self.services.http_ports.values()), None)
            if not http:
                raise DrillError(
                    f"no service in {self.sc.spec_path} has an HTTP port: the traffic needs intake"
                )
            # The retailers reach every intake replica (the simulator spreads and fails over, as behind
            # a load balancer); Locust and the readiness checks use the first.
            self.intake_urls = [f"http://127.0.0.1:{p}" for p in http]
            self.intake_url = self.intake_urls[0]
            doc = json.loads(self.secrets.read_text())
            # Services whose broker URLs come from the environment (the intake relay without a secrets
            # file) get intake's user; secrets travel in the environment only, never in services.toml.
            # Chaos's service faults find the system through DRILL_SYSTEM_DIR.
            self._env_restore.enter_context(_environ({"DRILL_SYSTEM_DIR": str(self.run_dir)}))
            secret_env = {"DRILL_AMQP_URLS": ",".join(amqp_urls_from_secrets(doc, "intake"))}
            t0 = time.monotonic()
            try:
                with _environ(secret_env):
                    SystemHandle.start(self.run_dir, spec_path, timeout=self.m.system.ready_timeout)
            finally:
                self.system_started = True  # whatever happened, the supervisor may exist: stop it at the end
                self._record_system_pids()
            self._say(
                f"supervisor and {sum(reps.values())} replica(s) running in {time.monotonic() - t0:.1f} s"
            )
            self._wait_ready(self.m.system.ready_timeout - (time.monotonic() - t0))
            self._say(f"every replica ready after {time.monotonic() - t0:.1f} s; intake at {self.intake_url}")

    def _wait_ready(self, timeout: float) -> None:
        from rig.supervisor import SystemHandle

        assert self.services is not None
        handle = SystemHandle(self.run_dir)
        deadline = time.monotonic() + max(timeout, 5.0)
        import httpx

        with httpx.Client(timeout=1.0) as client:
            while True:
                missing = self._not_ready(handle, client)
                if not missing:
                    return
                if time.monotonic() > deadline:
                    raise DrillError(
                        f"not ready after {timeout:.0f} s: {', '.join(missing)}; logs in {self.run_dir / 'logs'}"
                    )
                time.sleep(0.25)

    def _not_ready(self, handle: Any, client: Any) -> list[str]:
        assert self.services is not None
        st = handle.state() or {"replicas": []}
        rows = {(r["service"], r["index"]): r for r in st["replicas"]}
        missing = []
        for spec in self.services.specs:
            kind = self.services.ready[spec.name]
            for i in range(spec.replicas):
                r = rows.get((spec.name, i))
                label = f"{spec.name}#{i}"
                pid = r.get("pid") if r else None
                if not r or r["state"] != "running" or not procs.alive(pid):
                    missing.append(f"{label} (not running)")
                    continue
                if kind == "http":
                    port = self.services.http_ports[spec.name][i]
                    try:
                        ok = client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
                    except Exception:
                        ok = False
                    if not ok:
                        missing.append(f"{label} (GET :{port}/readyz)")
                elif kind == "marker":
                    marker = self.run_dir / "ready" / f"{self.services.marker_names[spec.name]}.{i}"
                    try:
                        text = marker.read_text().strip()
                    except OSError:
                        missing.append(f"{label} (no {marker.name} marker)")
                        continue
                    if text.isdigit() and int(text) != pid:
                        missing.append(f"{label} (marker of an earlier PID)")
        return missing

    def _record_system_pids(self) -> dict[str, Any] | None:
        from rig.supervisor import SystemHandle

        st = SystemHandle(self.run_dir).state()
        if st is None:
            return None
        changed = False
        if self.pids.get("supervisor") != st.get("supervisor_pid"):
            self.pids["supervisor"] = st.get("supervisor_pid")
            changed = True
        known = set(self.pids.setdefault("replicas", []))
        for r in st.get("replicas", []):
            if r.get("pid") and r["pid"] not in known:
                self.pids["replicas"].append(r["pid"])
                changed = True
        if changed:
            self._save_pids()
        return st

    # ------------------------------------------------------------------ traffic + chaos
    def _do_traffic(self) -> None:
        from system.platform.settings import amqp_urls_from_secrets

        assert self.secrets is not None and self.retailers is not None and self.cluster is not None
        t = self.m.traffic
        with self._phase(
            "traffic",
            f"simulator {self.sc.traffic.name} for {self.m.duration:g} s + linger ≤ {t.linger:g} s"
            + (", chaos in parallel" if self.sc.experiment is not None else ""),
        ):
            assert self.platform_secrets is not None
            # The couriers are the outside world: straight to the nodes (they fail over between them),
            # never through the link proxies.
            doc = json.loads(self.platform_secrets.read_text())
            couriers = ",".join(amqp_urls_from_secrets(doc, "couriers"))
            argv = [
                sys.executable, "-m", "simulator", "simulate",
                "--scenario", str(self.sc.traffic_path), "--seed", str(t.seed),
                "--duration", f"{self.m.duration:g}s", "--target", ",".join(self.intake_urls),
                "--retailers", str(self.retailers), "--listen", f"127.0.0.1:{self.notify_port}",
                "--amqp", couriers, "--run-dir", str(self.run_dir), "--hold-receiver",
            ]  # fmt: skip
            if t.rate is not None:
                argv += ["--rate", f"{t.rate:g}"]
            if t.linger > 0:
                argv += ["--linger", f"{t.linger:g}s"]
            out = open(self.run_dir / "simulator.out", "wb")  # noqa: SIM115 - the child keeps its own copy
            try:
                with procs.interrupts_deferred():
                    # Its own session: a Ctrl-C in the terminal reaches the drill only; the drill stops
                    # the simulator itself, so its ledger is flushed and the order of shutdown is ours.
                    self.simulator = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                    self.pids["simulator"] = self.simulator.pid
                    self._save_pids()
            finally:
                out.close()
            t_start = time.monotonic()
            if t.locust is not None:
                self._start_locust()
            if self.sc.experiment is not None:
                assert self.injector is not None
                self.chaos = ChaosThread(
                    self.sc.experiment,
                    self.injector,
                    self.m.chaos.start,
                    self.run_dir / "chaos" / "result.json",
                )
                (self.run_dir / "chaos").mkdir(exist_ok=True)
                self.chaos.start()
            self._live(t_start)

    def _start_locust(self) -> None:
        from loadtests.runner import run_locust

        lc = self.m.traffic.locust
        assert lc is not None and self.retailers is not None

        def body() -> None:
            try:
                self.locust_result = run_locust(
                    ROOT / "loadtests" / "intake.py",
                    self.intake_url,
                    self.run_dir,
                    lc.users,
                    lc.spawn_rate,
                    self.m.duration,
                    shape=lc.shape,
                    workers=lc.workers,
                    env={"DRILL_RETAILERS": str(self.retailers), "DRILL_SEED": str(self.m.traffic.seed)},
                    deadline_s=self.m.duration + 60.0,
                )
            except Exception as exc:
                log.exception("locust failed")
                self.locust_error = f"{type(exc).__name__}: {exc}"

        self.locust = threading.Thread(target=body, name="drill-locust", daemon=True)
        self.locust.start()

    def _locust_pids(self) -> list[int]:
        try:
            return [int(p) for p in json.loads((self.run_dir / "locust" / "pids.json").read_text())]
        except (OSError, ValueError, TypeError):
            return []

    def _snapshot(self, t_start: float, tail: LedgerTail, poller: BrokerPoller | None) -> Snapshot:
        st = self._record_system_pids()
        running, wanted, restarts = replica_counts(st)
        journal = self.run_dir / "chaos" / "journal.jsonl"
        locust = ""
        if self.locust is not None:
            pids = self._locust_pids()
            if self.locust.is_alive():
                locust = (
                    f"running ({self.m.traffic.locust.shape if self.m.traffic.locust else ''}, PIDs {pids})"
                )
            else:
                locust = "done" if self.locust_error is None else f"failed: {self.locust_error}"
            if pids and self.pids.get("locust") != pids:
                self.pids["locust"] = pids
                self._save_pids()
        return Snapshot(
            phase=f"drill {self.m.name}",
            elapsed_s=time.monotonic() - t_start,
            duration_s=self.m.duration,
            progress=tail.poll(),
            broker=poller.figures if poller is not None else BrokerFigures(),
            faults=tuple(open_faults(journal)),
            faults_applied=faults_applied(journal),
            chaos=self.chaos.state if self.chaos is not None else "",
            replicas_running=running,
            replicas_wanted=wanted,
            restarts=restarts,
            locust=locust,
        )

    def _own_roles(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        if self.simulator is not None:
            out["simulator"] = [self.simulator.pid]
        if self.locust is not None:
            out["locust"] = self._locust_pids()
        links = self.pids.get("links")
        if isinstance(links, int):
            out["links"] = [links]
        return out

    def _live(self, t_start: float) -> None:
        from rich.live import Live

        from rig.queues import QueueDepthSampler
        from rig.resources import ResourceSampler, drill_roles

        assert self.simulator is not None and self.cluster is not None
        tail = LedgerTail(self.run_dir / "simulator" / "ledger.jsonl")
        poller = BrokerPoller(
            [self.cluster.management_url(n) for n in self.cluster.node_indices],
            self.cluster.admin,
            self.vhost,
        )
        poller.start()
        # CPU and memory of the machine and of each role, 1/s, for the report's saturation finding.
        sampler = ResourceSampler(
            self.run_dir / rundir.RESOURCES, drill_roles(self.cluster, self.run_dir, self._own_roles)
        )
        sampler.start()
        # Queue depths before, during and after each fault: the report's per-fault drain time.
        depths = QueueDepthSampler(
            self.run_dir,
            [self.cluster.management_url(n) for n in self.cluster.node_indices],
            self.cluster.admin,
            self.cluster.amqp_urls,
            self.vhost,
            ignore=DRAIN_IGNORE,
        )
        depths.start()
        limit = self.m.duration + self.m.traffic.linger + SIMULATOR_GRACE_S
        try:
            if self.console.is_terminal:
                with Live(console=self.console, refresh_per_second=2, transient=False) as live:
                    while self._traffic_running() and not self._overdue(t_start, limit):
                        live.update(_panel(self._snapshot(t_start, tail, poller)))
                        time.sleep(LIVE_EVERY_S)
                    live.update(_panel(self._snapshot(t_start, tail, poller)))
            else:
                last = 0.0
                while self._traffic_running() and not self._overdue(t_start, limit):
                    if time.monotonic() - last >= LOG_EVERY_S:
                        last = time.monotonic()
                        self._say(status_line(self._snapshot(t_start, tail, poller)))
                    time.sleep(LIVE_EVERY_S)
                for line in format_lines(self._snapshot(t_start, tail, poller)):
                    self._say(line)
        finally:
            poller.stop()
            sampler.stop()
            depths.stop()
        rc = self.simulator.poll()
        how = f"exit {rc}" if rc is not None else "its receiver stays up until the platform drained"
        self._say(f"simulator finished ({how}) after {time.monotonic() - t_start:.1f} s")

    def _traffic_running(self) -> bool:
        """The simulator still plays its run: alive, and not yet only holding its notification receiver."""
        from simulator.runner import HOLDING_MARKER

        assert self.simulator is not None
        if self.simulator.poll() is not None:
            return False
        return not (self.run_dir / "simulator" / HOLDING_MARKER).exists()

    def _release_receiver(self) -> None:
        """Stop the simulator's notification receiver once the platform has drained (the run itself ended
        before): SIGINT, and it exits 0 — a planned stop, not the drill cutting the traffic short."""
        p = self.simulator
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.notes.append("the simulator's receiver did not stop on SIGINT: killed")
            self.simulator_stopped = True
            p.kill()
            p.wait(timeout=10)

    def _overdue(self, t_start: float, limit: float) -> bool:
        if time.monotonic() - t_start <= limit:
            return False
        self.notes.append(f"the simulator ran past {limit:.0f} s: stopped by the drill")
        self._say(f"[yellow]the simulator ran past {limit:.0f} s: stopping it[/]", markup=True)
        self._stop_simulator()
        return True

    # ------------------------------------------------------------------ stopping traffic and chaos
    def _stop_simulator(self) -> None:
        p = self.simulator
        if p is None or p.poll() is not None:
            return
        self.simulator_stopped = True
        # SIGINT: asyncio.run cancels the run, which records run_aborted and flushes the ledger.
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)

    def _stop_locust(self, interrupted: bool) -> None:
        th = self.locust
        if th is None:
            return
        if not interrupted:
            th.join(timeout=self.m.duration + 90.0)
        if th.is_alive():
            pids = self._locust_pids()
            if pids:
                # The master first: it stops its users and tells the workers; run_locust then stops the rest.
                procs.send(pids[0], signal.SIGTERM)
            th.join(timeout=STOP_GRACE_S + 10)
            for pid in pids:
                if procs.alive(pid):
                    procs.send(pid, signal.SIGKILL)
            th.join(timeout=10)

    def _stop_traffic_and_chaos(self, *, interrupted: bool) -> None:
        if interrupted:
            self._stop_simulator()
        self._stop_locust(interrupted)
        if self.chaos is not None and self.chaos.is_alive():
            if not interrupted:
                self._say("the traffic is over: stopping the chaos experiment (held faults are undone)")
            self.chaos.halt()
            self.chaos.join(timeout=CHAOS_STOP_S)
            if self.chaos.is_alive():
                self.notes.append(f"the chaos thread did not finish within {CHAOS_STOP_S:.0f} s")
        if self.chaos is not None and self.chaos.result is not None:
            res = self.chaos.result
            for f in res.faults:
                state = _first_line(f.error or f.skipped or "applied and undone")
                self._say(f"fault {f.index}: {f.kind} {f.target} -> {state}")

    # ------------------------------------------------------------------ heal, drain
    def _do_heal(self) -> None:
        if self.injector is None:
            return
        with self._phase(
            "heal", "undo the journal's open faults, sweep the rig (alarms, paused nodes, links)"
        ):
            did = self.injector.heal(system_dirs=[self.run_dir])
            self.heal_log.extend(did)
            self.unmended.extend(did.unmended)
            for line in did or ["nothing to heal"]:
                self._say(line)

    def _do_drain(self) -> None:
        from rig.drain import drain

        assert self.cluster is not None
        with self._phase(
            "drain",
            f"queues of vhost {self.vhost!r} and the outboxes empty, at most {self.m.drain_deadline:g} s",
        ):
            outboxes = sorted(self.run_dir.glob("*.db"))
            receiver_up = self.simulator is not None and self.simulator.poll() is None
            result = drain(
                [self.cluster.management_url(n) for n in self.cluster.node_indices],
                self.cluster.admin,
                outboxes,
                self.run_dir,
                amqp_urls=self.cluster.amqp_urls,
                deadline_s=self.m.drain_deadline,
                only=f"^{re.escape(self.vhost)}/",
                ignore=DRAIN_IGNORE,
                receiver_up=receiver_up,
            )
            self.drain_doc = result.to_json()
            _write_json(self.run_dir / "drain.json", self.drain_doc)
            self._say(
                f"drained in {result.seconds:.1f} s ({len(outboxes)} outbox file(s))"
                if result.drained
                else f"NOT drained after {result.seconds:.1f} s: {result.leftover}"
            )

    # ------------------------------------------------------------------ audit
    def _do_audit(self, interrupted: bool, error: str | None, started: float) -> AuditReport:
        from reports.audit import audit_run, write_platform_config
        from reports.story import headline
        from reports.writers import write_all

        partial = interrupted or error is not None
        with self._phase(
            "audit", "report.json, junit.xml, summary.md, report.html" + (" (PARTIAL)" if partial else "")
        ):
            write_platform_config(self.run_dir)  # notifications checked exactly once against what was owed
            report = audit_run(self.run_dir)
            for i, check in enumerate(self._drill_checks(interrupted, error, started)):
                report.checks.insert(i, check)
            paths = write_all(report, self.run_dir, html=True)
            doc = json.loads(paths[0].read_text())
            doc["partial"] = partial
            doc["drill"] = self._drill_doc(partial=partial, error=error)
            _write_json(paths[0], doc)
            if partial:
                _mark_partial(self.run_dir, self._partial_reason(interrupted, error))
            for sentence in headline(report):
                self._say(sentence)
            for check in report.checks:
                if check.status != "passed":
                    status = "HARNESS" if check.status == "error" else check.status.upper()
                    self._say(f"  {status:7} {check.name}: {check.message}")
            return report

    def _partial_reason(self, interrupted: bool, error: str | None) -> str:
        if interrupted:
            return f"interrupted during the {self.phase_at_fault()} phase"
        return f"error during the {self.phase_at_fault()} phase: {error}"

    def phase_at_fault(self) -> str:
        """The first phase that did not finish (the one interrupted or failed)."""
        for p in self.phases:
            if p.get("status") not in ("done", None) and p["phase"] != "audit":
                return str(p["phase"])
        return self.phase

    def _drill_checks(self, interrupted: bool, error: str | None, started: float) -> list[CheckResult]:
        from reports.checks import CheckResult

        out = []
        if interrupted or error:
            out.append(CheckResult("drill[completed]", "error", f"PARTIAL run: {self._partial_reason(interrupted, error)}",
                                   details={"phases": self.phases}))  # fmt: skip
        else:
            out.append(CheckResult("drill[completed]", "passed",
                                   f"every phase ran ({time.time() - started:.0f} s so far)",
                                   details={"phases": self.phases}))  # fmt: skip
        out.append(traffic_check(self.simulator, self.simulator_stopped, self.locust_result, self.locust_error,
                                 self.run_dir))  # fmt: skip
        out.append(chaos_check(self.chaos))
        out.append(heal_check(self.injector is not None, self.heal_log, self.unmended))
        return out

    # ------------------------------------------------------------------ stop
    def _start_stopping(self) -> threading.Thread:
        """Stop the system, the link proxies and the cluster (what this run started) in a thread, while
        the audit reads the files they left: the audit needs none of them, and the two together take
        half the time. :meth:`_finish_stopping` waits for it and reports."""

        def one(what: str, fn: Callable[[], bool]) -> None:
            t0 = time.monotonic()
            try:
                if fn():
                    self._stopped.append(f"{what} stopped in {time.monotonic() - t0:.1f} s")
                    log.info("%s stopped in %.1f s", what, time.monotonic() - t0)
            except Exception as exc:
                log.error("stopping the %s failed:\n%s", what, traceback.format_exc())
                self.notes.append(f"stopping the {what} failed: {type(exc).__name__}: {exc}")

        def body() -> None:
            # The services first (they would only reconnect in a loop to brokers going away), then the
            # proxies and the brokers side by side (the proxy server may take its full grace to exit).
            one("system", self._stop_system)
            links = threading.Thread(
                target=one, args=("link proxies", self._stop_links), name="drill-stop-links"
            )
            links.start()
            one("cluster", self._stop_cluster)
            links.join()

        th = threading.Thread(target=body, name="drill-stop")
        th.start()
        return th

    def _stop_system(self) -> bool:
        from rig.supervisor import SupervisorError, SystemHandle

        if not self.system_started:
            return False
        handle = SystemHandle(self.run_dir)
        # A supervisor spawned just before an interrupt writes its state within a moment.
        deadline = time.monotonic() + 5.0
        while handle.state() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        self._record_system_pids()
        try:
            handle.stop()
        except SupervisorError as exc:
            self.notes.append(f"system: {exc}")
            return False
        return True

    def _stop_links(self) -> bool:
        if self.links is None:
            return False
        self.links.stop()
        return True

    def _stop_cluster(self) -> bool:
        if not (self.started_cluster and isinstance(self.cluster, LocalCluster)):
            return False
        self.cluster.stop()
        return True

    def _finish_stopping(self, stopper: threading.Thread) -> None:
        with self._phase("stop", "the system, the link proxies and the cluster this run started, by PID"):
            stopper.join()
            for line in self._stopped or ["nothing of this run was left to stop"]:
                self._say(line)
            left = self.alive_pids()
            if left:
                self.notes.append(f"PIDs of the run still alive: {left}")
                self._say(f"[red]PIDs of the run still alive:[/] {left}", markup=True)

    def alive_pids(self) -> list[int]:
        """PIDs this run started that are still alive (a reused cluster's are not the run's)."""
        pids: list[int] = []
        for key, value in self.pids.items():
            if key == "runner":
                continue
            pids.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
        return [p for p in pids if procs.alive(p)]

    # ------------------------------------------------------------------ records
    def _save_pids(self) -> None:
        with contextlib.suppress(OSError):
            _write_json(self.run_dir / "pids.json", self.pids)

    def _drill_doc(self, *, partial: bool = False, error: str | None = None) -> dict[str, Any]:
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

    def _save_drill_doc(self, **extra: Any) -> None:
        with contextlib.suppress(OSError):
            _write_json(self.run_dir / "drill.json", {**self._drill_doc(), **extra})

    def _finish(
        self, code: int, interrupted: bool, error: str | None, report: AuditReport | None, started: float
    ) -> None:
        verdict = (
            report.verdict_line() if report is not None else "VERDICT: none (no report could be written)"
        )
        if interrupted or error:
            verdict += " (PARTIAL)"
        self._save_drill_doc(
            partial=bool(interrupted or error),
            error=error,
            exit_code=code,
            verdict=verdict,
            seconds=round(time.time() - started, 1),
            left_alive=self.alive_pids(),
        )
        self.console.rule()
        # Plain lines (no markup, no wrapping): what CI logs and tests read.
        print(verdict, flush=True)
        html = self.run_dir / "report.html"
        print(f"report: {html if html.exists() else self.run_dir}", flush=True)
        print(f"run dir: {self.run_dir} ({time.time() - started:.0f} s, exit {code})", flush=True)


def _first_line(text: str, limit: int = 200) -> str:
    """A fault's error as one short line (rabbitmqctl's are pages long; drill.log has them whole)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _panel(s: Snapshot) -> Panel:
    return Panel(Text("\n".join(format_lines(s))), title="live", expand=False)


def slo_toml(slo: Mapping[str, float | bool]) -> str:
    """The scenario's ``[slo]`` table as ``RUN/slo.toml`` (reports/slo.py's format: false = off)."""
    lines = ["# The objectives of this run (from the drill scenario; absent keys: reports/slo.py defaults)."]
    for key, value in slo.items():
        lines.append(f"{key} = {'false' if value is False else repr(float(value))}")
    return "\n".join(lines) + "\n"


def traffic_check(
    simulator: subprocess.Popen[bytes] | None,
    stopped_by_drill: bool,
    locust: LocustResult | None,
    locust_error: str | None,
    run_dir: Path,
) -> CheckResult:
    """``drill[traffic]``: the simulator (and Locust) ran to their end; a crash is the harness's trouble
    (``error``: INCONCLUSIVE), never the platform's."""
    from reports.checks import CheckResult

    name = "drill[traffic]"
    if simulator is None:
        return CheckResult(name, "skipped", "the traffic never started")
    rc = simulator.returncode
    details = {"simulator_exit": rc, "locust_exit": locust.exit_code if locust is not None else None}
    if stopped_by_drill:
        return CheckResult(name, "skipped", "the drill stopped the simulator before its end", details=details)
    if rc != 0:
        return CheckResult(
            name, "error", f"the simulator exited {rc}; see {run_dir / 'simulator.out'}", details=details
        )
    if locust_error is not None:
        return CheckResult(name, "error", f"Locust failed: {locust_error}", details=details)
    # Locust exits 1 when some requests failed (expected under chaos); other codes mean it broke.
    if locust is not None and locust.exit_code not in (0, 1):
        return CheckResult(
            name, "error", f"Locust exited {locust.exit_code}; see {run_dir / 'locust'}", details=details
        )
    extra = f"; Locust {locust.requests} requests" if locust is not None else ""
    return CheckResult(name, "passed", f"the simulator ran to its end{extra}", details=details)


def chaos_check(chaos: ChaosThread | None) -> CheckResult:
    """``drill[chaos]``: every fault applied and undone, the steady state held before and after.

    Each way this fails is the harness not carrying out its plan (a fault the rig could not apply or
    undo, a rig not whole after the method): ``error``, so the run is INCONCLUSIVE, never FAIL."""
    from reports.checks import CheckResult

    name = "drill[chaos]"
    if chaos is None:
        return CheckResult(name, "skipped", "no chaos experiment in this drill")
    if chaos.error is not None:
        return CheckResult(name, "error", f"the experiment broke: {chaos.error}")
    res = chaos.result
    if res is None:
        return CheckResult(name, "skipped", f"the experiment never ran ({chaos.state})")
    applied = sum(f.applied_at is not None for f in res.faults)
    errors = [
        f"{f.kind} {f.target}: {_first_line(f.error)}".replace("  ", " ") for f in res.faults if f.error
    ]
    skipped = sum(f.skipped is not None for f in res.faults)
    counts = {"faults": len(res.faults), "applied": applied, "errors": len(errors), "skipped": skipped}
    details = res.to_json()
    if not all(p.ok for p in res.steady_before):
        bad = "; ".join(p.message for p in res.steady_before if not p.ok)
        return CheckResult(
            name, "error", f"steady state not met before the method: {bad}", counts, details=details
        )
    if errors:
        return CheckResult(name, "error", f"{len(errors)} fault(s) failed: {'; '.join(errors[:3])}", counts,
                           {"errors": errors[:10]}, details)  # fmt: skip
    if res.unmended:
        return CheckResult(name, "error", f"the rollbacks could not mend: {'; '.join(res.unmended[:3])}",
                           counts, details=details)  # fmt: skip
    if res.steady_after and not all(p.ok for p in res.steady_after):
        bad = "; ".join(p.message for p in res.steady_after if not p.ok)
        return CheckResult(
            name, "error", f"steady state not back after the method: {bad}", counts, details=details
        )
    back = f"; steady state back after {res.recovery_seconds:g} s" if res.recovery_seconds is not None else ""
    cut = f", {skipped} not run (the traffic ended first)" if skipped else ""
    return CheckResult(
        name, "passed", f"{applied} fault(s) applied and undone{cut}{back}", counts, details=details
    )


def heal_check(healed: bool, did: list[str], unmended: list[str]) -> CheckResult:
    """``drill[heal]``: after the traffic the rig was made whole again (every fault undone, every node up
    and clustered, no alarm, no frozen replica) — or the harness says exactly what it could not mend, and
    the run proves nothing (``error``: INCONCLUSIVE)."""
    from reports.checks import CheckResult

    name = "drill[heal]"
    if not healed:
        return CheckResult(name, "skipped", "no rig to heal in this run")
    if unmended:
        return CheckResult(name, "error", "could not mend: " + "; ".join(unmended[:3]),
                           {"unmended": len(unmended)}, details={"unmended": unmended, "did": did})  # fmt: skip
    return CheckResult(name, "passed", f"the rig is whole ({len(did)} action(s))", details={"did": did})


def _mark_partial(run_dir: Path, reason: str) -> None:
    """Say PARTIAL at the top of summary.md and report.html (report.json has ``"partial": true``)."""
    summary = run_dir / "summary.md"
    if summary.exists():
        summary.write_text(
            f"> **PARTIAL RUN** — {reason}; the figures cover the run up to there.\n\n" + summary.read_text()
        )
    html = run_dir / "report.html"
    if html.exists():
        import html as html_lib

        banner = (
            '<div style="background:#b00020;color:#fff;padding:12px 20px;font-weight:bold">'
            f"PARTIAL RUN — {html_lib.escape(reason)}; the figures cover the run up to there.</div>"
        )
        text = html.read_text()
        html.write_text(text.replace("<body>", "<body>\n" + banner, 1))
