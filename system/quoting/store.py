"""Quoting's SQL (``<run dir>/quoting.db``, shared by the replicas). Every function takes the connection of
the transaction already open (the consumer's or a sweep's) and never commits.

A round's deadline is a column, not a timer: whichever replica sweeps first after it passed decides, and
the decision is a conditional ``UPDATE … WHERE status = 'collecting'``, so it happens once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aiosqlite
from pydantic import TypeAdapter

from system.domain.intake import DeliveryRequest
from system.domain.quoting import Quote, QuoteDeclined
from system.domain.retailers import RetailerRules
from system.messaging import outbox

from .rounds import Answer, Round, RoundStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS quote_rounds (
    delivery_id     TEXT PRIMARY KEY,
    order_reference TEXT NOT NULL,
    retailer_id     TEXT NOT NULL,
    request         TEXT NOT NULL,
    rules           TEXT NOT NULL,
    asked           TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      REAL NOT NULL,
    deadline_at     REAL NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 1,
    decided_at      REAL,
    outcome         TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quote_rounds_due ON quote_rounds (deadline_at) WHERE status = 'collecting';
CREATE TABLE IF NOT EXISTS quote_answers (
    delivery_id TEXT NOT NULL,
    courier     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    answer      TEXT NOT NULL,
    late        INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (delivery_id, courier)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS early_cancels (
    delivery_id TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL,
    received_at REAL NOT NULL
) WITHOUT ROWID;
"""

_ANSWER: TypeAdapter[Quote | QuoteDeclined] = TypeAdapter(Quote | QuoteDeclined)


add_once = outbox.add_once


async def insert_round(db: aiosqlite.Connection, r: Round, now: float) -> bool:
    """Store a new round; False if the delivery already has one (a replayed ``order.created``)."""
    cursor = await db.execute(
        "INSERT OR IGNORE INTO quote_rounds (delivery_id, order_reference, retailer_id, request, rules, asked,"
        " status, created_at, deadline_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            r.delivery_id,
            r.order_reference,
            r.retailer_id,
            r.request.model_dump_json(),
            r.rules.model_dump_json(),
            json.dumps(list(r.asked)),
            r.status.value,
            now,
            r.deadline_at,
        ),
    )
    return cursor.rowcount == 1


async def get_round(db: aiosqlite.Connection, delivery_id: str) -> Round | None:
    """The round of ``delivery_id``, if any."""
    cursor = await db.execute(
        "SELECT delivery_id, order_reference, retailer_id, request, rules, asked, deadline_at, status, attempt"
        " FROM quote_rounds WHERE delivery_id = ?",
        (delivery_id,),
    )
    row = await cursor.fetchone()
    await cursor.close()
    if row is None:
        return None
    return Round(
        delivery_id=row[0],
        order_reference=row[1],
        retailer_id=row[2],
        request=DeliveryRequest.model_validate_json(row[3]),
        rules=RetailerRules.model_validate_json(row[4]),
        asked=tuple(json.loads(row[5])),
        deadline_at=float(row[6]),
        status=RoundStatus(row[7]),
        attempt=int(row[8]),
    )


async def record_answer(
    db: aiosqlite.Connection, delivery_id: str, message_id: str, answer: Answer, *, late: bool, now: float
) -> bool:
    """Record a courier's answer; False if that courier already answered this round (the first counts)."""
    cursor = await db.execute(
        "INSERT OR IGNORE INTO quote_answers (delivery_id, courier, message_id, kind, answer, late, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            delivery_id,
            answer.courier,
            message_id,
            "quote" if isinstance(answer, Quote) else "quote_declined",
            answer.model_dump_json(),
            int(late),
            now,
        ),
    )
    return cursor.rowcount == 1


async def answers_in_time(db: aiosqlite.Connection, delivery_id: str) -> list[Answer]:
    """The answers that arrived while the round was collecting (late ones are kept but never count)."""
    cursor = await db.execute(
        "SELECT answer FROM quote_answers WHERE delivery_id = ? AND late = 0 ORDER BY courier", (delivery_id,)
    )
    rows = await cursor.fetchall()
    await cursor.close()
    return [_ANSWER.validate_json(r[0]) for r in rows]


async def close_round(
    db: aiosqlite.Connection, delivery_id: str, status: RoundStatus, now: float, outcome: str
) -> bool:
    """Move a collecting round to ``status``; False if it was no longer collecting (decided elsewhere)."""
    cursor = await db.execute(
        "UPDATE quote_rounds SET status = ?, decided_at = ?, outcome = ?"
        " WHERE delivery_id = ? AND status = 'collecting'",
        (status.value, now, outcome, delivery_id),
    )
    return cursor.rowcount == 1


async def ask_again(db: aiosqlite.Connection, r: Round, deadline_at: float) -> bool:
    """Move a collecting round to its next attempt with a new deadline; False if it moved meanwhile."""
    cursor = await db.execute(
        "UPDATE quote_rounds SET attempt = ?, deadline_at = ?"
        " WHERE delivery_id = ? AND status = 'collecting' AND attempt = ?",
        (r.attempt + 1, deadline_at, r.delivery_id, r.attempt),
    )
    return cursor.rowcount == 1


async def due_rounds(db: aiosqlite.Connection, now: float, limit: int) -> list[str]:
    """Collecting rounds whose deadline passed, oldest deadline first."""
    cursor = await db.execute(
        "SELECT delivery_id FROM quote_rounds WHERE status = 'collecting' AND deadline_at <= ?"
        " ORDER BY deadline_at LIMIT ?",
        (now, limit),
    )
    rows = await cursor.fetchall()
    await cursor.close()
    return [r[0] for r in rows]


async def remember_cancel(db: aiosqlite.Connection, delivery_id: str, message_id: str, now: float) -> None:
    """A cancel for a delivery quoting has not seen yet: its ``order.created`` will start no round."""
    await db.execute(
        "INSERT OR IGNORE INTO early_cancels (delivery_id, message_id, received_at) VALUES (?, ?, ?)",
        (delivery_id, message_id, now),
    )


async def cancelled_early(db: aiosqlite.Connection, delivery_id: str) -> bool:
    """Whether a cancel arrived before the delivery's ``order.created``."""
    cursor = await db.execute("SELECT 1 FROM early_cancels WHERE delivery_id = ?", (delivery_id,))
    row = await cursor.fetchone()
    await cursor.close()
    return row is not None


def utc(at: float) -> datetime:
    """Unix time as an aware UTC datetime."""
    return datetime.fromtimestamp(at, UTC)
