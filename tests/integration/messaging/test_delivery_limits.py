"""Parking lots never hit RabbitMQ 4.x's default delivery limit (20), on whichever broker the session runs.

A parked message looked at by ``drill parked list`` is returned to its queue (a redelivery): 25 looks
must leave it there. The topology states "no limit" for parking lots; :mod:`system.messaging.broker`
renders it for the broker the declaration talks to (4.x: -1; 3.x: left out, since 3.10 reads -1 as a
limit already reached and drops the message at its first return).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from rig.cluster import Cluster
from system.messaging.broker import major

pytestmark = pytest.mark.integration


async def test_a_parked_message_outlives_more_returns_than_4x_default_limit(
    cluster: Cluster,
    parking_lot_looks: Callable[[Cluster, str], Awaitable[tuple[str, dict[str, object], int]]],
) -> None:
    version, args, left = await parking_lot_looks(cluster, "dlimit")
    assert left == 1, f"RabbitMQ {version}: the parked message is gone after 25 returns"
    line = major(version)
    assert line is not None
    assert args.get("x-delivery-limit") == (-1 if line >= 4 else None), args
