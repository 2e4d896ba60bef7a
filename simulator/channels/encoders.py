"""The three channel encoders of a run, sharing its clock: the simulator picks one per order."""

from __future__ import annotations

from simulator.channels.base import ChannelEncoder
from simulator.channels.epos import EposEncoder
from simulator.channels.rest import RestEncoder
from simulator.channels.shopify import ShopifyEncoder
from simulator.clock import SimClock


class Encoders:
    """The three channel encoders sharing one clock; ``for_channel`` picks one."""

    def __init__(self, clock: SimClock) -> None:
        self.by_name: dict[str, ChannelEncoder] = {
            "rest": RestEncoder(clock),
            "shopify": ShopifyEncoder(clock),
            "epos": EposEncoder(clock),
        }

    def for_channel(self, channel: str) -> ChannelEncoder:
        """The encoder of ``channel``."""
        return self.by_name[channel]
