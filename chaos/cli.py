"""``drill chaos ...``: apply one fault for a while, heal after a crash, read the journal."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

import rundir
from chaos.faults import FAULTS, PROVIDERS, FaultError, unsupported
from chaos.injector import FaultInjector
from chaos.journal import Journal
from rig.cluster import ClusterError, ClusterNotRunning, ClusterSpec, ExternalCluster, LocalCluster
from rig.cluster import state as cluster_state

app = typer.Typer(help="Fault injection against the rig: apply, heal, journal.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)

RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="The rig's run directory.")]
JournalOpt = Annotated[Path | None, typer.Option("--journal", help="Chaos journal (JSON lines).")]
AllowExternal = Annotated[
    bool, typer.Option("--allow-external", help="Allow faults on a cluster we did not start.")
]


def default_journal(run_dir: Path | None) -> Path:
    env = os.environ.get("DRILL_CHAOS_JOURNAL")
    if env:
        return Path(env)
    spec = ClusterSpec(run_dir=run_dir.resolve()) if run_dir else ClusterSpec()
    return spec.run_dir / rundir.JOURNAL


def _injector(run_dir: Path | None, journal: Path | None, allow_external: bool) -> FaultInjector:
    spec = ClusterSpec(run_dir=run_dir.resolve()) if run_dir else ClusterSpec()
    st = cluster_state.load(spec.run_dir)
    cluster = (
        ExternalCluster(st.amqp_urls_external, st.management_urls_external, allow_external)
        if st is not None and st.provider == "external"
        else LocalCluster.attach(spec)
    )
    return FaultInjector(cluster, Journal(journal or default_journal(run_dir)), allow_external)


def _interrupt_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _state_provider(run_dir: Path | None) -> str:
    """The provider of the rig recorded in the run directory; ``local`` when none is recorded (what
    ``_injector`` attaches to then)."""
    spec = ClusterSpec(run_dir=run_dir.resolve()) if run_dir else ClusterSpec()
    st = cluster_state.load(spec.run_dir)
    return st.provider if st is not None else LocalCluster.provider


@app.command("list")
def list_faults() -> None:
    """The fault catalogue, with the cluster providers that can perform each fault."""
    width = len(", ".join(PROVIDERS))
    console.print(f"[bold]{'fault':18} {'providers':{width}}  what it does[/]", highlight=False)
    for kind, cls in sorted(FAULTS.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        providers = ", ".join(p for p in PROVIDERS if p in cls.providers)
        console.print(f"[bold]{kind:18}[/] {providers:{width}}  {doc}", highlight=False)


@app.command("apply")
def apply(
    kind: Annotated[str, typer.Argument(help="A fault kind (see `drill chaos list`).")],
    target: Annotated[
        str, typer.Argument(help="e.g. 2, leader:orders, most-leaders, isolate:3, halves")
    ] = "",
    duration: Annotated[float, typer.Option(help="Seconds to hold the fault before undoing it.")] = 10.0,
    param: Annotated[list[str] | None, typer.Option(help="key=value parameters, e.g. mode=kill")] = None,
    run_dir: RunDirOpt = None,
    journal: JournalOpt = None,
    allow_external: AllowExternal = False,
) -> None:
    """Apply one fault, hold it, undo it. Ctrl-C or SIGTERM undoes it at once."""
    _interrupt_on_sigterm()
    if kind not in FAULTS:
        err.print(f"error: unknown fault kind {kind!r}; known: {', '.join(sorted(FAULTS))}", soft_wrap=True)
        raise typer.Exit(2)
    params: dict[str, object] = {}
    for p in param or []:
        k, sep, v = p.partition("=")
        if not sep:
            err.print(f"error: --param {p!r} is not key=value", soft_wrap=True)
            raise typer.Exit(2)
        params[k] = int(v) if v.lstrip("-").isdigit() else v
    try:
        inj = _injector(run_dir, journal, allow_external)
        fault = FAULTS[kind](target, **params)
    except (FaultError, ClusterError) as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        with inj.applied(fault, planned_s=None if fault.instant else duration) as active:
            console.print(f"applied {active.fault_id} {fault.describe()}: {json.dumps(active.detail)}")
            if not fault.instant:
                deadline = time.monotonic() + duration
                try:
                    while time.monotonic() < deadline:
                        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                except KeyboardInterrupt:
                    console.print("interrupted: undoing now")
        console.print(f"undone {active.fault_id}")
    except KeyboardInterrupt:
        # Interrupted while applying: `applied` has already undone whatever was journaled.
        console.print("interrupted: the fault was undone")
        raise typer.Exit(130) from None
    except (FaultError, ClusterError) as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None


@app.command("run")
def run_experiment(
    file: Annotated[Path, typer.Argument(help="An experiment TOML file (see chaos/experiment.py).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the timeline and exit.")] = False,
    result: Annotated[Path | None, typer.Option(help="Write the result JSON here.")] = None,
    run_dir: RunDirOpt = None,
    journal: JournalOpt = None,
    allow_external: AllowExternal = False,
    provider: Annotated[
        str | None,
        typer.Option(
            help=f"Check the faults against this provider ({' | '.join(PROVIDERS)}); default: the "
            "running rig's (its state file), else local."
        ),
    ] = None,
) -> None:
    """Run an experiment; exit 1 when the steady state deviated or a fault failed, 130 when interrupted.

    A fault the cluster's provider cannot perform (``drill chaos list``) refuses the experiment, dry run
    included, before anything is applied: exit 2.
    """
    from chaos.experiment import ExperimentError, fault_kinds, load, timeline
    from chaos.runner import ExperimentRunner

    try:
        exp = load(file)
    except ExperimentError as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    if provider is not None and provider not in PROVIDERS:
        err.print(f"error: unknown provider {provider!r}; known: {', '.join(PROVIDERS)}", soft_wrap=True)
        raise typer.Exit(2)
    refused = unsupported(fault_kinds(exp), provider or _state_provider(run_dir))
    if refused:
        for line in refused:
            err.print(f"error: {file}: {line}", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(2)
    console.print(f"experiment: {exp.experiment.title} (seed {exp.experiment.seed})")
    for pf in timeline(exp):
        console.print(f"  {pf.describe()}", highlight=False)
    if dry_run:
        return
    _interrupt_on_sigterm()
    try:
        runner = ExperimentRunner(exp, _injector(run_dir, journal, allow_external))
    except (FaultError, ClusterError) as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    res = runner.run()
    for p in res.steady_before:
        console.print(f"before: {'ok ' if p.ok else 'DEVIATED'} {p.probe}: {p.message}", highlight=False)
    for f in res.faults:
        state = f.error or f.skipped or "applied and undone"
        console.print(f"fault {f.index}: {f.kind} {f.target} -> {state}", highlight=False)
    for line in res.rollbacks:
        console.print(f"rollback: {line}", highlight=False)
    for p in res.steady_after:
        console.print(f"after:  {'ok ' if p.ok else 'DEVIATED'} {p.probe}: {p.message}", highlight=False)
    if res.recovery_seconds is not None:
        console.print(f"steady state back {res.recovery_seconds:.1f} s after the rollbacks")
    if result:
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps(res.to_json(), indent=2, default=str))
    verdict = "interrupted" if res.interrupted else ("DEVIATED" if res.deviated else "steady state held")
    console.print(f"experiment {verdict}: {res.status}")
    raise typer.Exit(130 if res.interrupted else (1 if res.deviated else 0))


RunOpt = Annotated[
    Path | None,
    typer.Option(
        "--run",
        help="A drill run directory (.drill/runs/<UTC>-<name>) whose runner died; default: every such run.",
    ),
]


@app.command("heal")
def heal(
    run_dir: RunDirOpt = None,
    journal: JournalOpt = None,
    allow_external: AllowExternal = False,
    run: RunOpt = None,
) -> None:
    """Undo whatever a crashed run left: open faults in the journal, iptables rules, paused nodes, alarms.

    With no option it also finds the drill runs whose runner died (runner PID gone, no verdict in
    drill.json): their traffic is stopped and their own journals healed, service faults included.
    Exit 1 when something could not be mended (named on stderr), 2 on a usage or rig error.
    """
    from chaos.crashed import heal_crashed_run
    from chaos.injector import HealReport
    from rig.crashed import RunError, find_runs_to_clean, stop_traffic

    explicit = run_dir is not None or journal is not None or bool(os.environ.get("DRILL_CHAOS_JOURNAL"))
    report = HealReport()
    try:
        runs = find_runs_to_clean(run, explicit=explicit)
    except RunError as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    for r in runs:
        console.print(r.describe(), highlight=False, soft_wrap=True)
        # Its traffic first: nothing will audit it, and heal then works on a quiet platform.
        traffic = stop_traffic(r)
        for line in traffic.done:
            report.did(line)
        for line in traffic.failed:
            report.failed(line)
        try:
            report.merge(heal_crashed_run(r))
        except Exception as exc:  # one run's broken state must not keep the others unhealed
            report.failed(f"{r.run_dir}: {type(exc).__name__}: {exc}")
    if run is None:
        try:
            inj = _injector(run_dir, journal, allow_external)
        except ClusterNotRunning as exc:
            if explicit:
                err.print(f"error: {exc}", soft_wrap=True)
                raise typer.Exit(2) from None
            inj = None  # no rig of its own here: the crashed runs were all there was to heal
        except (FaultError, ClusterError) as exc:
            err.print(f"error: {exc}", soft_wrap=True)
            raise typer.Exit(2) from None
        if inj is not None:
            report.merge(inj.heal())
    for line in report or ["nothing to heal"]:
        console.print(line, highlight=False, soft_wrap=True)
    if not report.ok:
        err.print(f"could not mend {len(report.unmended)} thing(s):", soft_wrap=True)
        for line in report.unmended:
            err.print(f"  {line}", soft_wrap=True, highlight=False)
        raise typer.Exit(1)


@app.command("hunt")
def hunt_command(
    examples: Annotated[
        int, typer.Option(help="Schedules to try before giving up (shrinking runs more).")
    ] = 5,
    max_steps: Annotated[int, typer.Option(help="Most faults in one schedule.")] = 3,
    count: Annotated[int, typer.Option(help="Messages per workload run.")] = 3000,
    out: Annotated[Path | None, typer.Option(help="Write the minimal failing experiment here.")] = None,
    replay: Annotated[
        Path | None, typer.Option(help="Run this experiment file once against the workload instead.")
    ] = None,
    broken: Annotated[
        bool, typer.Option(help="TEST ONLY: a consumer that acks before it writes (the hunt must catch it).")
    ] = False,
    work_dir: Annotated[Path | None, typer.Option(help="Where workload runs keep their files.")] = None,
    run_dir: RunDirOpt = None,
    journal: JournalOpt = None,
) -> None:
    """Property-based chaos: random fault schedules against a live messaging workload; a loss is shrunk
    to a minimal schedule and printed as an experiment file. Exit 1 when one was found."""
    import tempfile

    from chaos.experiment import ExperimentError, load
    from chaos.hunt import (
        MESSAGING_KINDS,
        HuntRun,
        Step,
        hunt,
        live_runner,
        missing_requirement,
        run_schedule,
    )
    from chaos.workloads import MessagingWorkload

    missing = missing_requirement()
    if missing is not None:
        err.print(f"error: {missing}", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(2)
    _interrupt_on_sigterm()
    try:
        inj = _injector(run_dir, journal, False)
    except (FaultError, ClusterError) as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    assert inj.cluster is not None
    cluster = inj.cluster
    base = work_dir or Path(tempfile.mkdtemp(prefix="drill-hunt-"))
    n = iter(range(1_000_000))

    def workload() -> MessagingWorkload:
        return MessagingWorkload(cluster, base / f"run-{next(n):03d}", count=count, broken=broken)

    def show(run: HuntRun) -> None:
        faults = ", ".join(f"{s.kind} {s.target}@{s.at}s/{s.duration}s" for s in run.steps)
        console.print(
            f"{'VALID  ' if run.verdict.valid else 'INVALID'} [{faults}] {run.verdict.line()}",
            highlight=False,
        )

    if replay is not None:
        try:
            exp = load(replay)
        except ExperimentError as exc:
            err.print(f"error: {exc}", soft_wrap=True)
            raise typer.Exit(2) from None
        steps = [Step(int(m.at or 0), m.fault, m.target, int(m.duration)) for m in exp.method]
        run = run_schedule(steps, workload(), inj)
        show(run)
        raise typer.Exit(0 if run.verdict.valid else 1)
    console.print(
        f"hunting: {examples} schedule(s) of up to {max_steps} faults from {sorted(MESSAGING_KINDS)}"
    )
    result = hunt(
        live_runner(workload, inj), MESSAGING_KINDS, max_examples=examples, max_steps=max_steps, on_run=show
    )
    if result.experiment is None:
        console.print(f"no schedule broke the audit in {len(result.runs)} run(s)")
        return
    console.print("minimal failing schedule:")
    print(result.experiment)
    if out is not None:
        out.write_text(result.experiment)
        console.print(f"written to {out}")
    raise typer.Exit(1)


links_app = typer.Typer(help="Toxiproxy proxies in front of each broker node (client <-> broker links).")
app.add_typer(links_app, name="links")


@links_app.command("up")
def links_up(
    run_dir: RunDirOpt = None,
    api_url: Annotated[
        str | None, typer.Option(help="Use this Toxiproxy API (a real toxiproxy-server).")
    ] = None,
) -> None:
    """One proxy per node; prints the AMQP URLs services should use for link faults."""
    from chaos.links import LinkProxies

    spec = ClusterSpec(run_dir=run_dir.resolve()) if run_dir else ClusterSpec()
    try:
        links = LinkProxies.start(LocalCluster.attach(spec), api_url)
    except (ClusterError, RuntimeError) as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(json.dumps(links.describe()))


@links_app.command("down")
def links_down(run_dir: RunDirOpt = None) -> None:
    """Remove the proxies and stop the proxy server the drill started."""
    from chaos.links import LinkProxies

    spec = ClusterSpec(run_dir=run_dir.resolve()) if run_dir else ClusterSpec()
    links = LinkProxies.attach(spec.run_dir)
    if links is None:
        console.print("no link proxies run")
        return
    links.stop()
    console.print("link proxies stopped")


@app.command("journal")
def show_journal(run_dir: RunDirOpt = None, journal: JournalOpt = None) -> None:
    """Print the journal and the faults still open."""
    j = Journal(journal or default_journal(run_dir))
    for r in j.records():
        print(json.dumps(r))
    open_ = j.open_faults()
    console.print(
        f"{len(open_)} open fault(s)" + (": " + ", ".join(f.fault_id for f in open_) if open_ else "")
    )
