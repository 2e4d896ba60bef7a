"""Intake channels: the wire contract of docs/intake-api.md, encoded (REST, Shopify, ePOS)."""

from simulator.channels.base import ChannelEncoder, WireRequest, hmac_b64
from simulator.channels.encoders import Encoders

__all__ = ["ChannelEncoder", "Encoders", "WireRequest", "hmac_b64"]
