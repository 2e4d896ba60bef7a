"""``drill system ...``: the platform's services as supervised processes (see rig/supervisor.py).

``drill system up`` first provisions the platform on the running local rig (``drill cluster up``;
:func:`rig.provision.provision_platform`: the vhost, one least-privilege user per service, the
whole topology, the secrets file ``<run dir>/secrets/platform.json``) and passes
``DRILL_PLATFORM_SECRETS`` to every service; ``--no-provision`` skips that. ``drill system status``
shows per service how many replicas are up and ready (``<run dir>/ready/<service>.<replica>``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rig import procs
from rig.cluster import ClusterError, ClusterSpec, LocalCluster
from rig.cluster import state as cluster_state
from rig.provision import ProvisionError, provision_platform
from rig.supervisor import SupervisorError, SystemHandle
from system.platform.topology import VHOST

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


@dataclass(frozen=True)
class ProvisionStep:
    """What ``up`` did about the broker before starting the services."""

    env: dict[str, str]
    message: str


def provision_step(cluster_run_dir: Path, run_dir: Path, vhost: str) -> ProvisionStep:
    """Provision ``vhost`` on the local rig recorded in ``cluster_run_dir`` when it runs; otherwise say
    why not and provision nothing. Raises :class:`ClusterError` / :class:`ProvisionError` on failure.

    The message names the vhost, the users and the queue count, and the secrets file (never a password).
    """
    st = cluster_state.load(cluster_run_dir)
    if st is None:
        return ProvisionStep(
            {}, f"no broker rig recorded in {cluster_run_dir} (`drill cluster up`): not provisioning"
        )
    if st.provider != "local":
        return ProvisionStep(
            {}, f"the rig in {cluster_run_dir} is {st.provider!r}, not local: not provisioning"
        )
    if not any(procs.alive(n.beam_pid) for n in st.nodes):
        return ProvisionStep({}, f"no node of the rig in {cluster_run_dir} is running: not provisioning")
    cluster = LocalCluster.attach(ClusterSpec(run_dir=cluster_run_dir))
    done = provision_platform(cluster, run_dir, vhost=vhost)
    users = ", ".join(sorted(done.users.values()))
    return ProvisionStep(
        {"DRILL_PLATFORM_SECRETS": str(done.secrets_path)},
        f"provisioned vhost {done.vhost!r} on {len(cluster.node_indices)} node(s): {len(done.users)} users "
        f"({users}), {done.queues} queues declared; credentials in {done.secrets_path} (mode 0600)",
    )


@app.command("up")
def up(
    spec: Annotated[Path, typer.Option(help="Services spec (TOML).")] = DEFAULT_SPEC,
    run_dir: RunDir = DEFAULT_RUN_DIR,
    provision: Annotated[
        bool,
        typer.Option(
            "--provision/--no-provision",
            help="Provision the platform (vhost, one user per service, topology, secrets file) on the "
            "running local rig first.",
        ),
    ] = True,
    cluster_run_dir: Annotated[
        Path | None,
        typer.Option("--cluster-run-dir", help="The rig's run directory (default: `drill cluster up`'s)."),
    ] = None,
    vhost: Annotated[str, typer.Option(help="The platform's vhost.")] = VHOST,
    notify_url: Annotated[
        str | None,
        typer.Option(
            "--notify-url",
            help="Notification provider base URL (DRILL_NOTIFICATIONS_NOTIFY_URL); unset: the recording one.",
        ),
    ] = None,
) -> None:
    """Provision the platform on the running rig, then start the supervisor and every replica."""
    run_dir = run_dir.resolve()
    env: dict[str, str] = {}
    if provision:
        rig = (cluster_run_dir or ClusterSpec().run_dir).resolve()
        try:
            step = provision_step(rig, run_dir, vhost)
        except (ClusterError, ProvisionError) as exc:
            raise _fail(exc) from None
        console.print(step.message, highlight=False, soft_wrap=True)
        env.update(step.env)
    if notify_url:
        env["DRILL_NOTIFICATIONS_NOTIFY_URL"] = notify_url
    try:
        t0 = time.monotonic()
        handle = SystemHandle.start(run_dir, spec.resolve(), env=env)
    except SupervisorError as exc:
        raise _fail(exc) from None
    console.print(f"system up in {time.monotonic() - t0:.1f} s")
    _print(handle)


def _print(handle: SystemHandle) -> None:
    replicas = handle.replicas()
    ready = {(r["service"], r["index"]): handle.is_ready(r) for r in replicas}
    summary = Table(title="services")
    for col in ("service", "replicas up", "ready"):
        summary.add_column(col)
    for service in dict.fromkeys(r["service"] for r in replicas):
        mine = [r for r in replicas if r["service"] == service and r["state"] != "stopped"]
        up_count = sum(r["state"] in ("running", "paused") for r in mine)
        ready_count = sum(ready[(r["service"], r["index"])] for r in mine)
        summary.add_row(service, f"{up_count}/{len(mine)}", f"{ready_count}/{len(mine)}")
    console.print(summary)
    table = Table(title=f"replicas ({handle.run_dir})")
    for col in ("service", "replica", "state", "ready", "pid", "restarts", "last exit", "log"):
        table.add_column(col)
    for r in replicas:
        table.add_row(
            r["service"], str(r["index"]), r["state"], "yes" if ready[(r["service"], r["index"])] else "no",
            str(r.get("pid") or "-"), str(r["restarts"]),
            "-" if r.get("last_exit") is None else str(r["last_exit"]), r.get("log", ""),
        )  # fmt: skip
    console.print(table)


@app.command("status")
def status(run_dir: RunDir = DEFAULT_RUN_DIR) -> None:
    """Per service: replicas up and ready (ready marker written by the running process); per replica:
    running / paused / backoff / stopped, ready, PID and restarts."""
    try:
        _print(SystemHandle(run_dir.resolve()))
    except SupervisorError as exc:
        raise _fail(exc) from None


@app.command("down")
def down(
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Where the system keeps its state and logs.")
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option("--run", help="A drill run directory whose runner died: stop its traffic and system."),
    ] = None,
) -> None:
    """Graceful stop of every replica and the supervisor (replicas by PID if the supervisor is gone).

    With no option it also stops what drill runs whose runner died left running: their simulator and
    Locust (SIGINT, then SIGKILL), their supervisor and replicas (only PIDs verified to be the run's).
    """
    from rig.crashed import RunError, clean_runs, find_runs_to_clean, stop_system, stop_traffic

    try:
        runs = find_runs_to_clean(run, explicit=run_dir is not None)
    except RunError as exc:
        raise _fail(exc) from None
    failed = clean_runs(
        runs,
        lambda r: [lambda: stop_traffic(r), lambda: stop_system(r)],
        lambda line: console.print(line, highlight=False, soft_wrap=True),
    )
    if run is None:
        try:
            SystemHandle((run_dir or DEFAULT_RUN_DIR).resolve()).stop()
            console.print("system down")
        except SupervisorError as exc:
            if run_dir is not None or not runs:
                raise _fail(exc) from None
    if failed:
        raise _fail(SupervisorError("; ".join(failed)))


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
