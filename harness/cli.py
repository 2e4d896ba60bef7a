"""``./drill``: the command line of the project.

``./drill demo`` runs the default drill; ``./drill test`` the whole suite; ``./drill cluster ...`` drives
the broker rig. Sub-apps of the other packages are mounted here (each package owns its ``cli.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from chaos.cli import app as chaos_app
from chaos.links import LinkProxies
from chaos.toxiproxy.cli import app as proxy_app
from chaos.toxiproxy.cli import bench_command as bench_proxy_command
from harness.audit_cli import audit as drill_audit
from harness.drill import cli as drill_cli
from harness.system_cli import app as system_app
from loadtests.cli import app as load_app
from reports.cli import bench as bench_audit_command
from reports.cli import compare as reports_compare
from reports.cli import report as reports_report
from rig import procs
from rig.cluster import (
    Cluster,
    ClusterError,
    ClusterNotRunning,
    ClusterSpec,
    ExternalCluster,
    LocalCluster,
    ProviderUnavailable,
    broker_urls,
    docker_available,
)
from rig.cluster import state as cluster_state
from simulator.cli import bench_command as bench_simulator_command
from simulator.cli import plan as simulator_plan
from simulator.cli import simulate as simulator_simulate
from system.messaging.cli import parked_app, topology_cmd

ROOT = Path(os.environ.get("DRILL_ROOT", Path(__file__).resolve().parent.parent))

app = typer.Typer(
    help="Chaos drills for a RabbitMQ delivery platform: `./drill demo` runs one, `./drill test` tests all.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cluster_app = typer.Typer(
    help="The broker rig: a real RabbitMQ cluster of local processes.", no_args_is_help=True
)
bench_app = typer.Typer(
    help="Benchmarks that print ratios measured side by side in one run.", no_args_is_help=True
)

# Rich falls back to 80 columns when piped (CI logs): wide enough for the status table instead.
_WIDTH = None if sys.stdout.isatty() else 150
console = Console(stderr=False, width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)

RunDirOpt = Annotated[
    Path | None, typer.Option("--run-dir", help="Where the cluster keeps its state, data and logs.")
]
PortBaseOpt = Annotated[int | None, typer.Option("--port-base", help="Node N listens on PORT_BASE+N (AMQP).")]


def _spec(
    run_dir: Path | None = None,
    port_base: int | None = None,
    nodes: int | None = None,
    broker: str | None = None,
) -> ClusterSpec:
    over: dict[str, object] = {}
    if broker is not None:
        over["broker"] = broker
    if run_dir is not None:
        over["run_dir"] = run_dir.resolve()
    if port_base is not None:
        over["port_base"] = port_base
    if nodes is not None:
        over["nodes"] = nodes
    return ClusterSpec(**over)  # type: ignore[arg-type]


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    # soft_wrap: one line a user can grep and copy, never folded by the terminal width
    err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _raise_on_sigterm() -> None:
    """SIGTERM behaves like Ctrl-C, so interrupted start-ups tear down what they started."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def open_cluster(run_dir: Path | None = None, allow_external: bool = False) -> Cluster:
    """The cluster recorded in the run directory, whichever provider started it."""
    spec = _spec(run_dir)
    st = cluster_state.load(spec.run_dir)
    if st is not None and st.provider == "external":
        return ExternalCluster(st.amqp_urls_external, st.management_urls_external, allow_external)
    return LocalCluster.attach(spec)


# ---------------------------------------------------------------------------------------- cluster
@cluster_app.command("up")
def cluster_up(
    nodes: Annotated[int, typer.Option(help="How many nodes.")] = 3,
    run_dir: RunDirOpt = None,
    port_base: PortBaseOpt = None,
    provider: Annotated[str, typer.Option(help="local | external | testcontainers")] = "local",
    amqp_url: Annotated[list[str] | None, typer.Option(help="external: one per node.")] = None,
    management_url: Annotated[list[str] | None, typer.Option(help="external: one per node.")] = None,
    broker: drill_cli.BrokerOpt = None,
) -> None:
    """Start a cluster and wait until every node is healthy and clustered."""
    _raise_on_sigterm()
    try:
        spec = _spec(run_dir, port_base, nodes, broker)
    except ValidationError as exc:
        raise _fail(
            ClusterError(f"--broker: {exc.errors()[0]['msg'].removeprefix('Value error, ')}")
        ) from None
    try:
        if provider == "external":
            ext = ExternalCluster(list(amqp_url or []), list(management_url or []))
            ext.start()
            cluster_state.save(
                spec.run_dir,
                cluster_state.ClusterState(
                    provider="external",
                    run_dir=str(spec.run_dir),
                    cluster_name="external",
                    admin_user=ext.admin[0],
                    admin_password=ext.admin[1],
                    amqp_urls_external=ext.amqp_urls,
                    management_urls_external=list(management_url or []),
                ),
            )
            console.print(f"recorded external cluster ({len(ext.amqp_urls)} AMQP URLs) in {spec.run_dir}")
            return
        if provider == "testcontainers":
            ok, why = docker_available()
            raise ProviderUnavailable(
                f"testcontainers: {why}"
                if not ok
                else "the testcontainers provider runs inside pytest sessions (DRILL_TEST_PROVIDER=testcontainers); "
                "the CLI drives local and external clusters"
            )
        if provider != "local":
            raise ClusterError(f"unknown provider {provider!r}: use local, external or testcontainers")
        console.print(
            f"starting {spec.nodes} RabbitMQ node(s) on 127.0.{spec.address_block}.1-{spec.nodes}, "
            f"AMQP ports {spec.port_base + 1}-{spec.port_base + spec.nodes}, broker {spec.broker}, "
            f"run dir {spec.run_dir} ..."
        )
        t0 = time.monotonic()
        cluster = LocalCluster(spec)
        cluster.start()
    except KeyboardInterrupt:
        err.print("interrupted: everything started was stopped")
        raise typer.Exit(130) from None
    except ClusterError as exc:
        raise _fail(exc) from None
    console.print(f"[green]cluster up[/] in {time.monotonic() - t0:.1f} s")
    _print_status(cluster)


def _print_status(cluster: Cluster) -> None:
    table = Table(title=f"{cluster.provider} cluster")
    for col in (
        "node",
        "name",
        "state",
        "version",
        "VM pid",
        "amqp",
        "management",
        "alarms",
        "quorum leaders",
    ):
        table.add_column(col)
    colours = {"up": "green", "down": "red", "paused": "yellow"}
    for s in cluster.status():
        alarms = ",".join(a for a, on in (("memory", s.mem_alarm), ("disk", s.disk_free_alarm)) if on) or "-"
        if s.partitions:
            alarms += f" partitioned from {','.join(s.partitions)}"
        leaders = f"{len(s.leaders)}" + (
            f" ({', '.join(s.leaders[:3])}{'…' if len(s.leaders) > 3 else ''})" if s.leaders else ""
        )
        table.add_row(
            str(s.index),
            s.name,
            f"[{colours.get(s.state, 'white')}]{s.state}[/]",
            s.version or "-",
            str(s.pid or "-"),
            s.amqp_url.removeprefix("amqp://").rstrip("/"),
            s.management_url.removeprefix("http://"),
            alarms,
            leaders,
        )
    console.print(table)
    console.print(f"broker: {_broker_line(cluster)}", highlight=False, soft_wrap=True)


def _broker_line(cluster: Cluster) -> str:
    """``RabbitMQ 4.0.5 (broker 4.0, Debian trixie root .drill/brokers/trixie)``: what the nodes report,
    and for a local rig the setting it was started with."""
    reported = cluster.broker_version()
    text = f"RabbitMQ {reported}" if reported else "version unknown (no node answered)"
    if isinstance(cluster, LocalCluster):
        st = cluster.state
        where = f"Debian root {st.broker_root}" if st.broker_root else "the host's package"
        text += f" (broker {st.broker}, from {where})"
    return text


@cluster_app.command("status")
def cluster_status(
    run_dir: RunDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Each node up/down/paused, its alarms and the quorum-queue leaders it holds."""
    try:
        cluster = open_cluster(run_dir)
        if as_json:
            print(json.dumps([s.__dict__ for s in cluster.status()], indent=2))
        else:
            _print_status(cluster)
    except ClusterError as exc:
        raise _fail(exc) from None


@cluster_app.command("down")
def cluster_down(
    run_dir: RunDirOpt = None,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run",
            help="A drill run directory whose runner died: stop its traffic, system, proxies, cluster.",
        ),
    ] = None,
) -> None:
    """Stop every process the run started (PIDs from its state file), epmd included.

    With no option it also stops what drill runs whose runner died left running — their traffic, their
    system, their link proxies and the cluster they started (only PIDs verified to be the run's) — and
    removes the iptables chain a partition left on the rig's addresses.
    """
    from chaos.crashed import remove_partition_chain, stop_links
    from rig.crashed import (
        CrashedRun,
        Outcome,
        RunError,
        clean_runs,
        find_runs_to_clean,
        stop_cluster,
        stop_system,
        stop_traffic,
    )

    try:
        runs = find_runs_to_clean(run, explicit=run_dir is not None)
    except RunError as exc:
        raise _fail(exc) from None

    def steps(r: CrashedRun) -> list[Callable[[], Outcome]]:
        # The order a runner stops in: traffic, services, then the proxies and the brokers they used.
        return [
            lambda: stop_traffic(r),
            lambda: stop_system(r),
            lambda: stop_links(r),
            lambda: stop_cluster(r, remove_partition_chain),
        ]

    failed = clean_runs(runs, steps, lambda line: console.print(line, highlight=False, soft_wrap=True))
    if run is not None:
        if failed:
            raise _fail(ClusterError("; ".join(failed)))
        return
    try:
        cluster = open_cluster(run_dir)
        t0 = time.monotonic()
        if isinstance(cluster, ExternalCluster):
            cluster.stop()
            cluster_state.remove(_spec(run_dir).run_dir)
            console.print("forgot the external cluster (it was not ours to stop)")
        elif isinstance(cluster, LocalCluster):
            links = LinkProxies.attach(cluster.spec.run_dir)
            if links is not None:
                links.stop()
                console.print("stopped the link proxies")
            nodes = cluster.state.nodes
            block, host = cluster.spec.address_block, (nodes[0].host if nodes else None)
            cluster.stop()
            # A partition's chain is kernel state: it outlives the nodes it cut.
            for line in remove_partition_chain(block, host):
                console.print(line, highlight=False)
            console.print(f"cluster down in {time.monotonic() - t0:.1f} s; no process of the run is left")
    except ClusterNotRunning as exc:
        if run_dir is not None or not runs:
            raise _fail(exc) from None
    except ClusterError as exc:
        raise _fail(exc) from None
    if failed:
        raise _fail(ClusterError("; ".join(failed)))


def _node_action(action: str, node: int, run_dir: Path | None, allow_external: bool) -> None:
    try:
        cluster = open_cluster(run_dir, allow_external)
        t0 = time.monotonic()
        getattr(cluster, action)(node)
    except ClusterError as exc:
        raise _fail(exc) from None
    console.print(f"node {node}: {action} done in {time.monotonic() - t0:.1f} s")


AllowExternal = Annotated[bool, typer.Option("--allow-external", help="Act on a cluster we did not start.")]


@cluster_app.command("kill")
def cluster_kill(node: int, run_dir: RunDirOpt = None, allow_external: AllowExternal = False) -> None:
    """SIGKILL the node's Erlang VM (a crash)."""
    _node_action("kill", node, run_dir, allow_external)


@cluster_app.command("stop")
def cluster_stop(node: int, run_dir: RunDirOpt = None, allow_external: AllowExternal = False) -> None:
    """Gracefully stop one node."""
    _node_action("stop_node", node, run_dir, allow_external)


@cluster_app.command("restart")
def cluster_restart(node: int, run_dir: RunDirOpt = None, allow_external: AllowExternal = False) -> None:
    """Start the node again (stopping it first if it runs) and wait until it rejoined the cluster."""
    _node_action("restart", node, run_dir, allow_external)


@cluster_app.command("pause")
def cluster_pause(node: int, run_dir: RunDirOpt = None, allow_external: AllowExternal = False) -> None:
    """Freeze the node's VM with SIGSTOP."""
    _node_action("pause", node, run_dir, allow_external)


@cluster_app.command("resume")
def cluster_resume(node: int, run_dir: RunDirOpt = None, allow_external: AllowExternal = False) -> None:
    """Thaw a paused node with SIGCONT."""
    _node_action("resume", node, run_dir, allow_external)


# ---------------------------------------------------------------------------------------- test
def _junit_totals(paths: list[Path]) -> tuple[int, int, int]:
    passed = failed = skipped = 0
    for p in paths:
        if not p.exists():
            continue
        root = ET.parse(p).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        for s in suites:
            total = int(s.get("tests", 0))
            f = int(s.get("failures", 0)) + int(s.get("errors", 0))
            sk = int(s.get("skipped", 0))
            passed += total - f - sk
            failed += f
            skipped += sk
    return passed, failed, skipped


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def test(ctx: typer.Context) -> None:
    """Run the whole suite through tox (unit, integration, lint). `./drill test -- ARGS` passes ARGS to pytest."""
    args = list(ctx.args)
    if args and args[0] == "--":
        args = args[1:]
    tox = [str(Path(sys.executable).parent / "tox"), "-c", str(ROOT / "tox.ini")]
    junit_dir = ROOT / ".tox"
    envs = ["pytest"] if args else ["unit", "integration", "lint"]
    for e in envs:
        (junit_dir / f"junit-{e}.xml").unlink(missing_ok=True)
    cmd = [*tox, "-e", ",".join(envs)]
    if args:
        cmd += ["--", *args]
    console.print(f"running: {' '.join(cmd)}")
    rc = subprocess.call(cmd, cwd=ROOT)
    passed, failed, skipped = _junit_totals([junit_dir / f"junit-{e}.xml" for e in envs])
    verdict = "tests passed" if rc == 0 else "tests FAILED"
    # The plain closing line CI reads.
    print(f"{verdict}: {passed} passed, {failed} failed, {skipped} skipped")
    raise typer.Exit(rc)


# ---------------------------------------------------------------------------------------- benches
@bench_app.command("messaging")
def bench_messaging(
    count: Annotated[int, typer.Option(help="Messages per side.")] = 10_000,
    size: Annotated[int, typer.Option(help="Body size in bytes.")] = 512,
    run_dir: RunDirOpt = None,
) -> None:
    """Msgs/s of our publisher+consumer (outbox and inbox included) vs raw aio-pika; ratio last.

    Brokers: DRILL_MSG_AMQP_URLS when set, else the running rig (`./drill cluster up`).
    """
    import aiormq

    from system.messaging.bench import run_bench
    from system.messaging.settings import MessagingSettings

    try:
        found = broker_urls(run_dir)
    except ClusterError as exc:
        raise _fail(exc) from None
    console.print(f"brokers: {found.source} ({len(found.urls)} node(s))", highlight=False)
    try:
        run_bench(count=count, size=size, settings=MessagingSettings(amqp_urls=found.urls))
    except (OSError, aiormq.exceptions.AMQPConnectionError) as exc:
        # A rig whose state file outlived its brokers, or a wrong URL: one line, not a traceback.
        raise _fail(RuntimeError(f"cannot reach the brokers of {found.source}: {exc}"), 1) from None


@bench_app.command("proxy")
def bench_proxy(
    rounds: Annotated[int, typer.Option(help="Ping-pong round trips per path.")] = 5000,
    message_size: Annotated[int, typer.Option(help="Bytes per ping-pong message.")] = 64,
    stream_mb: Annotated[int, typer.Option(help="MB streamed per throughput run.")] = 200,
    repeats: Annotated[int, typer.Option(help="Interleaved runs per path.")] = 3,
    mode: Annotated[str, typer.Option(help="Where the proxy runs: subprocess | thread.")] = "subprocess",
    api_url: Annotated[str | None, typer.Option(help="Use this running Toxiproxy API.")] = None,
    amqp_url: Annotated[
        str | None,
        typer.Option(
            help="Also measure AMQP publish msgs/s through this broker (default: DRILL_MSG_AMQP_URLS's "
            "first, else the running rig's first node; none: not measured)."
        ),
    ] = None,
    amqp_messages: Annotated[int, typer.Option(help="Messages per AMQP run.")] = 5000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON first.")] = False,
    run_dir: RunDirOpt = None,
) -> None:
    """Proxy pass-through overhead vs a direct connection; last line: the throughput ratio.

    The AMQP publish figure uses the running rig, as `bench messaging` does; without one the TCP
    figures are still measured, and stderr says how to add the AMQP one.
    """
    if amqp_url is None:
        try:
            amqp_url = broker_urls(run_dir).urls[0]
        except ClusterError as exc:
            err.print(f"AMQP publish not measured: {exc}", highlight=False, soft_wrap=True, markup=False)
    bench_proxy_command(
        rounds=rounds,
        message_size=message_size,
        stream_mb=stream_mb,
        repeats=repeats,
        mode=mode,
        api_url=api_url,
        amqp_url=amqp_url,
        amqp_messages=amqp_messages,
        as_json=as_json,
    )


# ---------------------------------------------------------------------------------------- demo
@app.command()
def demo(
    dry_run: drill_cli.DryRunOpt = False,
    cluster_dir: drill_cli.ClusterDirOpt = None,
    vhost: drill_cli.VhostOpt = None,
    runs_dir: drill_cli.RunsDirOpt = None,
    broker: drill_cli.BrokerOpt = None,
) -> None:
    """The default drill (= `run demo`, about 3 minutes): the platform under traffic through a link fault,
    consumer kills, a memory alarm, a leader kill and a full outage; audit, HTML report, verdict."""
    drill_cli.execute(
        str(ROOT / "scenarios" / "demo.toml"),
        dry_run=dry_run,
        cluster_dir=cluster_dir,
        vhost=vhost,
        runs_dir=runs_dir,
        broker=broker,
    )


# ---------------------------------------------------------------------------------------- mounts
# After the built-in commands, so `./drill` lists demo and test first. Each package owns its commands.
app.command("run")(drill_cli.run)
app.command("simulate")(simulator_simulate)
app.command(
    "plan", help="Print a traffic scenario's deterministic plan (orders, courier answers) and its digest."
)(simulator_plan)
app.add_typer(cluster_app, name="cluster")
app.add_typer(bench_app, name="bench")
app.add_typer(chaos_app, name="chaos")
app.add_typer(system_app, name="system")
app.add_typer(load_app, name="load")
app.command("topology")(topology_cmd)
app.add_typer(parked_app, name="parked")
chaos_app.add_typer(proxy_app, name="proxy")
bench_app.command("platform")(drill_cli.bench_platform)
bench_app.command("simulator")(bench_simulator_command)
bench_app.command("audit")(bench_audit_command)
app.command("report", help="Rebuild every report file (report.html included) of a run from its raw data.")(
    reports_report
)
app.command(
    "compare",
    help="What changed between two runs' report.json (verdict, loss, availability, latency); exit 1 when the"
    " later run regressed (PASS → FAIL, more lost or abandoned, an SLO check failed, a p99 or failover"
    " worse than --tolerance), 3 when either run is INCONCLUSIVE, 2 on a usage error.",
)(reports_compare)
app.command(
    "audit",
    help="Audit a run directory: report.json, junit.xml, summary.md; exit 0 only if every check passed.",
)(drill_audit)


def main() -> None:
    """The ``drill`` command."""
    procs.stoppable_by_sigint()
    app(prog_name="drill")
