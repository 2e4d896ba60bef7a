"""The gateway's decoders (one per dialect queue) and its handler.

All the checking happens in the decoder: a message the dialect adapter cannot translate — bad JSON, a
wrong shape, a status name the dialect does not define, another dialect's message, no delivery id —
raises :class:`~system.messaging.MalformedMessage` there and the consumer parks it at once in
``gateway.<dialect>.parked`` with the reason (it is never guessed, and retrying cannot help). The
handler only writes the translated message to the outbox.
"""

from __future__ import annotations

import aiosqlite

from system.domain.common import Dialect
from system.domain.dialects import CourierMessageError
from system.logs import get_logger
from system.messaging.abc import Decoder
from system.messaging.consumer import MalformedMessage
from system.messaging.envelope import InboundMessage
from system.platform.contracts import LifecycleEvent, LocationPing, lifecycle_message

from .decide import parse_courier_message, translate
from .store import add_once

log = get_logger(__name__)

Canonical = LifecycleEvent | LocationPing


def decoder_for(dialect: Dialect) -> Decoder[Canonical]:
    """The decoder of ``gateway.<dialect>``: courier message bytes → the canonical message."""

    def decode(body: bytes) -> Canonical:
        try:
            return translate(parse_courier_message(body, dialect))
        except CourierMessageError as exc:
            raise MalformedMessage(f"{dialect} adapter: {exc.reason}") from None

    return decode


async def handle(db: aiosqlite.Connection, message: InboundMessage[Canonical]) -> None:
    """Outbox the canonical message for the ``lifecycle`` exchange (tracking's shards)."""
    out = lifecycle_message(message.payload)
    added = await add_once(db, out)
    log.info(
        "courier message translated" if added else "courier message already translated",
        extra={
            "message_id": out.message_id,
            "courier_message_id": message.message_id,
            "delivery_id": message.payload.delivery_id,
            "routing_key": out.routing_key,
        },
    )
