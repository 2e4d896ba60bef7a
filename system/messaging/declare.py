"""Declaring a :class:`~.topology.Topology` on the broker, idempotently, with clear conflict errors."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import aiormq
from aio_pika.abc import AbstractConnection

from system.logs import get_logger

from .broker import for_broker, server_version
from .topology import Topology

log = get_logger(__name__)

R = TypeVar("R")

_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for (?P<kind>queue|exchange) '(?P<name>[^']+)'"
)


class TopologyConflict(Exception):
    """RabbitMQ refused a declaration: the entity exists with different arguments.

    Quorum queue arguments can't be changed in place: a policy, or a new queue and a migration, is needed.
    """

    def __init__(self, kind: str, name: str, argument: str, detail: str) -> None:
        super().__init__(
            f"{kind} {name!r} already exists with a different {argument!r}: {detail}. "
            f"Arguments of an existing {kind} can't change; use a policy or migrate to a new {kind}."
        )
        self.kind = kind
        self.name = name
        self.argument = argument


async def declare_topology(
    connection: AbstractConnection, topology: Topology, *, service: str | None = None
) -> int:
    """Declare exchanges (unless ``service`` is given: the admin owns them), queues and bindings.

    Safe to run at every start: re-declaring an identical entity is a no-op. Returns the number of
    queues declared. Raises :class:`TopologyConflict` naming the entity and the argument on
    PRECONDITION_FAILED.
    """
    channel = await connection.channel(publisher_confirms=False)
    try:
        if service is None:
            for exchange in topology.all_exchanges():
                await _guarded(
                    channel.declare_exchange(
                        exchange.name,
                        exchange.type,
                        durable=True,
                        internal=exchange.internal,
                        arguments=dict(exchange.arguments) or None,
                    ),
                    "exchange",
                    exchange.name,
                )
            for eb in topology.exchange_bindings:
                destination = await channel.get_exchange(eb.destination, ensure=False)
                await destination.bind(eb.source, eb.routing_key)
        queues = topology.declared_queues(service)
        version = server_version(connection)
        for queue in queues:
            declared = await _guarded(
                channel.declare_queue(
                    queue.name, durable=True, arguments=for_broker(queue.arguments, version)
                ),
                "queue",
                queue.name,
            )
            for binding in queue.bindings:
                await declared.bind(binding.exchange, binding.routing_key)
        log.info("topology declared", extra={"queues": len(queues), "service": service})
        return len(queues)
    finally:
        if not channel.is_closed:
            await channel.close()


async def declare_topology_spread(connections: Sequence[AbstractConnection], topology: Topology) -> int:
    """:func:`declare_topology` with the queues spread over ``connections`` (one per node), round-robin.

    A quorum queue's first leader is the node its declaring client is connected to, so declaring every
    queue through one node gives that node every leader: one node's death then moves all of them at once
    and the load is all on one node. Returns the number of queues declared.
    """
    first, *_ = connections
    await declare_topology(
        first, Topology(topology.vhost, topology.exchanges, (), exchange_bindings=topology.exchange_bindings)
    )
    channels = [await c.channel(publisher_confirms=False) for c in connections]
    try:
        queues = topology.declared_queues()
        version = server_version(first)
        for i, queue in enumerate(queues):
            channel = channels[i % len(channels)]
            declared = await _guarded(
                channel.declare_queue(
                    queue.name, durable=True, arguments=for_broker(queue.arguments, version)
                ),
                "queue",
                queue.name,
            )
            for binding in queue.bindings:
                await declared.bind(binding.exchange, binding.routing_key)
        log.info("topology declared", extra={"queues": len(queues), "nodes": len(connections)})
        return len(queues)
    finally:
        for channel in channels:
            if not channel.is_closed:
                await channel.close()


async def delete_topology(connection: AbstractConnection, topology: Topology) -> None:
    """Delete every queue of ``topology`` (tests and teardown only; exchanges are left alone)."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        for queue in topology.declared_queues():
            await channel.queue_delete(queue.name)
    finally:
        await channel.close()


async def _guarded(coro: Awaitable[R], kind: str, name: str) -> R:
    try:
        return await coro
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        text = str(exc)
        match = _INEQUIVALENT.search(text)
        argument = match.group("arg") if match else "arguments"
        raise TopologyConflict(kind, name, argument, text) from None
