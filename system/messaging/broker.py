"""What the platform's declarations say differently to each RabbitMQ line it may meet.

The platform runs on whatever broker it is given (RabbitMQ 3.10 or 4.x: ``rig/cluster/versions.py`` has
the table, ``docs/BROKERS.md`` the differences and their tests). It cannot import the rig, and does not
need to: the broker names its own version in the AMQP handshake (``Connection.Start``'s server
properties), so the declaring code asks the connection it declares on.

One difference matters to declarations: quorum queues get a default delivery limit of 20 in 4.x, after
which a message with no dead-letter exchange is dropped (3.x: no limit unless one is set). The topology
states a limit for every queue (:data:`UNLIMITED_DELIVERY_LIMIT` for parking lots and retry tiers, so a
parking lot looked at 20 times by ``drill parked list`` keeps its messages); 4.x reads -1 as "no limit".
3.10 accepts -1 but reads it as a limit already reached (measured here: the message is dropped at its
first return), and has no limit without the argument, so :func:`for_broker` leaves it out there.

>>> for_broker({"x-queue-type": "quorum", "x-delivery-limit": -1}, "3.10.8")
{'x-queue-type': 'quorum'}
>>> for_broker({"x-queue-type": "quorum", "x-delivery-limit": -1}, "4.0.5")
{'x-queue-type': 'quorum', 'x-delivery-limit': -1}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aio_pika.abc import AbstractConnection

#: ``x-delivery-limit`` meaning "never drop or dead-letter for redeliveries" (RabbitMQ 4.x's spelling).
UNLIMITED_DELIVERY_LIMIT = -1
#: The first major version whose quorum queues have a default delivery limit (and accept -1).
DEFAULT_LIMIT_SINCE = 4


def major(version: str) -> int | None:
    """``4`` of ``"4.0.5"``; None when the broker did not say (or said something else)."""
    head = version.strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


def for_broker(arguments: Mapping[str, Any], version: str) -> dict[str, Any]:
    """Queue arguments as the broker of ``version`` must read them (see the module's docstring). An
    unknown version gets the arguments as they are (the modern spelling)."""
    out = dict(arguments)
    limit = out.get("x-delivery-limit")
    line = major(version)
    if isinstance(limit, int) and limit < 0 and line is not None and line < DEFAULT_LIMIT_SINCE:
        del out["x-delivery-limit"]
    return out


def server_version(connection: AbstractConnection) -> str:
    """The version the broker announced on ``connection`` ('' when it did not)."""
    transport = getattr(connection, "transport", None)
    underlay = getattr(transport, "connection", None)
    props = getattr(underlay, "server_properties", None) or {}
    value = props.get("version", "")
    return value.decode() if isinstance(value, bytes) else str(value)
