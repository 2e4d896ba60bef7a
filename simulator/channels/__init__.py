"""Intake channels: the wire contract of docs/intake-api.md, encoded (REST, Shopify, ePOS)."""

from simulator.channels.base import ChannelEncoder, Encoders, WireRequest, hmac_b64

__all__ = ["ChannelEncoder", "Encoders", "WireRequest", "hmac_b64"]
