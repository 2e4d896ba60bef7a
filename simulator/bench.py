"""``drill bench simulator``: how many orders per second generation alone sustains on one core.

Measures the whole per-order path short of the network: arrival time, order content, the channel's
payload (JSON encoding, HMAC-SHA256 signature for webhooks) for a mixed-channel world.

Example:
    >>> bench(0.2) > 0
    True
"""

from __future__ import annotations

import time

from simulator.channels.encoders import Encoders
from simulator.clock import SimClock
from simulator.config import ChannelMix, Scenario, WorldConfig
from simulator.orders import OrderGenerator


def bench(duration: float = 3.0, seed: int = 1) -> float:
    """Generate and encode orders for ``duration`` wall seconds; returns orders/s."""
    # A high nominal rate so arrival times do not matter; an equal channel mix so HMAC is on 2/3 of orders.
    scenario = Scenario(
        name="bench",
        arrivals={"rate": 1000.0, "curve": "daily"},  # type: ignore[arg-type]
        world=WorldConfig(retailers=30, channel_mix=ChannelMix(rest=1.0, shopify=1.0, epos=1.0)),
    )
    gen = OrderGenerator(scenario, seed)
    retailers = {r.id: r for r in gen.retailers}
    encoders = Encoders(SimClock(epoch=float(int(time.time()))))
    n = 0
    nbytes = 0
    start = time.perf_counter()
    end = start + duration
    for o in gen:
        for req in encoders.for_channel(o.channel).encode_order(o, retailers[o.retailer_id]):
            nbytes += len(req.body)
        n += 1
        if n % 256 == 0 and time.perf_counter() >= end:
            break
    return n / (time.perf_counter() - start)
