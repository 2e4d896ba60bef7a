"""``drill audit``: the offline audit of :mod:`reports.cli`, after an optional drain of the live rig.

The audit reads the run directory only; ``--drain`` first waits (with a deadline) until the brokers'
queues and the services' outboxes are empty and writes ``RUN/drain.json`` (the audit's ``drained``
check). The drain talks to brokers (:mod:`rig.drain`), so it is composed here, above both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import rundir
from reports.cli import EXIT_USAGE, HtmlOpt, OutOpt, RunDirArg, StrictOpt
from reports.cli import audit as offline_audit


def _drain(
    run_dir: Path, cluster_run_dir: Path | None, management_url: list[str] | None, outbox: list[Path] | None,
    deadline: float, queues: str, amqp_url: list[str] | None = None,
) -> None:  # fmt: skip
    """Wait for queues and outboxes to empty; write RUN/drain.json (the audit's `drained` check)."""
    import json

    from rig.cluster import state as cluster_state
    from rig.drain import drain

    urls, auth, amqp = list(management_url or []), ("guest", "guest"), list(amqp_url or [])
    if cluster_run_dir is not None:
        st = cluster_state.load(cluster_run_dir)
        if st is None:
            typer.echo(f"error: no cluster state in {cluster_run_dir}", err=True)
            raise typer.Exit(EXIT_USAGE)
        urls = urls or [f"http://{n.host}:{n.mgmt_port}" for n in st.nodes] or st.management_urls_external
        auth = (st.admin_user, st.admin_password)
        amqp = (
            amqp
            or [f"amqp://{st.admin_user}:{st.admin_password}@{n.host}:{n.amqp_port}/" for n in st.nodes]
            or st.amqp_urls_external
        )
    if urls and not amqp:
        typer.echo(
            "error: --drain needs --amqp-url with --management-url (depths are asked of the queues)", err=True
        )
        raise typer.Exit(EXIT_USAGE)
    if not urls:
        typer.echo("error: --drain needs --cluster-run-dir or --management-url", err=True)
        raise typer.Exit(EXIT_USAGE)
    dbs = list(outbox) if outbox else sorted(run_dir.glob("*.db"))
    typer.echo(f"draining: {len(urls)} management URL(s), {len(dbs)} outbox file(s), deadline {deadline:g} s")
    result = drain(urls, auth, dbs, run_dir, amqp_urls=amqp, deadline_s=deadline, only=queues)
    (run_dir / rundir.DRAIN).write_text(json.dumps(result.to_json(), indent=2))
    typer.echo(
        f"drained in {result.seconds:.1f} s"
        if result.drained
        else f"NOT drained after {result.seconds:.1f} s: {result.leftover}"
    )


DrainOpt = Annotated[
    bool, typer.Option(help="First wait until queues and outboxes are empty (with a deadline).")
]
ClusterDirOpt = Annotated[Path | None, typer.Option(help="--drain: the rig's run dir (URLs, credentials).")]
MgmtOpt = Annotated[list[str] | None, typer.Option(help="--drain: management API base URL(s).")]
AmqpOpt = Annotated[list[str] | None, typer.Option(help="--drain: AMQP URL(s), with credentials.")]
OutboxOpt = Annotated[
    list[Path] | None, typer.Option(help="--drain: outbox SQLite file(s) (default RUN_DIR/*.db).")
]
DeadlineOpt = Annotated[float, typer.Option(help="--drain: seconds to wait at most.")]
QueuesOpt = Annotated[str, typer.Option(help="--drain: regex of the vhost/queue names to wait for.")]


def audit(
    run_dir: RunDirArg,
    out: OutOpt = None,
    strict: StrictOpt = False,
    html: HtmlOpt = False,
    drain: DrainOpt = False,
    cluster_run_dir: ClusterDirOpt = None,
    management_url: MgmtOpt = None,
    amqp_url: AmqpOpt = None,
    outbox: OutboxOpt = None,
    drain_deadline: DeadlineOpt = 120.0,
    drain_queues: QueuesOpt = ".*",
) -> None:
    """Audit RUN_DIR: write report.json, junit.xml, summary.md; exit 0 only if every check passed."""
    if drain:
        if not run_dir.is_dir():
            typer.echo(f"error: {run_dir} is not a directory", err=True)
            raise typer.Exit(EXIT_USAGE)
        _drain(run_dir, cluster_run_dir, management_url, outbox, drain_deadline, drain_queues, amqp_url)
    offline_audit(run_dir, out, strict, html)
