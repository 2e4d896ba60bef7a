"""Each phase of a drill on its own, with fakes for the rig: no broker, no supervisor, no simulator."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from rich.console import Console

import rundir
from chaos.injector import HealReport
from harness.drill import observers
from harness.drill.phases import (
    audit,
    cluster,
    drain,
    heal,
    links,
    prepare,
    provision,
    stop,
    stop_traffic,
    system,
    traffic,
)
from harness.drill.run import DrillError, DrillRun
from harness.drill.scenario import load
from harness.drill.services import RunServices
from rig.cluster import Cluster, ClusterSpec, LocalCluster, NodeStatus
from rig.drain import DrainResult
from rig.provision import Provisioned

ROOT = Path(__file__).resolve().parents[3]
INTAKE_ONLY = ROOT / "tests" / "integration" / "drill" / "scenarios" / "intake-only.toml"


class FakeCluster(Cluster):
    """Two nodes at made-up URLs; records what the drill asked of it."""

    provider = "fake"

    def __init__(self, *, runs_here: bool = False) -> None:
        self.runs_here = runs_here
        self.calls: list[str] = []

    @property
    def amqp_urls(self) -> list[str]:
        return ["amqp://admin:pw@127.0.9.1:5701/", "amqp://admin:pw@127.0.9.2:5702/"]

    def management_url(self, node: int) -> str:
        return f"http://127.0.9.{node}:15700"

    @property
    def admin(self) -> tuple[str, str]:
        return ("admin", "pw")

    @property
    def node_indices(self) -> list[int]:
        return [1, 2]

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")

    def status(self) -> list[NodeStatus]:
        return []

    def kill(self, node: int) -> None: ...
    def stop_node(self, node: int) -> None: ...
    def restart(self, node: int) -> None: ...
    def pause(self, node: int) -> None: ...
    def resume(self, node: int) -> None: ...


class FakeProcess:
    """A Popen stand-in: running until signalled (SIGINT ends it with exit 0)."""

    def __init__(self, *argv: Any, **kwargs: Any) -> None:
        self.argv = list(argv[0]) if argv else []
        self.pid = 424242
        self.returncode: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.returncode = 0

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.returncode = -9


@pytest.fixture
def run(tmp_path: Path) -> Iterator[DrillRun]:
    r = DrillRun(
        sc=load(scenario_file(tmp_path)),
        run_dir=tmp_path / "runs" / "20260101T000000Z-t",
        console=Console(file=open(os.devnull, "w"), width=150),  # noqa: SIM115
        vhost="drill",
    )
    yield r
    r.env.close()


def scenario_file(tmp_path: Path) -> Path:
    """A drill scenario with the two intake services and no chaos."""
    path = tmp_path / "drill.toml"
    path.write_text(
        f'name = "t"\nduration = "2s"\n[system]\nspec = "{INTAKE_ONLY}"\n'
        '[traffic]\nscenario = "steady-quick"\nseed = 1\n'
    )
    return path


def made(run: DrillRun) -> DrillRun:
    run.run_dir.mkdir(parents=True)
    return run


# ------------------------------------------------------------------ prepare
def test_prepare_writes_the_run_dir_and_its_records(run: DrillRun) -> None:
    run.given_cluster = FakeCluster()
    handler = prepare.prepare(run)
    import logging

    logging.getLogger().removeHandler(handler)
    handler.close()
    for name in (rundir.SCENARIO, rundir.SLO, rundir.PLAN, rundir.PIDS, rundir.DRILL, rundir.DRILL_LOG):
        assert (run.run_dir / name).exists(), name
    assert json.loads((run.run_dir / rundir.PIDS).read_text()) == {"runner": os.getpid()}
    assert "use the fake cluster given (2 nodes)" in (run.run_dir / rundir.PLAN).read_text()


# ------------------------------------------------------------------ cluster
def test_a_given_cluster_is_used_and_an_injector_made_only_for_a_rig_that_runs_here(run: DrillRun) -> None:
    made(run)
    made_for: list[Any] = []
    run.given_cluster = FakeCluster(runs_here=False)
    cluster.start_cluster(run, False, injector=lambda c, j, a: made_for.append((c, j)) or "inj")  # type: ignore[arg-type,func-returns-value]
    assert run.cluster is run.given_cluster and run.injector is None and not run.started_cluster
    run.given_cluster = FakeCluster(runs_here=True)
    cluster.start_cluster(run, False, injector=lambda c, j, a: "inj")  # type: ignore[arg-type,return-value]
    assert run.injector == "inj"


def test_a_local_rig_the_run_starts_is_recorded_for_the_clean_up(run: DrillRun) -> None:
    made(run)

    class Local(LocalCluster):
        def __init__(self, spec: ClusterSpec) -> None:
            self.spec, self.started = spec, False

        def start(self) -> None:
            self.started = True

        def is_running(self) -> bool:
            return self.started

        @property
        def node_indices(self) -> list[int]:
            return [1, 2, 3]

        @property
        def state(self) -> Any:
            return type("S", (), {"owned_pids": lambda self: [11, 12]})()

    run.cluster_dir = run.run_dir / "rig"
    cluster.start_cluster(run, True, local=Local, injector=lambda c, j, a: "inj")  # type: ignore[arg-type,return-value]
    assert run.started_cluster and isinstance(run.cluster, Local) and run.cluster.started
    pids = json.loads((run.run_dir / rundir.PIDS).read_text())
    assert pids["cluster"] == [11, 12] and pids["cluster_dir"] == str(run.cluster_dir.resolve())
    assert run.injector == "inj"  # the local rig is healed at the end


# ------------------------------------------------------------------ provision
def _provisioner(cluster: Cluster, run_dir: Path, *, vhost: str) -> Provisioned:
    return Provisioned(run_dir / rundir.PLATFORM_SECRETS, vhost, {"intake": "drill-intake"}, 7)


def test_provision_replaces_a_leftover_vhost_on_a_rig_that_runs_here(run: DrillRun) -> None:
    made(run)
    run.cluster = FakeCluster(runs_here=True)
    deleted: list[str] = []
    provision.provision(
        run, exists=lambda c, v: True, delete=lambda c, v: deleted.append(v), provisioner=_provisioner
    )
    assert deleted == ["drill"]
    assert run.secrets == run.platform_secrets == run.run_dir / rundir.PLATFORM_SECRETS


def test_provision_refuses_a_taken_vhost_on_a_cluster_it_does_not_own(run: DrillRun) -> None:
    made(run)
    run.cluster = FakeCluster(runs_here=False)
    with pytest.raises(DrillError, match="already exists on the external cluster"):
        provision.provision(run, exists=lambda c, v: True, delete=lambda c, v: None, provisioner=_provisioner)


# ------------------------------------------------------------------ links
class FakeLinks:
    started: ClassVar[list[Any]] = []

    def __init__(self) -> None:
        self.state = type(
            "S", (), {"pid": 777, "proxies": {"rabbit2": "127.0.0.1:9002", "rabbit1": "127.0.0.1:9001"}}
        )()

    @classmethod
    def attach(cls, run_dir: Path) -> FakeLinks | None:
        return None

    @classmethod
    def start(cls, cluster: Any) -> FakeLinks:
        cls.started.append(cluster)
        return cls()


def test_links_need_a_local_rig(run: DrillRun) -> None:
    made(run)
    run.cluster = FakeCluster(runs_here=True)
    with pytest.raises(DrillError, match="need the local provider"):
        links.start_links(run, proxies=FakeLinks)


def test_links_point_the_services_secrets_at_the_proxies(run: DrillRun) -> None:
    made(run)

    class Local(LocalCluster):
        def __init__(self, spec: ClusterSpec) -> None:
            self.spec = spec

    run.cluster = Local(ClusterSpec(run_dir=run.run_dir / "rig"))
    (run.run_dir / rundir.SECRETS_DIR).mkdir()
    run.secrets = run.run_dir / rundir.PLATFORM_SECRETS
    run.secrets.write_text(json.dumps({"nodes": ["127.0.9.1:5701"], "users": {}}))
    links.start_links(run, proxies=FakeLinks)
    assert run.secrets == run.run_dir / rundir.SERVICES_SECRETS
    assert json.loads(run.secrets.read_text())["nodes"] == ["127.0.0.1:9001", "127.0.0.1:9002"]
    assert run.secrets.stat().st_mode & 0o777 == 0o600
    assert json.loads((run.run_dir / rundir.PIDS).read_text())["links"] == 777


# ------------------------------------------------------------------ system
def test_a_replica_is_ready_when_running_and_it_says_so(run: DrillRun) -> None:
    made(run)
    services = RunServices(
        specs=[dataclasses.replace(s, replicas=1) for s in run.sc.services],
        http_ports={"intake": [8080]},
        ready={"intake": "http", "intake-relay": "marker"},
        marker_names={"intake": "intake", "intake-relay": "intake-relay"},
    )
    me = os.getpid()
    state = {"replicas": [{"service": "intake", "index": 0, "pid": me, "state": "running"},
                          {"service": "intake-relay", "index": 0, "pid": me, "state": "running"}]}  # fmt: skip

    class Http:
        def __init__(self, code: int) -> None:
            self.code = code

        def get(self, url: str) -> Any:
            return type("R", (), {"status_code": self.code})()

    assert system.not_ready(run, services, None, Http(200)) == [
        "intake#0 (not running)",
        "intake-relay#0 (not running)",
    ]
    assert system.not_ready(run, services, state, Http(503)) == [
        "intake#0 (GET :8080/readyz)",
        "intake-relay#0 (no intake-relay.0 marker)",
    ]
    (run.run_dir / rundir.READY_DIR).mkdir()
    (run.run_dir / rundir.READY_DIR / "intake-relay.0").write_text("1")
    assert system.not_ready(run, services, state, Http(200)) == ["intake-relay#0 (marker of an earlier PID)"]
    (run.run_dir / rundir.READY_DIR / "intake-relay.0").write_text(str(me))
    assert system.not_ready(run, services, state, Http(200)) == []


def test_the_system_starts_under_the_supervisor_with_its_spec_and_secrets(
    run: DrillRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    made(run)
    (run.run_dir / rundir.SECRETS_DIR).mkdir()
    run.secrets = run.run_dir / rundir.PLATFORM_SECRETS
    run.secrets.write_text(
        json.dumps(
            {
                "vhost": "drill",
                "nodes": ["127.0.9.1:5701"],
                "users": {"intake": {"username": "u", "password": "p"}},
            }
        )
    )
    started: list[tuple[Path, Path, str | None]] = []

    class Handle:
        def __init__(self, run_dir: Path) -> None:
            self.run_dir = run_dir

        @classmethod
        def start(cls, run_dir: Path, spec: Path, timeout: float) -> None:
            started.append((run_dir, spec, os.environ.get("DRILL_AMQP_URLS")))

        def state(self) -> dict[str, Any]:
            return {"supervisor_pid": 31, "replicas": [{"service": "intake", "index": 0, "pid": 32}]}

    monkeypatch.setattr(system, "wait_ready", lambda run, timeout, handle: None)
    system.start_system(run, handle=Handle)  # type: ignore[arg-type]
    ((_, spec, amqp),) = started
    assert spec == run.run_dir / rundir.SERVICES and spec.exists() and amqp and "u:p@" in amqp
    assert "DRILL_AMQP_URLS" not in os.environ  # secrets travel only to the supervisor
    assert os.environ["DRILL_SYSTEM_DIR"] == str(run.run_dir)
    assert run.intake_url.startswith("http://127.0.0.1:") and (run.run_dir / rundir.RETAILERS).exists()
    pids = json.loads((run.run_dir / rundir.PIDS).read_text())
    assert pids["supervisor"] == 31 and pids["replicas"] == [32] and run.system_started


# ------------------------------------------------------------------ traffic
def test_the_traffic_spawns_the_simulator_in_its_session_then_watches(run: DrillRun) -> None:
    made(run)
    run.cluster = FakeCluster()
    run.secrets = run.platform_secrets = run.run_dir / "platform.json"
    run.platform_secrets.write_text(
        json.dumps(
            {
                "vhost": "drill",
                "nodes": ["127.0.9.1:5701"],
                "users": {"couriers": {"username": "c", "password": "p"}},
            }
        )
    )
    run.retailers = run.run_dir / "retailers.json"
    run.intake_urls, run.notify_port = ["http://127.0.0.1:8080", "http://127.0.0.1:8081"], 9999
    spawned: list[dict[str, Any]] = []
    watched: list[float] = []

    def popen(argv: list[str], **kw: Any) -> FakeProcess:
        spawned.append({"argv": argv, **kw})
        return FakeProcess(argv)

    traffic.traffic(run, popen=popen, watch=lambda r, t0: watched.append(t0))  # type: ignore[arg-type]
    (call,) = spawned
    argv = call["argv"]
    assert argv[:4] == [sys.executable, "-m", "simulator", "simulate"] and call["start_new_session"]
    assert argv[argv.index("--target") + 1] == "http://127.0.0.1:8080,http://127.0.0.1:8081"
    assert "c:p@" in argv[argv.index("--amqp") + 1] and "--hold-receiver" in argv
    assert json.loads((run.run_dir / rundir.PIDS).read_text())["simulator"] == 424242
    assert watched and run.chaos is None and run.locust is None


def test_the_observers_stop_when_the_simulator_only_holds_its_receiver(run: DrillRun) -> None:
    made(run)
    run.simulator = FakeProcess()  # type: ignore[assignment]
    assert observers.traffic_running(run)
    (run.run_dir / rundir.SIMULATOR_DIR).mkdir()
    (run.run_dir / rundir.RECEIVER_HOLDING).touch()
    assert not observers.traffic_running(run)


# ------------------------------------------------------------------ stop traffic
def test_stopping_the_traffic_halts_the_chaos_and_interrupted_the_simulator(run: DrillRun) -> None:
    made(run)
    run.simulator = FakeProcess()  # type: ignore[assignment]

    class Chaos(threading.Thread):
        result = None
        halted = False

        def run(self) -> None:
            while not self.halted:
                threading.Event().wait(0.01)

        def halt(self) -> None:
            self.halted = True

    run.chaos = Chaos()  # type: ignore[assignment]
    run.chaos.start()
    stop_traffic.stop_traffic_and_chaos(run, interrupted=False)
    assert run.chaos.halted and not run.chaos.is_alive()
    assert run.simulator.signals == [] and not run.simulator_stopped  # type: ignore[attr-defined]
    stop_traffic.stop_traffic_and_chaos(run, interrupted=True)
    assert run.simulator.signals == [signal.SIGINT] and run.simulator_stopped  # type: ignore[attr-defined]


# ------------------------------------------------------------------ heal
def test_heal_keeps_what_it_did_and_what_it_could_not_mend(run: DrillRun) -> None:
    made(run)
    report = HealReport()
    report.did("undid kill_node 2 (f-1)")
    report.failed("node 3 dies at every boot")

    class Injector:
        def heal(self, system_dirs: list[Path]) -> HealReport:
            assert system_dirs == [run.run_dir]
            return report

    run.injector = Injector()  # type: ignore[assignment]
    heal.heal(run)
    assert run.heal_log == list(report) and run.unmended == ["node 3 dies at every boot"]


# ------------------------------------------------------------------ drain
def test_drain_writes_its_result_then_the_receiver_is_released(run: DrillRun) -> None:
    made(run)
    run.cluster = FakeCluster()
    run.simulator = FakeProcess()  # type: ignore[assignment]
    asked: dict[str, Any] = {}

    def drainer(
        urls: list[str], auth: tuple[str, str], outboxes: list[Path], run_dir: Path, **kw: Any
    ) -> DrainResult:
        asked.update(urls=urls, **kw)
        return DrainResult(True, 1.5, 4)

    drain.drain(run, drainer=drainer)
    assert asked["urls"] == ["http://127.0.9.1:15700", "http://127.0.9.2:15700"]
    assert asked["receiver_up"] and asked["only"] == "^drill/" and r"^courier\." in asked["ignore"]
    assert json.loads((run.run_dir / rundir.DRAIN).read_text())["drained"] is True
    drain.release_receiver(run)
    assert run.simulator.signals == [signal.SIGINT] and not run.simulator_stopped  # type: ignore[attr-defined]


# ------------------------------------------------------------------ audit
def test_a_partial_run_says_so_at_the_top_of_its_reports(run: DrillRun) -> None:
    made(run)
    run.phases.append({"phase": "traffic", "status": "interrupted"})
    report = audit.audit(run, interrupted=True, error=None, started=0.0)
    assert report.checks[0].name == "drill[completed]" and report.checks[0].status == "error"
    doc = json.loads((run.run_dir / rundir.REPORT_JSON).read_text())
    assert doc["partial"] is True and doc["drill"]["scenario"] == "t"
    summary = (run.run_dir / rundir.SUMMARY_MD).read_text()
    assert summary.startswith("> **PARTIAL RUN** — interrupted during the traffic phase")
    html = (run.run_dir / rundir.REPORT_HTML).read_text()
    assert "PARTIAL RUN — interrupted during the traffic phase" in html
    assert html.index("PARTIAL RUN") < html.index('<header class="verdict')


def test_a_whole_run_has_no_partial_banner(run: DrillRun) -> None:
    made(run)
    audit.audit(run, interrupted=False, error=None, started=0.0)
    assert json.loads((run.run_dir / rundir.REPORT_JSON).read_text())["partial"] is False
    assert "PARTIAL" not in (run.run_dir / rundir.SUMMARY_MD).read_text()
    assert "PARTIAL RUN" not in (run.run_dir / rundir.REPORT_HTML).read_text()


# ------------------------------------------------------------------ stop
def test_stop_stops_only_what_this_run_started(run: DrillRun) -> None:
    made(run)
    rig = FakeCluster(runs_here=True)
    run.cluster = rig
    th = stop.start_stopping(run, system=lambda r: True)
    stop.finish_stopping(run, th)
    assert rig.calls == [] and run.stopped[0].startswith("system stopped in")  # a reused rig stays up
    run.stopped.clear()
    run.started_cluster = True
    th = stop.start_stopping(run, system=lambda r: False)
    stop.finish_stopping(run, th)
    assert rig.calls == ["stop"] and [s.split(" stopped")[0] for s in run.stopped] == ["cluster"]


def test_stop_system_does_nothing_before_the_system_phase(run: DrillRun) -> None:
    assert stop.stop_system(run) is False


def test_a_real_simulator_process_stops_on_sigint(run: DrillRun) -> None:
    made(run)
    code = "import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: sys.exit(0)); print('up', flush=True); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"up\n"
    run.simulator = p
    stop_traffic.stop_simulator(run)
    assert p.returncode == 0 and run.simulator_stopped
