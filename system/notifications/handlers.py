"""Decoder and handler of ``notifications.state-changes`` (tracking's StateChanged messages).

All validation happens in the decoder: a decoder that raises parks the message at once with the
reason (``notifications.state-changes.parked``), whereas a handler that raises goes through the retry
tiers first — pointless for a body that will never parse.
"""

from __future__ import annotations

import json
import time

import aiosqlite

from system.logs import get_logger
from system.messaging import InboundMessage, MalformedMessage
from system.messaging.consumer import parse_or_park
from system.platform.contracts import StateChanged

from . import store
from .decide import owed

log = get_logger(__name__)


def decode_state_changed(body: bytes) -> StateChanged:
    """The StateChanged in ``body``; :class:`MalformedMessage` with the reason otherwise."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedMessage(f"body is not a JSON object but {type(doc).__name__}")
    return parse_or_park(StateChanged.model_validate, doc, "a StateChanged")


async def record_owed(db: aiosqlite.Connection, change: StateChanged, message_id: str) -> int:
    """Store what ``change`` owes (pending rows) in the caller's transaction; returns how many are new."""
    notifications = owed(change)
    added = await store.add_owed(db, notifications, message_id, time.time())
    log.info(
        "state change planned",
        extra={
            "message_id": message_id,
            "delivery_id": change.delivery_id,
            "state": change.state.value,
            "owed": len(notifications),
            "new": added,
        },
    )
    return added


async def handle_state_changed(db: aiosqlite.Connection, message: InboundMessage[StateChanged]) -> None:
    """Inside the consumer's transaction (which also records the message in the inbox): the owed
    notifications become pending rows; a state change seen again adds nothing (dedup key)."""
    await record_owed(db, message.payload, message.message_id)
