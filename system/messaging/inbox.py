"""The inbox: ids of processed messages, written in the handler's own transaction (exactly-once effects)."""

from __future__ import annotations

import time

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    message_id   TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    processed_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox_duplicates (
    message_id TEXT NOT NULL,
    queue      TEXT NOT NULL,
    seen_at    REAL NOT NULL
);
"""


async def ensure_schema(db: aiosqlite.Connection) -> None:
    """Create the inbox tables if missing (idempotent)."""
    await db.executescript(SCHEMA)


async def claim(db: aiosqlite.Connection, message_id: str, queue: str) -> bool:
    """Record ``message_id`` as processed in the open transaction; False if it already was.

    The insert commits or rolls back together with the handler's effects, so "processed" and
    "effects written" can never disagree, whatever crashes.
    """
    cursor = await db.execute(
        "INSERT OR IGNORE INTO inbox (message_id, queue, processed_at) VALUES (?, ?, ?)",
        (message_id, queue, time.time()),
    )
    fresh = cursor.rowcount == 1
    await cursor.close()
    if not fresh:
        # Audit trail of duplicate deliveries (redeliveries, republishes): cheap and useful to count.
        await db.execute(
            "INSERT INTO inbox_duplicates (message_id, queue, seen_at) VALUES (?, ?, ?)",
            (message_id, queue, time.time()),
        )
    return fresh


async def processed(db: aiosqlite.Connection, message_id: str) -> bool:
    """Whether ``message_id`` was processed."""
    cursor = await db.execute("SELECT 1 FROM inbox WHERE message_id = ?", (message_id,))
    row = await cursor.fetchone()
    await cursor.close()
    return row is not None


async def already_processed(db: aiosqlite.Connection, message_ids: list[str]) -> set[str]:
    """Which of ``message_ids`` were processed (one query per 500 ids)."""
    found: set[str] = set()
    for i in range(0, len(message_ids), 500):
        chunk = message_ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        cursor = await db.execute(f"SELECT message_id FROM inbox WHERE message_id IN ({marks})", chunk)
        found.update(str(r[0]) for r in await cursor.fetchall())
        await cursor.close()
    return found


async def record(db: aiosqlite.Connection, fresh: list[str], duplicates: list[str], queue: str) -> None:
    """Record a batch in the open transaction: ``fresh`` as processed, ``duplicates`` in the audit trail.

    The caller guarantees ``fresh`` holds ids not processed yet (checked in the same transaction).
    """
    now = time.time()
    if fresh:
        await db.executemany(
            "INSERT INTO inbox (message_id, queue, processed_at) VALUES (?, ?, ?)",
            [(m, queue, now) for m in fresh],
        )
    if duplicates:
        await db.executemany(
            "INSERT INTO inbox_duplicates (message_id, queue, seen_at) VALUES (?, ?, ?)",
            [(m, queue, now) for m in duplicates],
        )
