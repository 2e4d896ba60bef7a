"""The load tests' commands (``app``, for harness/cli.py to mount, e.g. as ``drill load``).

``intake`` drives the platform's intake API, ``amqp`` the broker; both run Locust headless in
processes of their own through :func:`loadtests.runner.run_locust` and print what it measured. This
module never imports Locust itself.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from loadtests.profiles import PROFILES
from loadtests.runner import LocustResult, run_locust

app = typer.Typer(help="Locust load: the intake API and raw broker publishes.", no_args_is_help=True)
HERE = Path(__file__).resolve().parent


def _default_run_dir() -> Path:
    return Path("runs") / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-load")


def _report(result: LocustResult, run_dir: Path) -> None:
    table = Table(
        title=f"Locust: {result.requests} requests, {result.failures} failures, {result.rps:.0f} req/s"
    )
    for col in ("type", "name", "requests", "failures", "p50 ms", "p95 ms", "p99 ms", "req/s"):
        table.add_column(col, justify="left" if col in ("type", "name") else "right")
    rows = [*result.endpoints, *([result.total] if result.total else [])]
    for e in rows:
        table.add_row(
            e.type,
            e.name,
            str(e.requests),
            str(e.failures),
            f"{e.median_ms:.0f}",
            "-" if e.p95_ms is None else f"{e.p95_ms:.0f}",
            "-" if e.p99_ms is None else f"{e.p99_ms:.0f}",
            f"{e.rps:.1f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"max users {result.max_users}; ledger {result.ledger} ({result.ledger_records} records); "
        f"files in {run_dir / 'locust'}; exit code {result.exit_code}"
    )


@app.command()
def intake(
    host: Annotated[str, typer.Option(help="The platform's intake base URL.")] = "http://127.0.0.1:8080",
    users: Annotated[int, typer.Option(help="Users (the shape's base users with --shape).")] = 20,
    spawn_rate: Annotated[float, typer.Option(help="Users started per second.")] = 10.0,
    duration: Annotated[float, typer.Option(help="Run length, seconds.")] = 60.0,
    shape: Annotated[str | None, typer.Option(help=f"Load shape: {', '.join(PROFILES)}.")] = None,
    workers: Annotated[
        int, typer.Option(help="Distributed mode: workers beside a master (0: one process).")
    ] = 0,
    retailers: Annotated[Path | None, typer.Option(help="retailers.json the platform uses.")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Where stats, report and ledger go.")] = None,
) -> None:
    """Drive the intake API (REST, Shopify and ePOS webhooks, tracking, cancels) with Locust."""
    if shape is not None and shape not in PROFILES:
        raise typer.BadParameter(f"--shape must be one of {sorted(PROFILES)}")
    run = run_dir or _default_run_dir()
    env = {"DRILL_RETAILERS": str(retailers.resolve())} if retailers else {}
    result = run_locust(
        HERE / "intake.py", host, run, users, spawn_rate, duration, shape=shape, workers=workers, env=env
    )
    _report(result, run)
    raise typer.Exit(0 if result.exit_code == 0 else 1)


@app.command()
def amqp(
    url: Annotated[str, typer.Option(help="Broker URL.")] = "amqp://guest:guest@127.0.0.1:5672/",
    queue: Annotated[
        str, typer.Option(help="Quorum queue to publish to (declared if absent).")
    ] = "loadtest.publish",
    users: Annotated[int, typer.Option(help="Publishers (each keeps one publish in flight).")] = 20,
    duration: Annotated[float, typer.Option(help="Run length, seconds.")] = 30.0,
    size: Annotated[int, typer.Option(help="Message body size, bytes.")] = 512,
    workers: Annotated[int, typer.Option(help="Distributed mode: workers beside a master.")] = 0,
    run_dir: Annotated[Path | None, typer.Option(help="Where stats, report and op files go.")] = None,
) -> None:
    """Publish persistent messages with confirms + mandatory to a quorum queue with Locust."""
    run = run_dir or _default_run_dir()
    env = {"DRILL_AMQP_URL": url, "DRILL_AMQP_QUEUE": queue, "DRILL_AMQP_SIZE": str(size)}
    result = run_locust(
        HERE / "amqp_user.py", url, run, users, float(users), duration, workers=workers, env=env
    )
    _report(result, run)
    raise typer.Exit(0 if result.exit_code == 0 else 1)
