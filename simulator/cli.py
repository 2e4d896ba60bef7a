"""The simulator's commands: ``drill simulate`` and ``drill bench simulator`` (mounted by harness/cli.py).

``app`` is the Typer sub-app (commands ``simulate``, ``bench``, ``plan``); :func:`bench` is importable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from simulator.bench import bench as _bench
from simulator.config import ScenarioError, load_scenario
from simulator.plan import plan_digest
from simulator.world import SecretsError

# The runner (aiohttp) and the AMQP couriers (aio-pika) load inside `simulate`: the drill CLI that
# mounts these commands must answer --help fast.

app = typer.Typer(help="Traffic simulator: retailers, couriers, drivers and customers.", no_args_is_help=True)

bench = _bench

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"2m"``, ``"1.5h"``, ``"500ms"`` → seconds.

    Example:
        >>> parse_duration("2m"), parse_duration("1.5"), parse_duration("500ms")
        (120.0, 1.5, 0.5)
    """
    m = _DURATION.match(text)
    if not m:
        raise typer.BadParameter(f"not a duration: {text!r} (use e.g. 90s, 2m, 1h)")
    value, unit = float(m.group(1)), m.group(2) or "s"
    seconds = value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    if seconds <= 0:
        raise typer.BadParameter(f"duration must be > 0, got {text!r}")
    return seconds


def _parse_listen(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise typer.BadParameter(f"--listen wants HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _default_run_dir() -> Path:
    return Path("runs") / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-sim")


@app.command()
def simulate(
    scenario: Annotated[
        str, typer.Option(help="Scenario name (scenarios/traffic/NAME.toml) or path.")
    ] = "steady",
    duration: Annotated[
        str | None, typer.Option(help="Run length, e.g. 90s, 10m (default: the scenario's).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same orders and courier answers.")] = 1,
    target: Annotated[
        str, typer.Option(help="Base URL of the platform's intake API.")
    ] = "http://127.0.0.1:8080",
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (ledger in RUN/simulator/).")] = None,
    rate: Annotated[float | None, typer.Option(help="Override the base offered rate, orders/s.")] = None,
    retailers: Annotated[
        Path | None, typer.Option(help="Retailers/secrets JSON (default: generated).")
    ] = None,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT for the notification receiver.")] = None,
    amqp: Annotated[
        str | None, typer.Option(help="AMQP URL: play the couriers on the platform's queues.")
    ] = None,
    linger: Annotated[
        str | None,
        typer.Option(
            help="With --amqp: after the last order keep the couriers up until idle, at most this long."
        ),
    ] = None,
    plan_only: Annotated[
        bool, typer.Option(help="Print the plan's digest and counts, send nothing.")
    ] = False,
    hold_receiver: Annotated[
        bool,
        typer.Option(
            help="With --listen: once the run is over, keep the notification receiver up until SIGINT or "
            "SIGTERM (a drill stops it after draining the platform); RUN/simulator/receiver.holding says so."
        ),
    ] = False,
) -> None:
    """Play a scenario against a running platform, with a live progress line and a ledger."""
    try:
        sc = load_scenario(scenario)
        if rate is not None:
            if rate <= 0:
                raise typer.BadParameter("--rate must be > 0")
            sc = sc.with_rate(rate)
    except ScenarioError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    secs = parse_duration(duration) if duration else sc.duration_s
    if plan_only:
        p = plan_digest(sc, seed, secs)
        typer.echo(f"plan scenario={sc.name} seed={seed} duration={secs:g}s orders={p.orders} "
                   f"delivered={p.delivered} failed={p.failed} returned={p.returned} unbooked={p.unbooked}")  # fmt: skip
        typer.echo(f"orders_digest={p.orders_digest}\ncouriers_digest={p.couriers_digest}\ndigest={p.digest}")
        return
    from simulator.courier_amqp import CourierAdapterError
    from simulator.runner import Runner

    rd = run_dir or _default_run_dir()
    tty = sys.stderr.isatty()

    def show(line: str) -> None:
        # On a terminal one line rewritten in place; in a log one line per tick.
        sys.stderr.write(("\r\x1b[2K" if tty else "") + line + ("" if tty else "\n"))
        sys.stderr.flush()

    try:
        runner = Runner(
            sc,
            seed,
            target,
            rd,
            secs,
            retailers,
            show,
            _parse_listen(listen),
            amqp_url=amqp,
            linger_s=parse_duration(linger) if linger else 0.0,
            hold_receiver=hold_receiver,
        )
    except SecretsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"simulate scenario={sc.name} seed={seed} duration={secs:g}s target={target} "
               f"ledger={runner.dir / 'ledger.jsonl'}", err=True)  # fmt: skip
    try:
        summary = asyncio.run(runner.run())
    except CourierAdapterError as exc:
        typer.echo(f"\nerror: {exc}", err=True)
        raise typer.Exit(3) from None
    if tty:
        sys.stderr.write("\n")
    c = summary.counts
    typer.echo(
        f"done orders={summary.orders} sent={c['sent']} accepted={c['accepted']} rejected={c['rejected']} "
        f"unknown={c['unknown']} delivered={c['delivered']} duplicates={c['duplicates']} "
        f"cancels={c['cancels']} max_lag={summary.max_lag_s:.3f}s wall={summary.wall_s:.1f}s"
    )
    typer.echo(f"orders_digest={summary.orders_digest}")


@app.command("bench")
def bench_command(
    duration: Annotated[float, typer.Option(help="Seconds to measure.")] = 3.0,
) -> None:
    """Generation alone (orders + payloads + HMAC) on one core: prints orders/s."""
    figure = _bench(duration)
    typer.echo(f"simulator generation: {figure:,.0f} orders/s (one core, {duration:g}s, payloads + HMAC)")


@app.command()
def plan(
    scenario: Annotated[str, typer.Option(help="Scenario name or path.")] = "steady",
    duration: Annotated[str | None, typer.Option(help="Plan length (default: the scenario's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 1,
) -> None:
    """Print the determinism digest of a scenario's plan (orders + courier answers), offline."""
    simulate(scenario=scenario, duration=duration, seed=seed, plan_only=True)
