"""The transactional outbox: messages are rows written in the same SQLite transaction as the state change.

Row life cycle (the pure part is :func:`transition`): ``pending`` → ``sent`` once the broker confirmed
the publish. A returned (unroutable) publish stays ``pending`` with a growing backoff. Nothing else
moves a row, so a crash at any point leaves it ``pending`` and the relay publishes it again — with the
same message id, which consumers deduplicate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import aiosqlite

from .db import begin_immediate
from .envelope import OutgoingMessage

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      TEXT NOT NULL UNIQUE,
    exchange        TEXT NOT NULL,
    routing_key     TEXT NOT NULL,
    body            BLOB NOT NULL,
    headers         TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    message_type    TEXT,
    expiration_ms   INTEGER,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    sent_at         REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE status = 'pending';
"""


class OutboxStatus(StrEnum):
    """Where an outbox row is in its life."""

    PENDING = "pending"
    SENT = "sent"


@dataclass(frozen=True)
class RowState:
    """The mutable part of an outbox row."""

    status: OutboxStatus = OutboxStatus.PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0


@dataclass(frozen=True)
class Confirmed:
    """The broker confirmed a publish of the row's message."""

    at: float


@dataclass(frozen=True)
class Returned:
    """The broker returned the message (unroutable); try again later."""

    at: float
    base_backoff_s: float
    error: str = "unroutable"


RelayEvent = Confirmed | Returned

MAX_BACKOFF_S = 300.0


def transition(state: RowState, event: RelayEvent) -> RowState:
    """The row's state after ``event``. ``sent`` is final: a late return of an old copy changes nothing."""
    if state.status is OutboxStatus.SENT:
        return state
    if isinstance(event, Confirmed):
        return replace(state, status=OutboxStatus.SENT)
    delay = min(event.base_backoff_s * 2 ** min(state.attempts, 16), MAX_BACKOFF_S)
    return replace(state, attempts=state.attempts + 1, next_attempt_at=event.at + delay)


def eligible(state: RowState, now: float) -> bool:
    """Whether the relay should publish the row now."""
    return state.status is OutboxStatus.PENDING and state.next_attempt_at <= now


@dataclass(frozen=True)
class OutboxRow:
    """A pending row as the relay reads it."""

    id: int
    message: OutgoingMessage
    state: RowState


async def ensure_schema(db: aiosqlite.Connection) -> None:
    """Create the outbox table if missing (idempotent)."""
    await db.executescript(SCHEMA)


async def add(db: aiosqlite.Connection, message: OutgoingMessage) -> None:
    """Insert ``message`` inside the caller's open transaction (commits with the state change)."""
    await db.execute(
        "INSERT INTO outbox (message_id, exchange, routing_key, body, headers, content_type, message_type,"
        " expiration_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message.message_id,
            message.exchange,
            message.routing_key,
            message.body,
            json.dumps(dict(message.headers)),
            message.content_type,
            message.message_type,
            message.expiration_ms,
            time.time(),
        ),
    )


async def add_once(db: aiosqlite.Connection, message: OutgoingMessage) -> bool:
    """:func:`add` unless a row with the message's id exists (True: added).

    Services derive message ids from what a message is about, so a handler that runs again (a
    republished input under a new AMQP id, a benign repeat) would otherwise fail on the UNIQUE id.
    """
    cursor = await db.execute("SELECT 1 FROM outbox WHERE message_id = ?", (message.message_id,))
    exists = await cursor.fetchone() is not None
    await cursor.close()
    if exists:
        return False
    await add(db, message)
    return True


async def fetch_pending(
    db: aiosqlite.Connection, *, after_id: int, limit: int, now: float
) -> list[OutboxRow]:
    """Pending rows due now with ``id > after_id``, oldest first."""
    cursor = await db.execute(
        "SELECT id, message_id, exchange, routing_key, body, headers, content_type, message_type, attempts,"
        " next_attempt_at, expiration_ms FROM outbox WHERE status = 'pending' AND id > ? AND next_attempt_at <= ?"
        " ORDER BY id LIMIT ?",
        (after_id, now, limit),
    )
    rows = await cursor.fetchall()
    await cursor.close()
    return [
        OutboxRow(
            id=r[0],
            message=OutgoingMessage(
                exchange=r[2],
                routing_key=r[3],
                body=bytes(r[4]),
                message_id=r[1],
                headers=json.loads(r[5]),
                content_type=r[6],
                message_type=r[7],
                expiration_ms=r[10],
            ),
            state=RowState(OutboxStatus.PENDING, r[8], r[9]),
        )
        for r in rows
    ]


async def mark_sent(db: aiosqlite.Connection, ids: Sequence[int], at: float) -> None:
    """Record confirmed rows as sent (one transaction)."""
    if not ids:
        return
    await begin_immediate(db)
    try:
        await db.executemany(
            "UPDATE outbox SET status = 'sent', sent_at = ? WHERE id = ? AND status = 'pending'",
            [(at, i) for i in ids],
        )
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")


async def save_states(db: aiosqlite.Connection, rows: Iterable[tuple[int, RowState, str]]) -> None:
    """Write back (id, new state, last error) of rows that are still pending."""
    await db.executemany(
        "UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?"
        " WHERE id = ? AND status = 'pending'",
        [(s.status.value, s.attempts, s.next_attempt_at, err, i) for i, s, err in rows],
    )


async def count_pending(db: aiosqlite.Connection) -> int:
    """Rows not yet confirmed."""
    cursor = await db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
    row = await cursor.fetchone()
    await cursor.close()
    return int(row[0]) if row else 0
