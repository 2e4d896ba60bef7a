"""Commands: ``topology``, ``parked list|show|replay`` (``app``).

``harness/cli.py`` mounts them. Broker URLs and the topology come from :class:`MessagingSettings`
(``DRILL_MSG_AMQP_URLS``, ``DRILL_MSG_TOPOLOGY``). ``drill bench messaging`` is composed in
``harness/cli.py``: it finds the running rig (``rig.cluster.broker_urls``), which ``system/`` cannot.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from typing import Annotated

import aio_pika
import typer

from .connector import ClusterConnector
from .declare import TopologyConflict, declare_topology
from .parking import ParkedMessage, ParkingLot
from .settings import MessagingSettings
from .topology import Topology

app = typer.Typer(help="Messaging: the topology and the parking lot.", no_args_is_help=True)
parked_app = typer.Typer(help="Inspect and replay parked messages.", no_args_is_help=True)
app.add_typer(parked_app, name="parked")


def load_topology(settings: MessagingSettings) -> Topology:
    """The topology named by ``settings.topology`` (``module:function``)."""
    module_name, _, attr = settings.topology.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    topology = factory()
    if not isinstance(topology, Topology):
        raise typer.BadParameter(f"{settings.topology} did not return a Topology")
    return topology


@app.command("topology")
def topology_cmd(
    declare: Annotated[bool, typer.Option(help="Declare it on the broker (idempotent).")] = False,
    service: Annotated[str | None, typer.Option(help="Only this service's queues.")] = None,
    permissions: Annotated[bool, typer.Option(help="Print each service's permission regexes.")] = False,
) -> None:
    """Print the platform topology, ending with the count of queues."""
    settings = MessagingSettings()
    topo = load_topology(settings)
    typer.echo(topo.describe())
    if permissions:
        for svc in topo.services:
            if service is None or svc.name == service:
                p = topo.permissions(svc.name)
                typer.echo(f"permissions {svc.name}: configure={p.configure} write={p.write} read={p.read}")
    if declare:
        try:
            count = asyncio.run(_declare(settings, topo, service))
        except TopologyConflict as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"declared {count} queues")


async def _declare(settings: MessagingSettings, topo: Topology, service: str | None) -> int:
    connection = await ClusterConnector(settings, name="drill:topology").connect()
    try:
        return await declare_topology(connection, topo, service=service)
    finally:
        await connection.close()


QueueOpt = Annotated[str | None, typer.Option("--queue", "-q", help="Work queue (default: every one).")]


def _queues(settings: MessagingSettings, queue: str | None) -> list[str]:
    if queue is not None:
        return [queue]
    return [q.name for q in load_topology(settings).work_queues()]


@parked_app.command("list")
def parked_list(
    queue: QueueOpt = None,
    limit: Annotated[int, typer.Option(help="Most messages per queue.")] = 100,
) -> None:
    """One JSON line per parked message (left in place), then a count per parking lot."""
    settings = MessagingSettings()
    total = 0
    for name in _queues(settings, queue):
        try:
            messages = asyncio.run(ParkingLot(settings, name).list(limit))
        except aio_pika.exceptions.ChannelNotFoundEntity:
            typer.echo(f"{name}.parked: not declared", err=True)
            continue
        for m in messages:
            typer.echo(json.dumps({"queue": name, **m.summary()}, default=str))
        total += len(messages)
    typer.echo(f"{total} parked messages")


@parked_app.command("show")
def parked_show(
    message_id: str,
    queue: QueueOpt = None,
) -> None:
    """Everything about one parked message: reason, origin, headers and body."""
    settings = MessagingSettings()
    for name in _queues(settings, queue):
        found: ParkedMessage | None = asyncio.run(ParkingLot(settings, name).show(message_id))
        if found is not None:
            typer.echo(json.dumps({"queue": name, **found.summary()}, default=str, indent=2))
            typer.echo("headers: " + json.dumps(dict(found.headers), default=str))
            typer.echo("body: " + found.body.decode("utf-8", errors="replace"))
            return
    typer.echo(f"message {message_id} is not parked", err=True)
    raise typer.Exit(1)


@parked_app.command("replay")
def parked_replay(
    message_ids: Annotated[list[str] | None, typer.Argument(help="Ids to replay.")] = None,
    queue: QueueOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every parked message.")] = False,
) -> None:
    """Republish parked messages to their original exchange and routing key (inbox-deduplicated)."""
    if not message_ids and not all_:
        typer.echo("give message ids or --all", err=True)
        raise typer.Exit(2)
    settings = MessagingSettings()
    wanted = None if all_ else set(message_ids or [])
    replayed = unroutable = 0
    for name in _queues(settings, queue):
        report = asyncio.run(ParkingLot(settings, name).replay(wanted))
        for mid in report.replayed:
            typer.echo(f"replayed {mid} from {name}.parked")
        for mid in report.unroutable:
            typer.echo(f"unroutable, left parked: {mid} in {name}.parked", err=True)
        replayed += len(report.replayed)
        unroutable += len(report.unroutable)
    typer.echo(f"{replayed} replayed, {unroutable} unroutable")
    if unroutable:
        raise typer.Exit(1)
