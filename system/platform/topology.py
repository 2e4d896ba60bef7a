"""The delivery platform's messaging topology, described once (see docs/ARCHITECTURE.md for the picture).

Exchanges and who publishes to them:

==================  ====================  =================================================================
exchange            type                  publishers → routing keys
==================  ====================  =================================================================
``orders``          topic                 intake relay → ``order.created``, ``order.updated`` (cancels too)
``quotes``          topic                 quoting → ``delivery.quoted`` (the ranked options);
                                          dispatch → ``delivery.requote`` (ask the couriers again)
``lifecycle``       x-consistent-hash     quoting, dispatch, gateway → lifecycle events; also bound to
                    (hash of header       ``orders`` (``order.*``), so tracking sees creations and cancels.
                    ``x-delivery-id``)    One delivery always lands on the same tracking shard: its order
                                          is kept (each shard queue has a single active consumer).
``tracking``        topic                 tracking → ``delivery.state.<state>`` (accepted state changes)
``courier.requests`` topic                quoting, dispatch → ``<courier>.quote_request|booking_request|
                                          cancel_request`` (docs/intake-api.md §3)
``courier.events``  topic                 couriers → ``<courier>.quote|quote_declined|booking_*|cancel_*|
                                          status|location``
==================  ====================  =================================================================

With the default marketplace (36 couriers) and 4 tracking shards this is 14 work queues (each with three
retry tiers and a parking lot: 70 queues) plus one request queue per courier: 106 quorum queues.

Every message that goes to ``lifecycle`` carries the header :data:`DELIVERY_HEADER`: without it the
consistent-hash exchange cannot route it, and a ``mandatory`` publish comes back returned (loud), never
silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from system.domain.common import Dialect
from system.domain.marketplace import Marketplace, load_marketplace
from system.messaging.topology import (
    Binding,
    Exchange,
    ExchangeBinding,
    PlainQueue,
    RetryTier,
    Service,
    Topology,
    WorkQueue,
)

VHOST = "drill"

ORDERS = "orders"
QUOTES = "quotes"
LIFECYCLE = "lifecycle"
TRACKING = "tracking"
COURIER_REQUESTS = "courier.requests"
COURIER_EVENTS = "courier.events"

#: The header the ``lifecycle`` exchange hashes on (set by intake on order messages too).
DELIVERY_HEADER = "x-delivery-id"

ORDER_CREATED = "order.created"
ORDER_UPDATED = "order.updated"
DELIVERY_QUOTED = "delivery.quoted"
DELIVERY_REQUOTE = "delivery.requote"
STATE_PREFIX = "delivery.state."

# Service names: also their RabbitMQ user names and the supervisor's service names.
INTAKE = "intake"
QUOTING = "quoting"
DISPATCH = "dispatch"
GATEWAY = "gateway"
TRACKING_SERVICE = "tracking"
NOTIFICATIONS = "notifications"
COURIERS = "couriers"  # the outside party (the simulator plays it)

SERVICES = (INTAKE, QUOTING, DISPATCH, GATEWAY, TRACKING_SERVICE, NOTIFICATIONS)
DIALECTS: tuple[Dialect, ...] = ("uber", "doordash", "stuart")
DEFAULT_SHARDS = 4

# Queue names.
INTAKE_DELIVERIES = "intake.deliveries"
QUOTING_ORDERS = "quoting.orders"
QUOTING_ANSWERS = "quoting.answers"
DISPATCH_QUOTES = "dispatch.quotes"
DISPATCH_ORDERS = "dispatch.orders"
DISPATCH_ANSWERS = "dispatch.answers"
NOTIFICATIONS_STATES = "notifications.state-changes"


def gateway_queue(dialect: str) -> str:
    """The gateway adapter queue of one courier dialect."""
    return f"gateway.{dialect}"


def tracking_shard(index: int) -> str:
    """The tracking shard queue ``index``."""
    return f"tracking.shard.{index}"


def courier_request_queue(courier: str) -> str:
    """A courier company's request queue (the contract of docs/intake-api.md §3.1)."""
    return f"courier.{courier}.requests"


# Short tiers: a lifecycle event that arrives before the booking it depends on waits 1 s, then 5 s.
_TIERS = (RetryTier(1_000), RetryTier(5_000), RetryTier(25_000))


def _q(name: str, *bindings: tuple[str, str], sac: bool = False) -> WorkQueue:
    return WorkQueue(
        name=name,
        bindings=tuple(Binding(ex, key) for ex, key in bindings),
        retry_tiers=_TIERS,
        single_active_consumer=sac,
    )


def _bindings(couriers: Iterable[str], *kinds: str) -> list[tuple[str, str]]:
    return [(COURIER_EVENTS, f"{c}.{k}") for c in couriers for k in kinds]


def platform_topology(
    vhost: str = VHOST, marketplace: Marketplace | None = None, shards: int = DEFAULT_SHARDS
) -> Topology:
    """The whole platform in ``vhost``: exchanges, every service's queues, the couriers' request queues."""
    market = marketplace if marketplace is not None else _default_market()
    couriers = [c.id for c in market.couriers]
    by_dialect = {d: [c.id for c in market.couriers if c.dialect == d] for d in DIALECTS}
    return Topology(
        vhost=vhost,
        exchanges=(
            Exchange(ORDERS, "topic"),
            Exchange(QUOTES, "topic"),
            Exchange(LIFECYCLE, "x-consistent-hash", arguments={"hash-header": DELIVERY_HEADER}),
            Exchange(TRACKING, "topic"),
            Exchange(COURIER_REQUESTS, "topic"),
            Exchange(COURIER_EVENTS, "topic"),
        ),
        exchange_bindings=(ExchangeBinding(ORDERS, LIFECYCLE, "order.*"),),
        services=(
            Service(
                INTAKE,
                consumes=(_q(INTAKE_DELIVERIES, (TRACKING, f"{STATE_PREFIX}*")),),
                publishes_to=(ORDERS,),
            ),
            Service(
                QUOTING,
                consumes=(
                    _q(
                        QUOTING_ORDERS,
                        (ORDERS, ORDER_CREATED),
                        (ORDERS, ORDER_UPDATED),
                        (QUOTES, DELIVERY_REQUOTE),
                    ),
                    _q(QUOTING_ANSWERS, *_bindings(couriers, "quote", "quote_declined")),
                ),
                publishes_to=(COURIER_REQUESTS, QUOTES, LIFECYCLE),
            ),
            Service(
                DISPATCH,
                consumes=(
                    _q(DISPATCH_QUOTES, (QUOTES, DELIVERY_QUOTED)),
                    _q(DISPATCH_ORDERS, (ORDERS, ORDER_UPDATED)),
                    _q(
                        DISPATCH_ANSWERS,
                        *_bindings(
                            couriers,
                            "booking_accepted",
                            "booking_rejected",
                            "cancel_accepted",
                            "cancel_rejected",
                        ),
                    ),
                ),
                publishes_to=(COURIER_REQUESTS, QUOTES, LIFECYCLE),
            ),
            Service(
                GATEWAY,
                consumes=tuple(
                    _q(gateway_queue(d), *_bindings(by_dialect[d], "status", "location"))
                    for d in DIALECTS
                    if by_dialect[d]
                ),
                publishes_to=(LIFECYCLE,),
            ),
            Service(
                TRACKING_SERVICE,
                consumes=tuple(_q(tracking_shard(i), (LIFECYCLE, "1"), sac=True) for i in range(shards)),
                publishes_to=(TRACKING,),
            ),
            Service(
                NOTIFICATIONS,
                consumes=(_q(NOTIFICATIONS_STATES, (TRACKING, f"{STATE_PREFIX}*")),),
            ),
            Service(
                COURIERS,
                owns=tuple(
                    PlainQueue(courier_request_queue(c), (Binding(COURIER_REQUESTS, f"{c}.#"),))
                    for c in couriers
                ),
                publishes_to=(COURIER_EVENTS,),
                declares=(COURIER_REQUESTS, COURIER_EVENTS),
            ),
        ),
    )


@cache
def _default_market() -> Marketplace:
    return load_marketplace()
