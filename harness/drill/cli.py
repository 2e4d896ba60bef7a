"""``drill run SCENARIO`` (mounted by harness/cli.py; ``drill demo`` calls :func:`execute` with the demo).

Only typer and rich are imported here: the runner, the chaos engine and the reports load inside the
command, so ``./drill --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)

DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan (phases, chaos timeline, durations) and exit.")
]
ClusterDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cluster-dir",
        help="The local rig's directory: a rig running there is reused, else one is started there "
        "(default .drill/cluster).",
    ),
]
VhostOpt = Annotated[
    str | None, typer.Option("--vhost", help="The platform's vhost (default: the scenario's).")
]
RunsDirOpt = Annotated[
    Path | None, typer.Option("--runs-dir", help="Where run directories go (default .drill/runs).")
]
BrokerOpt = Annotated[
    str | None,
    typer.Option(
        "--broker",
        help="Which RabbitMQ the local rig runs: system (the host's package), 3.10 or 4.0 (a version the "
        "host lacks runs from a Debian root built once under .drill/brokers/). Default: the scenario's.",
    ),
]
AllowExternalOpt = Annotated[
    bool, typer.Option("--allow-external", help="Allow chaos on a cluster the drill did not start.")
]


def execute(
    scenario: str,
    *,
    dry_run: bool = False,
    cluster_dir: Path | None = None,
    vhost: str | None = None,
    runs_dir: Path | None = None,
    allow_external: bool = False,
    broker: str | None = None,
) -> None:
    """Load the scenario; print its plan (``dry_run``) or run it and exit with the run's exit code."""
    from pydantic import ValidationError

    from harness.drill.plan import plan_lines
    from harness.drill.runner import DEFAULT_RUNS_DIR, DrillRunner, describe_cluster
    from harness.drill.scenario import DrillScenarioError, load, with_broker

    try:
        sc = with_broker(load(scenario), broker)
    except ValidationError as exc:
        err.print(
            f"[bold red]error:[/] --broker: {exc.errors()[0]['msg'].removeprefix('Value error, ')}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    except DrillScenarioError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    runs = (runs_dir or DEFAULT_RUNS_DIR).resolve()
    cdir = cluster_dir.resolve() if cluster_dir is not None else None
    if dry_run:
        text, starts = describe_cluster(sc, cdir)
        for line in plan_lines(
            sc, cluster=text, run_dir=f"{runs}/<UTC timestamp>-{sc.name}", starts_cluster=starts
        ):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
        return
    runner = DrillRunner(
        sc, runs_dir=runs, cluster_dir=cdir, vhost=vhost, allow_external=allow_external, console=console
    )
    raise typer.Exit(runner.run())


def run(
    scenario: Annotated[
        str,
        typer.Argument(
            help="A drill scenario: a name in scenarios/ (demo, kill-leader, monkey, ...) or a path."
        ),
    ],
    dry_run: DryRunOpt = False,
    cluster_dir: ClusterDirOpt = None,
    vhost: VhostOpt = None,
    runs_dir: RunsDirOpt = None,
    allow_external: AllowExternalOpt = False,
    broker: BrokerOpt = None,
) -> None:
    """Run a drill: cluster, services, traffic, chaos, drain, audit, reports; exit with the verdict.

    The run directory (.drill/runs/<UTC timestamp>-<name>/) gets report.json, junit.xml, summary.md and
    report.html. Ctrl-C: traffic and chaos stopped, the rig healed, a partial report, exit 130.
    """
    execute(
        scenario,
        dry_run=dry_run,
        cluster_dir=cluster_dir,
        vhost=vhost,
        runs_dir=runs_dir,
        allow_external=allow_external,
        broker=broker,
    )


def bench_platform(
    rates: Annotated[
        str, typer.Option(help="Offered orders/s per step, comma separated, rising.")
    ] = "5,10,20,30,40",
    step: Annotated[
        float,
        typer.Option(help="Seconds of traffic per step (short steps are absorbed by queues: 60 s at least)."),
    ] = 60.0,
    idle: Annotated[
        float,
        typer.Option(
            help="Seconds of no traffic, once the system is up, over which the idle cost is measured "
            "(0: skip it)."
        ),
    ] = 15.0,
    cluster_dir: ClusterDirOpt = None,
) -> None:
    """The highest orders/s the platform sustains (nothing lost or abandoned, as the audit judges), its
    cost (msgs/s per order, CPU-seconds per order per role, the idle cost with no traffic), the brokers'
    raw ceiling measured in the same run, and the ratio of messages moved to that ceiling (last line).
    Steps climb until one is not sustained or intake sheds; each lasts its traffic, up to 90 s more for
    the deliveries under way, and the platform's drain. The run dir (.drill/bench/<UTC time>/) gets
    bench.json (every figure, machine readable) and resources.jsonl (CPU per role, once a second)."""
    import time

    import rundir
    from harness.drill.bench import report_lines, run_bench
    from rig.cluster import ClusterSpec, LocalCluster

    spec = ClusterSpec(run_dir=cluster_dir.resolve()) if cluster_dir else ClusterSpec()
    cluster = LocalCluster(spec)
    started = False
    if not cluster.is_running():
        console.print("starting a 3-node cluster")
        cluster.start()
        started = True
    run_dir = Path(".drill") / "bench" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        result = run_bench(
            cluster,
            run_dir.resolve(),
            [float(r) for r in rates.split(",")],
            step,
            console.print,
            idle_s=idle,
        )
    finally:
        if started:
            cluster.stop()
    console.print(f"run dir: {run_dir} ({run_dir / rundir.BENCH})", highlight=False)
    lines = report_lines(result)
    for line in lines[:-1]:
        console.print(line, highlight=False, markup=False)
    print(lines[-1])
