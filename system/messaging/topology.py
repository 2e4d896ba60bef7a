"""Topology as code: one declarative description of exchanges, queues and bindings.

A :class:`Topology` lists the shared exchanges and, per service, the work queues it consumes. Each
:class:`WorkQueue` expands into the queues RabbitMQ actually holds:

* the work queue itself (quorum, durable, ``x-delivery-limit``, dead-lettering at-least-once to the
  parking lot when the broker gives up on redeliveries);
* one delay queue per :class:`RetryTier` (``x-message-ttl``), dead-lettering back to the work queue
  through the ``requeue`` exchange — only this queue, never the other subscribers of the original key;
* the parking lot ``<queue>.parked`` where poison and malformed messages wait for a human.

The plain data here is what ``drill topology`` prints, what :mod:`.declare` declares and what
:func:`Topology.permissions` turns into the per-service user permission regexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .broker import UNLIMITED_DELIVERY_LIMIT

QUORUM = "quorum"


class QueueRole(StrEnum):
    """What a declared queue is for."""

    WORK = "work"
    RETRY = "retry"
    PARKED = "parked"
    PLAIN = "plain"


@dataclass(frozen=True)
class Exchange:
    """A durable exchange shared by the platform."""

    name: str
    type: str = "topic"
    internal: bool = False
    #: Declaration arguments, e.g. ``{"hash-header": "x-delivery-id"}`` for a consistent-hash exchange.
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ExchangeBinding:
    """Exchange ``destination`` receives what ``source`` routes with ``routing_key`` (an e2e binding)."""

    source: str
    destination: str
    routing_key: str


@dataclass(frozen=True)
class Binding:
    """``queue`` receives what ``exchange`` routes with ``routing_key``."""

    exchange: str
    routing_key: str


@dataclass(frozen=True, order=True)
class RetryTier:
    """One backoff step: a failed message waits ``delay_ms`` in this tier's TTL queue, then comes back."""

    delay_ms: int

    @property
    def suffix(self) -> str:
        """Short human name of the delay, used in queue names (``1s``, ``250ms``, ``5m``)."""
        if self.delay_ms % 60_000 == 0:
            return f"{self.delay_ms // 60_000}m"
        if self.delay_ms % 1000 == 0:
            return f"{self.delay_ms // 1000}s"
        return f"{self.delay_ms}ms"


def exponential_tiers(first_ms: int, factor: int, count: int) -> tuple[RetryTier, ...]:
    """``count`` tiers starting at ``first_ms``, each ``factor`` times longer than the previous."""
    return tuple(RetryTier(first_ms * factor**i) for i in range(count))


@dataclass(frozen=True)
class WorkQueue:
    """A queue a service consumes, with its retry tiers and parking lot."""

    name: str
    bindings: tuple[Binding, ...]
    retry_tiers: tuple[RetryTier, ...] = exponential_tiers(1_000, 5, 3)
    delivery_limit: int = 20
    max_attempts: int = 4
    parked_max_length: int | None = None
    #: Only one consumer at a time gets deliveries (the others wait as hot standbys): keeps the queue's
    #: order for handlers that need it, e.g. a tracking shard.
    single_active_consumer: bool = False

    @property
    def parked_queue(self) -> str:
        """Name of this queue's parking lot."""
        return f"{self.name}.parked"

    def retry_queue(self, tier: RetryTier) -> str:
        """Name of the delay queue of ``tier``."""
        return f"{self.name}.retry.{tier.suffix}"


@dataclass(frozen=True)
class PlainQueue:
    """A queue whose arguments are fixed by a contract with an outside party (no retry tiers, no parking),
    e.g. a courier company's request queue (docs/intake-api.md §3.1): declared with exactly these
    arguments so either side may declare it first."""

    name: str
    bindings: tuple[Binding, ...]
    arguments: Mapping[str, Any] = field(
        default_factory=lambda: {"x-queue-type": QUORUM}, hash=False, compare=False
    )


@dataclass(frozen=True)
class Service:
    """A service (or an outside party): the queues it consumes and the exchanges it publishes to."""

    name: str
    consumes: tuple[WorkQueue, ...] = ()
    publishes_to: tuple[str, ...] = ()
    #: Plain queues it consumes (contract queues of an outside party, like a courier's requests).
    owns: tuple[PlainQueue, ...] = ()
    #: Exchanges it declares itself (an outside party that may start first needs configure on them).
    declares: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeclaredQueue:
    """A queue as RabbitMQ holds it: name, arguments, bindings, and which work queue it belongs to."""

    name: str
    role: QueueRole
    work_queue: str
    arguments: Mapping[str, Any]
    bindings: tuple[Binding, ...]


@dataclass(frozen=True)
class Permissions:
    """The three regexes of ``rabbitmqctl set_permissions -p <vhost> <user> <conf> <write> <read>``."""

    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class Topology:
    """The whole platform's messaging topology in one vhost."""

    vhost: str = "/"
    exchanges: tuple[Exchange, ...] = ()
    services: tuple[Service, ...] = ()
    retry_exchange: str = "drill.retry"
    requeue_exchange: str = "drill.requeue"
    parked_exchange: str = "drill.parked"
    exchange_bindings: tuple[ExchangeBinding, ...] = ()
    _index: dict[str, tuple[Service, WorkQueue]] = field(default_factory=dict, init=False, compare=False)

    def __post_init__(self) -> None:
        names: set[str] = set()
        for service in self.services:
            for queue in service.consumes:
                for declared in self._expand(queue):
                    if declared.name in names:
                        raise ValueError(f"queue {declared.name!r} is declared twice in the topology")
                    names.add(declared.name)
                self._index[queue.name] = (service, queue)
            for plain in service.owns:
                if plain.name in names:
                    raise ValueError(f"queue {plain.name!r} is declared twice in the topology")
                names.add(plain.name)
        known = {e.name for e in self.all_exchanges()}
        for eb in self.exchange_bindings:
            for name in (eb.source, eb.destination):
                if name not in known:
                    raise ValueError(f"exchange binding names unknown exchange {name!r}")
        for service in self.services:
            bound: list[tuple[str, Binding]] = [(q.name, b) for q in service.consumes for b in q.bindings]
            bound += [(q.name, b) for q in service.owns for b in q.bindings]
            for queue_name, binding in bound:
                if binding.exchange not in known:
                    raise ValueError(f"queue {queue_name!r} binds to unknown exchange {binding.exchange!r}")
            for name in (*service.publishes_to, *service.declares):
                if name not in known:
                    raise ValueError(f"service {service.name!r} publishes to unknown exchange {name!r}")

    # -- expansion ---------------------------------------------------------------------------

    def all_exchanges(self) -> tuple[Exchange, ...]:
        """The platform exchanges plus the three direct exchanges the retry machinery uses."""
        machinery = (
            Exchange(self.retry_exchange, "direct"),
            Exchange(self.requeue_exchange, "direct"),
            Exchange(self.parked_exchange, "direct"),
        )
        return self.exchanges + machinery

    def work_queues(self) -> Iterator[WorkQueue]:
        """Every work queue of every service."""
        for service in self.services:
            yield from service.consumes

    def work_queue(self, name: str) -> WorkQueue:
        """The work queue called ``name`` (KeyError if unknown)."""
        return self._index[name][1]

    def owner(self, queue: str) -> Service:
        """The service consuming the work queue ``queue``."""
        return self._index[queue][0]

    def declared_queues(self, service: str | None = None) -> list[DeclaredQueue]:
        """Every queue RabbitMQ must hold (of one service if ``service`` is given)."""
        out: list[DeclaredQueue] = []
        for svc in self.services:
            if service is None or svc.name == service:
                for queue in svc.consumes:
                    out.extend(self._expand(queue))
                out.extend(
                    DeclaredQueue(p.name, QueueRole.PLAIN, p.name, dict(p.arguments), p.bindings)
                    for p in svc.owns
                )
        return out

    def _expand(self, queue: WorkQueue) -> list[DeclaredQueue]:
        # at-least-once dead-lettering is only honoured together with reject-publish overflow.
        safe_dlx = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        work = DeclaredQueue(
            name=queue.name,
            role=QueueRole.WORK,
            work_queue=queue.name,
            arguments={
                "x-queue-type": QUORUM,
                "x-delivery-limit": queue.delivery_limit,
                "x-dead-letter-exchange": self.parked_exchange,
                "x-dead-letter-routing-key": queue.name,
                **safe_dlx,
                **({"x-single-active-consumer": True} if queue.single_active_consumer else {}),
            },
            bindings=(*queue.bindings, Binding(self.requeue_exchange, queue.name)),
        )
        retries = [
            DeclaredQueue(
                name=queue.retry_queue(tier),
                role=QueueRole.RETRY,
                work_queue=queue.name,
                arguments={
                    "x-queue-type": QUORUM,
                    # Never consumed (the TTL moves messages on), but stated: see .broker.
                    "x-delivery-limit": UNLIMITED_DELIVERY_LIMIT,
                    "x-message-ttl": tier.delay_ms,
                    "x-dead-letter-exchange": self.requeue_exchange,
                    "x-dead-letter-routing-key": queue.name,
                    **safe_dlx,
                },
                bindings=(Binding(self.retry_exchange, queue.retry_queue(tier)),),
            )
            for tier in queue.retry_tiers
        ]
        # A parking lot has no dead-letter exchange: RabbitMQ 4.x's default limit (20) would drop a message
        # looked at (returned) 20 times by `drill parked list`. Unlimited, stated (see .broker).
        parked_args: dict[str, Any] = {"x-queue-type": QUORUM, "x-delivery-limit": UNLIMITED_DELIVERY_LIMIT}
        if queue.parked_max_length is not None:
            # A full parking lot refuses (the broker keeps retrying the dead-letter) rather than drops.
            parked_args |= {"x-max-length": queue.parked_max_length, "x-overflow": "reject-publish"}
        parked = DeclaredQueue(
            name=queue.parked_queue,
            role=QueueRole.PARKED,
            work_queue=queue.name,
            arguments=parked_args,
            bindings=(Binding(self.parked_exchange, queue.name),),
        )
        return [work, *retries, parked]

    # -- permissions -------------------------------------------------------------------------

    def permissions(self, service: str) -> Permissions:
        """The permission regexes of ``service``'s own RabbitMQ user.

        configure: its own queues (it declares them at start). write: the exchanges it publishes to,
        the retry and parking exchanges (the consumer republishes failures there; declaring a queue
        with a dead-letter exchange also needs write on that exchange) and its own queues (binding
        needs write on the queue). read: its own queues (consume, parked inspection) and the exchanges
        its queues bind to (binding needs read on the exchange).
        """
        svc = next((s for s in self.services if s.name == service), None)
        if svc is None:
            raise KeyError(f"unknown service {service!r}")
        work = [q.name for q in svc.consumes]
        plain = [q.name for q in svc.owns]
        bound = sorted({b.exchange for q in self.declared_queues(service) for b in q.bindings})
        machinery = [self.retry_exchange, self.requeue_exchange, self.parked_exchange] if work else []
        own = ([_queue_families(work)] if work else []) + [re.escape(n) for n in sorted(plain)]
        return Permissions(
            configure=_anchored(own, svc.declares),
            write=_anchored(own, [*svc.publishes_to, *machinery]),
            read=_anchored(own, bound),
        )

    # -- rendering ---------------------------------------------------------------------------

    def describe(self) -> str:
        """Human-readable listing, ending with the count of queues."""
        lines = [f"vhost {self.vhost}", "exchanges:"]
        lines += [
            f"  {e.name} ({e.type})" + "".join(f" {k}={v}" for k, v in sorted(e.arguments.items()))
            for e in self.all_exchanges()
        ]
        lines += [f"  {b.destination} <- {b.source}:{b.routing_key}" for b in self.exchange_bindings]
        for svc in self.services:
            lines.append(f"service {svc.name} publishes to: {', '.join(svc.publishes_to) or '-'}")
            for queue in self.declared_queues(svc.name):
                args = " ".join(f"{k}={v}" for k, v in sorted(queue.arguments.items()))
                binds = ", ".join(f"{b.exchange}:{b.routing_key}" for b in queue.bindings)
                lines.append(f"  [{queue.role}] {queue.name}  {args}  <- {binds}")
        lines.append(f"{len(self.declared_queues())} queues, {len(self.all_exchanges())} exchanges")
        return "\n".join(lines)


# Suffixes of the queues a work queue expands into (see WorkQueue.retry_queue / parked_queue).
_FAMILY_SUFFIX = r"(?:\.retry\.[0-9]+(?:ms|s|m)|\.parked)?"


def _queue_families(work_queues: Iterable[str]) -> str:
    """A regex matching each work queue and its retry and parking queues."""
    names = "|".join(re.escape(n) for n in sorted(set(work_queues)))
    return f"(?:{names}){_FAMILY_SUFFIX}"


def _anchored(patterns: list[str], names: Iterable[str]) -> str:
    parts = patterns + [re.escape(n) for n in sorted(set(names))]
    if not parts:
        return "^$"  # RabbitMQ's idiom for "nothing"
    return "^(?:" + "|".join(parts) + ")$"
