"""Interfaces of the messaging core (the concrete classes live one per module)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import aiosqlite

from .envelope import InboundMessage, OutgoingMessage

T = TypeVar("T")

Handler = Callable[[aiosqlite.Connection, InboundMessage[T]], Awaitable[None]]
"""A consumer's business logic: writes its effects with the given connection, inside the open
transaction that also records the message in the inbox. It must not commit; raising rolls back its
writes and sends the message to the next retry tier."""

Decoder = Callable[[bytes], T]
"""Turns a body into the handler's payload; raising means malformed (parked at once)."""


class Publisher(Protocol):
    """Something that publishes a message and returns once the broker confirmed it."""

    async def publish(self, message: OutgoingMessage) -> None:
        """Publish ``message``; raise ``UnroutableMessage`` if the broker returned it."""

    async def close(self) -> None:
        """Release the connection."""
