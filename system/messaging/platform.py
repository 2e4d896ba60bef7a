"""The delivery platform's topology, described once with :mod:`.topology`.

Services add their queues here; ``drill topology`` prints it and services declare their part at start.
"""

from __future__ import annotations

from .topology import Binding, Exchange, Service, Topology, WorkQueue

ORDERS = "orders"
QUOTES = "quotes"
BOOKINGS = "bookings"
TRACKING = "tracking"
NOTIFICATIONS = "notifications"


def _q(name: str, *bindings: tuple[str, str]) -> WorkQueue:
    return WorkQueue(name=name, bindings=tuple(Binding(ex, key) for ex, key in bindings))


def platform_topology(vhost: str = "/") -> Topology:
    """The whole platform: exchanges per domain, one work queue per (service, purpose)."""
    return Topology(
        vhost=vhost,
        exchanges=tuple(Exchange(n, "topic") for n in (ORDERS, QUOTES, BOOKINGS, TRACKING, NOTIFICATIONS)),
        services=(
            Service("intake", publishes_to=(ORDERS,)),
            Service(
                "quoting",
                consumes=(
                    _q("quoting.orders", (ORDERS, "order.created"), (ORDERS, "order.updated")),
                    _q("quoting.courier-quotes", (QUOTES, "quote.received.*")),
                ),
                publishes_to=(QUOTES,),
            ),
            Service(
                "booking",
                consumes=(
                    _q("booking.quotes", (QUOTES, "quote.selected")),
                    _q("booking.courier-replies", (BOOKINGS, "booking.reply.*")),
                ),
                publishes_to=(BOOKINGS, ORDERS),
            ),
            Service(
                "tracking",
                consumes=(
                    _q("tracking.bookings", (BOOKINGS, "booking.confirmed")),
                    _q("tracking.courier-status", (TRACKING, "courier.status.*")),
                    _q("tracking.locations", (TRACKING, "driver.location")),
                ),
                publishes_to=(TRACKING, ORDERS),
            ),
            Service(
                "notifications",
                consumes=(
                    _q("notifications.state-changes", (ORDERS, "order.state.*")),
                    _q("notifications.eta", (TRACKING, "eta.updated")),
                ),
                publishes_to=(NOTIFICATIONS,),
            ),
        ),
    )
