"""Commands of the reports package (mounted by ``harness/cli.py``): ``audit`` and ``bench``.

``audit RUN_DIR`` reads what the run left (simulator ledger, op files, configured databases), writes
``report.json``, ``junit.xml`` and ``summary.md``, prints one ``VERDICT:`` line and exits 0 only when
every check passed — the contract CI gates on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from reports.audit import audit_run, load_config
from reports.bench import bench_audit
from reports.writers import write_all

app = typer.Typer(help="Loss audit and reports.", no_args_is_help=True)

#: Exit code for "the audit itself could not run" (bad configuration), distinct from "checks failed" (1).
EXIT_USAGE = 2


@app.command()
def audit(
    run_dir: Annotated[Path, typer.Argument(help="The run directory to audit.", file_okay=False)],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the reports (default RUN_DIR/audit).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Treat a skipped check (no evidence) as a failure.")] = False,
) -> None:
    """Audit RUN_DIR: write report.json, junit.xml, summary.md; exit 0 only if every check passed."""
    if not run_dir.is_dir():
        typer.echo(f"error: {run_dir} is not a directory", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        config = load_config(run_dir)
    except (ValueError, KeyError, TypeError) as exc:
        typer.echo(f"error: bad {run_dir / 'audit.json'}: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    if strict:
        config = dataclasses.replace(config, strict=True)
    report = audit_run(run_dir, config)
    paths = write_all(report, out if out is not None else run_dir / "audit")
    for check in report.checks:
        if check.status != "passed":
            typer.echo(f"  {check.status.upper():7} {check.name}: {check.message}")
    typer.echo(f"reports: {', '.join(str(p) for p in paths)}")
    typer.echo(report.verdict_line())
    raise typer.Exit(report.exit_code)


@app.command()
def bench(
    n: Annotated[int, typer.Option(help="Messages to generate.")] = 1_000_000,
    budget: Annotated[float, typer.Option(help="Fail (exit 1) above this many seconds.")] = 10.0,
    workdir: Annotated[Path | None, typer.Option(help="Directory for the temporary ledger.")] = None,
) -> None:
    """Generate an N-message ledger, audit it and print the seconds (``drill bench audit``)."""
    seconds = bench_audit(n, workdir=workdir)
    verdict = "within" if seconds <= budget else "OVER"
    typer.echo(f"bench audit: {seconds:.2f} s for {n:,} messages ({verdict} the {budget:g} s budget)")
    raise typer.Exit(0 if seconds <= budget else 1)
