"""The notifications service's SQL: one row per owed notification, claimed by a replica to be sent.

Row life cycle: ``pending`` → ``sent`` (the provider said 2xx) or ``failed`` (a permanent refusal, with
the reason). A retryable failure leaves it ``pending`` with a later ``next_attempt_at``. A replica
*claims* due rows (``claimed_by``/``claimed_until``) before sending them, so two replicas never post
the same row at the same time; a claim that outlives its replica (SIGKILL) simply expires and the row
is claimed again — and re-sent with the same ``notification_id``. ``attempts`` counts claims, so a
``sent`` row with ``attempts > 1`` was posted more than once (a re-send, never a second notification).

Every function takes the connection of a transaction the caller holds (the consumer's, or the
sweep's ``runtime.transaction()``) and never commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import aiosqlite

from system.domain.notifications import Notification

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    notification_id   TEXT PRIMARY KEY,
    delivery_id       TEXT NOT NULL,
    state             TEXT NOT NULL,
    audience          TEXT NOT NULL,
    channel           TEXT NOT NULL,
    order_reference   TEXT NOT NULL,
    recipient         TEXT NOT NULL,
    body              TEXT NOT NULL,
    source_message_id TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   REAL NOT NULL DEFAULT 0,
    claimed_by        TEXT,
    claimed_until     REAL,
    last_error        TEXT,
    provider_answer   TEXT,
    created_at        REAL NOT NULL,
    sent_at           REAL,
    UNIQUE (delivery_id, state, audience, channel)
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
"""


@dataclass(frozen=True)
class Claimed:
    """A row this replica may send now: its wire body and how many times it has been claimed."""

    notification_id: str
    body: dict[str, str]
    attempts: int


async def add_owed(
    db: aiosqlite.Connection, owed: Iterable[Notification], source_message_id: str, now: float
) -> int:
    """Store each notification as ``pending`` unless its dedup key is already stored; returns how many
    were new. ``INSERT OR IGNORE`` on the dedup key is what makes a state change notify once."""
    added = 0
    for n in owed:
        cursor = await db.execute(
            "INSERT OR IGNORE INTO notifications (notification_id, delivery_id, state, audience, channel,"
            " order_reference, recipient, body, source_message_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                n.notification_id,
                n.delivery_id,
                n.state.value,
                n.audience,
                n.channel,
                n.order_reference,
                n.to,
                json.dumps(n.wire(), separators=(",", ":")),
                source_message_id,
                now,
            ),
        )
        added += max(cursor.rowcount, 0)
        await cursor.close()
    return added


async def any_due(db: aiosqlite.Connection, now: float) -> bool:
    """Whether :func:`claim_due` would claim a row now (a read: no write lock for an idle sender)."""
    cursor = await db.execute(
        "SELECT 1 FROM notifications WHERE status = 'pending' AND next_attempt_at <= ?"
        " AND (claimed_until IS NULL OR claimed_until <= ?) LIMIT 1",
        (now, now),
    )
    row = await cursor.fetchone()
    await cursor.close()
    return row is not None


async def claim_due(
    db: aiosqlite.Connection, owner: str, now: float, claim_s: float, limit: int
) -> list[Claimed]:
    """Claim up to ``limit`` due rows for ``owner`` until ``now + claim_s``: pending, past their
    ``next_attempt_at``, and unclaimed or with an expired claim. One statement, so atomic."""
    cursor = await db.execute(
        "UPDATE notifications SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1"
        " WHERE notification_id IN ("
        "  SELECT notification_id FROM notifications"
        "  WHERE status = 'pending' AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?)"
        "  ORDER BY created_at, notification_id LIMIT ?)"
        " RETURNING notification_id, body, attempts",
        (owner, now + claim_s, now, now, limit),
    )
    rows = await cursor.fetchall()
    await cursor.close()
    return [Claimed(r[0], json.loads(r[1]), int(r[2])) for r in rows]


async def mark_sent(db: aiosqlite.Connection, notification_id: str, now: float, answer: str) -> bool:
    """The provider accepted it. Whoever holds the claim, a pending row is now sent (a late answer to
    an expired claim is still a delivery); False if it was already final."""
    cursor = await db.execute(
        "UPDATE notifications SET status = 'sent', sent_at = ?, provider_answer = ?, claimed_by = NULL,"
        " claimed_until = NULL WHERE notification_id = ? AND status = 'pending'",
        (now, answer[:500], notification_id),
    )
    changed = cursor.rowcount == 1
    await cursor.close()
    return changed


async def mark_retry(
    db: aiosqlite.Connection, notification_id: str, owner: str, next_attempt_at: float, error: str
) -> bool:
    """A retryable failure: due again at ``next_attempt_at``. Only the claim holder reschedules (if the
    claim expired and another replica took the row, that replica decides)."""
    cursor = await db.execute(
        "UPDATE notifications SET next_attempt_at = ?, last_error = ?, claimed_by = NULL, claimed_until = NULL"
        " WHERE notification_id = ? AND status = 'pending' AND claimed_by = ?",
        (next_attempt_at, error[:500], notification_id, owner),
    )
    changed = cursor.rowcount == 1
    await cursor.close()
    return changed


async def mark_failed(db: aiosqlite.Connection, notification_id: str, reason: str) -> bool:
    """A permanent refusal: the row is ``failed`` with ``reason`` and is never sent again."""
    cursor = await db.execute(
        "UPDATE notifications SET status = 'failed', last_error = ?, claimed_by = NULL, claimed_until = NULL"
        " WHERE notification_id = ? AND status = 'pending'",
        (reason[:500], notification_id),
    )
    changed = cursor.rowcount == 1
    await cursor.close()
    return changed


async def status_counts(db: aiosqlite.Connection) -> dict[str, int]:
    """Rows per status (``pending``, ``sent``, ``failed``; zero ones included)."""
    cursor = await db.execute("SELECT status, COUNT(*) FROM notifications GROUP BY status")
    rows = await cursor.fetchall()
    await cursor.close()
    counts = {"pending": 0, "sent": 0, "failed": 0}
    counts.update({str(r[0]): int(r[1]) for r in rows})
    return counts
