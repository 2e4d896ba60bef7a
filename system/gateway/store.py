"""The gateway's SQL: it keeps nothing of its own (stateless apart from the runtime's inbox and outbox
in ``gateway.db``), so its schema is empty and its one write is an outbox row."""

from __future__ import annotations

import aiosqlite

from system.messaging import outbox
from system.messaging.envelope import OutgoingMessage

SCHEMA = ""


async def add_once(db: aiosqlite.Connection, message: OutgoingMessage) -> bool:
    """Add ``message`` to the outbox in the open transaction unless a row with its id exists (True: added).

    The courier's message id is also the AMQP one the inbox deduplicates on, but a courier that
    republished a message under a new AMQP id must not make the UNIQUE outbox id fail the handler.
    """
    cursor = await db.execute("SELECT 1 FROM outbox WHERE message_id = ?", (message.message_id,))
    exists = await cursor.fetchone() is not None
    await cursor.close()
    if exists:
        return False
    await outbox.add(db, message)
    return True
