"""Commands of the reports package (mounted by ``harness/cli.py``): ``audit``, ``report``, ``compare``,
``bench``.

``audit RUN_DIR`` reads what the run left (simulator ledger, op files, configured databases, chaos
journal, queue samples, ``slo.toml``), writes ``report.json``, ``junit.xml`` and ``summary.md`` (and
``report.html`` with ``--html``), prints one ``VERDICT:`` line and exits 0 only when every check passed —
no loss, nothing unexpected, no duplicated effect, and every objective held: the contract CI gates on.

``report RUN_DIR`` rebuilds every report file, report.html included, from the run's raw data and prints
the plain-words verdict; it exits 0 once the files are written (``--check`` makes it exit like
``audit``). ``compare RUN_A RUN_B`` prints what changed between two runs' report.json and gates on a regression
of B against A: exit 1 when B regressed, 3 when either run is INCONCLUSIVE, 2 on a usage error, else 0.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

import rundir

if TYPE_CHECKING:
    from reports.audit import AuditConfig, AuditReport
    from reports.slo import SloConfig

# The audit engine (numpy, matplotlib) is imported inside the commands: the drill CLI that mounts
# them must answer --help fast.

app = typer.Typer(help="Loss audit and reports.", no_args_is_help=True)

#: Exit code for "the audit itself could not run" (bad configuration), distinct from "checks failed" (1).
EXIT_USAGE = 2


RunDirArg = Annotated[Path, typer.Argument(help="The run directory.", file_okay=False)]
OutOpt = Annotated[Path | None, typer.Option(help="Where to write the reports (default RUN_DIR/audit).")]
StrictOpt = Annotated[bool, typer.Option(help="Treat a skipped check (no evidence) as a failure.")]
HtmlOpt = Annotated[bool, typer.Option(help="Also write report.html (plots; slower).")]


def _load(run_dir: Path, strict: bool) -> tuple[AuditConfig, SloConfig]:
    """The run's configuration, or a usage error (exit 2) naming the bad file."""
    from reports.audit import load_config
    from reports.slo import SLO_FILE, load_slo

    if not run_dir.is_dir():
        typer.echo(f"error: {run_dir} is not a directory", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        config = load_config(run_dir)
    except (ValueError, KeyError, TypeError) as exc:
        typer.echo(f"error: bad {run_dir / 'audit.json'}: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    try:
        slo = load_slo(run_dir)
    except ValueError as exc:
        typer.echo(f"error: bad {run_dir / SLO_FILE}: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    if strict:
        config = dataclasses.replace(config, strict=True)
    return config, slo


def _print_checks(report: AuditReport) -> None:
    for check in report.checks:
        if check.status != "passed":
            status = "HARNESS" if check.status == "error" else check.status.upper()
            typer.echo(f"  {status:7} {check.name}: {check.message}")


@app.command()
def audit(
    run_dir: RunDirArg,
    out: OutOpt = None,
    strict: StrictOpt = False,
    html: HtmlOpt = False,
) -> None:
    """Audit RUN_DIR: write report.json, junit.xml, summary.md; exit 0 only if every check passed.

    Offline: the run directory only. ``drill audit --drain`` first waits for the brokers' queues and the
    outboxes to empty (that needs the rig: ``harness.audit_cli``)."""
    from reports.audit import audit_run
    from reports.writers import write_all

    config, slo = _load(run_dir, strict)
    report = audit_run(run_dir, config, slo)
    paths = write_all(report, out if out is not None else run_dir / rundir.AUDIT_DIR, html=html)
    _print_checks(report)
    typer.echo(f"reports: {', '.join(str(p) for p in paths)}")
    typer.echo(report.verdict_line())
    raise typer.Exit(report.exit_code)


@app.command()
def report(
    run_dir: RunDirArg,
    out: OutOpt = None,
    strict: StrictOpt = False,
    check: Annotated[bool, typer.Option(help="Exit like `audit` (1 when a check failed).")] = False,
) -> None:
    """Rebuild every report file of RUN_DIR from its raw data, report.html included; print the verdict.

    Writes report.json, junit.xml, summary.md and report.html; exits 0 once they are written
    (``--check``: exit like ``audit``).
    """
    from reports.audit import audit_run
    from reports.story import headline
    from reports.writers import write_all

    config, slo = _load(run_dir, strict)
    result = audit_run(run_dir, config, slo)
    paths = write_all(result, out if out is not None else run_dir / rundir.AUDIT_DIR, html=True)
    for sentence in headline(result):
        typer.echo(sentence)
    _print_checks(result)
    typer.echo(f"reports: {', '.join(str(p) for p in paths)}")
    typer.echo(result.verdict_line())
    raise typer.Exit(result.exit_code if check else 0)


@app.command()
def compare(
    run_a: Annotated[
        Path, typer.Argument(help="The earlier run, the baseline (directory or its report.json).")
    ],
    run_b: Annotated[
        Path, typer.Argument(help="The later run, the one gated (directory or its report.json).")
    ],
    tolerance: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="How much worse B's p99 latencies and slowest failover may be, as a ratio of A's "
            "(0.2: up to 1.2 × A).",
        ),
    ] = 0.2,
) -> None:
    """Print what changed between two runs' report.json, with deltas B − A, and gate on a regression.

    Verdict, loss counts, availability, latency p50/p99, SLO pass/fail, fault count; changed rows are
    marked with *. The last line says whether B regressed. Exit 1 when it did: verdict PASS → FAIL,
    more lost / abandoned / unexpected / duplicated effects / failed but observed, an SLO check passed →
    failed, or a p99 or the slowest failover above (1 + tolerance) × A; exit 3 when either run is
    INCONCLUSIVE; exit 2 on a usage error (a missing or unreadable report); exit 0 otherwise.
    """
    from reports.compare import compare as compare_reports
    from reports.compare import gate, load_report, render

    try:
        doc_a, doc_b = load_report(run_a), load_report(run_b)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    typer.echo(
        render(
            compare_reports(doc_a, doc_b), name_a=run_a.name or str(run_a), name_b=run_b.name or str(run_b)
        ),
        nl=False,
    )
    verdict = gate(doc_a, doc_b, tolerance)
    typer.echo(verdict.line())
    raise typer.Exit(verdict.exit_code)


@app.command()
def bench(
    n: Annotated[int, typer.Option(help="Messages to generate.")] = 1_000_000,
    budget: Annotated[float, typer.Option(help="Fail (exit 1) above this many seconds.")] = 10.0,
    workdir: Annotated[Path | None, typer.Option(help="Directory for the temporary ledger.")] = None,
) -> None:
    """Generate an N-message ledger, audit it and print the seconds (``drill bench audit``)."""
    from reports.bench import bench_audit

    seconds = bench_audit(n, workdir=workdir)
    verdict = "within" if seconds <= budget else "OVER"
    typer.echo(f"bench audit: {seconds:.2f} s for {n:,} messages ({verdict} the {budget:g} s budget)")
    raise typer.Exit(0 if seconds <= budget else 1)
