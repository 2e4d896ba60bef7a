"""``drill system ...``: the platform's services as supervised processes (see harness/supervisor.py)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness.supervisor import SupervisorError, SystemHandle

ROOT = Path(os.environ.get("DRILL_ROOT", Path(__file__).resolve().parent.parent))
app = typer.Typer(help="The platform's services as supervised processes.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)

RunDir = Annotated[Path, typer.Option("--run-dir", help="Where the system keeps its state and logs.")]
DEFAULT_RUN_DIR = ROOT / ".drill" / "system"
DEFAULT_SPEC = ROOT / "system" / "services.toml"


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"error: {exc}", soft_wrap=True, highlight=False)
    return typer.Exit(2)


def _target(text: str) -> tuple[str, int]:
    """``intake#1`` -> ("intake", 1); ``intake`` -> ("intake", 0)."""
    name, _, idx = text.partition("#")
    if idx and not idx.isdigit():
        raise typer.BadParameter(f"{text!r}: use SERVICE or SERVICE#N")
    return name, int(idx or 0)


@app.command("up")
def up(
    spec: Annotated[Path, typer.Option(help="Services spec (TOML).")] = DEFAULT_SPEC,
    run_dir: RunDir = DEFAULT_RUN_DIR,
) -> None:
    """Start the supervisor and every replica; returns once all run."""
    try:
        t0 = time.monotonic()
        handle = SystemHandle.start(run_dir.resolve(), spec.resolve())
    except SupervisorError as exc:
        raise _fail(exc) from None
    console.print(f"system up in {time.monotonic() - t0:.1f} s")
    _print(handle)


def _print(handle: SystemHandle) -> None:
    table = Table(title=f"services ({handle.run_dir})")
    for col in ("service", "replica", "state", "pid", "restarts", "last exit", "log"):
        table.add_column(col)
    for r in handle.replicas():
        table.add_row(
            r["service"], str(r["index"]), r["state"], str(r.get("pid") or "-"), str(r["restarts"]),
            "-" if r.get("last_exit") is None else str(r["last_exit"]), r.get("log", ""),
        )  # fmt: skip
    console.print(table)


@app.command("status")
def status(run_dir: RunDir = DEFAULT_RUN_DIR) -> None:
    """Every replica: running / paused / backoff / stopped, its PID and restarts."""
    try:
        _print(SystemHandle(run_dir.resolve()))
    except SupervisorError as exc:
        raise _fail(exc) from None


@app.command("down")
def down(run_dir: RunDir = DEFAULT_RUN_DIR) -> None:
    """Graceful stop of every replica and the supervisor (replicas by PID if the supervisor is gone)."""
    try:
        SystemHandle(run_dir.resolve()).stop()
    except SupervisorError as exc:
        raise _fail(exc) from None
    console.print("system down")


@app.command("scale")
def scale(
    assignment: Annotated[str, typer.Argument(help="SERVICE=N")], run_dir: RunDir = DEFAULT_RUN_DIR
) -> None:
    """Change a service's replica count (the supervisor converges within a moment)."""
    name, sep, n = assignment.partition("=")
    if not sep or not n.isdigit():
        raise _fail(ValueError(f"{assignment!r}: use SERVICE=N"))
    try:
        SystemHandle(run_dir.resolve()).scale(name, int(n))
    except SupervisorError as exc:
        raise _fail(exc) from None
    console.print(f"{name}: desired replicas = {n}")


def _signal(target: str, sig: signal.Signals, run_dir: Path, verb: str) -> None:
    name, idx = _target(target)
    try:
        pid = SystemHandle(run_dir.resolve()).signal(name, idx, sig)
    except SupervisorError as exc:
        raise _fail(exc) from None
    console.print(f"{name}#{idx}: {verb} (PID {pid})")


@app.command("kill")
def kill(
    target: Annotated[str, typer.Argument(help="SERVICE[#N]")], run_dir: RunDir = DEFAULT_RUN_DIR
) -> None:
    """SIGKILL one replica; the supervisor restarts it."""
    _signal(target, signal.SIGKILL, run_dir, "SIGKILL sent")


@app.command("restart")
def restart(
    target: Annotated[str, typer.Argument(help="SERVICE[#N]")], run_dir: RunDir = DEFAULT_RUN_DIR
) -> None:
    """Graceful restart of one replica (SIGTERM; the supervisor starts it again)."""
    _signal(target, signal.SIGTERM, run_dir, "SIGTERM sent; the supervisor restarts it")


@app.command("pause")
def pause(
    target: Annotated[str, typer.Argument(help="SERVICE[#N]")], run_dir: RunDir = DEFAULT_RUN_DIR
) -> None:
    """Freeze one replica (SIGSTOP)."""
    _signal(target, signal.SIGSTOP, run_dir, "paused")


@app.command("resume")
def resume(
    target: Annotated[str, typer.Argument(help="SERVICE[#N]")], run_dir: RunDir = DEFAULT_RUN_DIR
) -> None:
    """Thaw one replica (SIGCONT)."""
    name, idx = _target(target)
    try:
        pid = SystemHandle(run_dir.resolve()).replica(name, idx).get("pid")
    except SupervisorError as exc:
        raise _fail(exc) from None
    if not pid:
        raise _fail(SupervisorError(f"{name}#{idx} has no process"))
    os.kill(int(pid), signal.SIGCONT)
    console.print(f"{name}#{idx}: resumed (PID {pid})")
