"""Tracking's SQL (``tracking.db``, shared by the replicas): every function runs inside the caller's open
transaction (the consumer's, with the inbox insert) and never commits.

Writes that follow a decision are conditional on what the decision read (``WHERE state = ? AND seq =
?``): a replica that raced another — impossible inside one ``BEGIN IMMEDIATE``, but cheap to guard —
fails its handler (retry) instead of overwriting.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import aiosqlite

from system.domain.common import LatLon
from system.domain.lifecycle import State
from system.messaging import outbox
from system.platform.contracts import Contact, Driver

from .decide import TrackedDelivery

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id              TEXT PRIMARY KEY,
    order_reference TEXT NOT NULL,
    retailer_id     TEXT,
    state           TEXT NOT NULL,
    seq             INTEGER NOT NULL DEFAULT 0,
    courier         TEXT,
    courier_job_id  TEXT,
    driver_id       TEXT,
    driver_vehicle  TEXT,
    eta             TEXT,
    recipient_name  TEXT,
    recipient_phone TEXT,
    recipient_email TEXT,
    store_name      TEXT,
    order_version   INTEGER,
    location_lat    REAL,
    location_lon    REAL,
    location_seq    INTEGER,
    location_at     TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
-- One row per state a delivery entered, in order.
CREATE TABLE IF NOT EXISTS history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL,
    state       TEXT NOT NULL,
    previous    TEXT,
    at          TEXT NOT NULL,
    seq         INTEGER,
    source      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_delivery ON history (delivery_id, id);
-- Every transition (or ping) tracking refused: illegal, out of order, terminal, foreign job.
CREATE TABLE IF NOT EXISTS rejected (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id    TEXT NOT NULL,
    event          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    detail         TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    state          TEXT NOT NULL,
    seq            INTEGER,
    source         TEXT,
    courier_job_id TEXT,
    at             TEXT NOT NULL,
    recorded_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rejected_delivery ON rejected (delivery_id, id);
"""

_COLUMNS = (
    "id, order_reference, state, seq, retailer_id, courier, courier_job_id, driver_id, driver_vehicle, eta,"
    " recipient_name, recipient_phone, recipient_email, store_name, location_lat, location_lon, location_seq"
)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _tracked(row: Any) -> TrackedDelivery:
    return TrackedDelivery(
        id=row[0],
        order_reference=row[1],
        state=State(row[2]),
        seq=int(row[3]),
        retailer_id=row[4],
        courier=row[5],
        courier_job_id=row[6],
        driver=Driver(id=row[7], vehicle=row[8]) if row[7] is not None else None,
        eta=datetime.fromisoformat(row[9]) if row[9] is not None else None,
        recipient=Contact(name=row[10], phone=row[11], email=row[12]),
        store_name=row[13],
        location=LatLon(lat=row[14], lon=row[15]) if row[14] is not None else None,
        location_seq=row[16],
    )


async def get(db: aiosqlite.Connection, delivery_id: str) -> TrackedDelivery | None:
    """The tracked delivery ``delivery_id``, or None."""
    cursor = await db.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,))
    row = await cursor.fetchone()
    await cursor.close()
    return _tracked(row) if row is not None else None


async def create(db: aiosqlite.Connection, d: TrackedDelivery) -> bool:
    """Insert ``d`` (False: the delivery already exists, nothing written)."""
    now = time.time()
    cursor = await db.execute(
        "INSERT OR IGNORE INTO deliveries (id, order_reference, retailer_id, state, seq, recipient_name,"
        " recipient_phone, recipient_email, store_name, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            d.id,
            d.order_reference,
            d.retailer_id,
            d.state.value,
            d.seq,
            d.recipient.name,
            d.recipient.phone,
            d.recipient.email,
            d.store_name,
            now,
            now,
        ),
    )
    created = cursor.rowcount == 1
    await cursor.close()
    return created


async def save(db: aiosqlite.Connection, before: TrackedDelivery, after: TrackedDelivery) -> None:
    """Write ``after`` over ``before`` (state, seq, courier, job, driver, ETA), only if the row is still
    ``before``; raises :class:`StaleDelivery` otherwise."""
    cursor = await db.execute(
        "UPDATE deliveries SET state = ?, seq = ?, courier = ?, courier_job_id = ?, driver_id = ?,"
        " driver_vehicle = ?, eta = ?, updated_at = ? WHERE id = ? AND state = ? AND seq = ?",
        (
            after.state.value,
            after.seq,
            after.courier,
            after.courier_job_id,
            after.driver.id if after.driver else None,
            after.driver.vehicle if after.driver else None,
            _iso(after.eta),
            time.time(),
            before.id,
            before.state.value,
            before.seq,
        ),
    )
    changed = cursor.rowcount
    await cursor.close()
    if changed != 1:
        raise StaleDelivery(f"delivery {before.id} is no longer {before.state}/{before.seq}")


class StaleDelivery(Exception):
    """The row changed between the decision's read and its write (the handler retries)."""


async def add_history(
    db: aiosqlite.Connection,
    delivery_id: str,
    state: State,
    previous: State | None,
    *,
    at: datetime,
    seq: int | None,
    source: str,
    message_id: str,
) -> None:
    """Record that ``delivery_id`` entered ``state``."""
    await db.execute(
        "INSERT INTO history (delivery_id, state, previous, at, seq, source, message_id, recorded_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            delivery_id,
            state.value,
            previous.value if previous else None,
            at.isoformat(),
            seq,
            source,
            message_id,
            time.time(),
        ),
    )


async def record_rejection(
    db: aiosqlite.Connection,
    delivery_id: str,
    *,
    event: str,
    reason: str,
    detail: str,
    message_id: str,
    state: State,
    at: datetime,
    seq: int | None = None,
    source: str | None = None,
    courier_job_id: str | None = None,
) -> None:
    """Record a refused transition (or ping) of ``delivery_id`` in ``rejected``."""
    await db.execute(
        "INSERT INTO rejected (delivery_id, event, reason, detail, message_id, state, seq, source,"
        " courier_job_id, at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            delivery_id,
            event,
            reason,
            detail,
            message_id,
            state.value,
            seq,
            source,
            courier_job_id,
            at.isoformat(),
            time.time(),
        ),
    )


async def move_position(
    db: aiosqlite.Connection, delivery_id: str, location: LatLon, *, seq: int, at: datetime
) -> bool:
    """Keep ``location`` as the latest position unless a newer ping is stored (True: stored)."""
    cursor = await db.execute(
        "UPDATE deliveries SET location_lat = ?, location_lon = ?, location_seq = ?, location_at = ?,"
        " updated_at = ? WHERE id = ? AND (location_seq IS NULL OR location_seq < ?)",
        (location.lat, location.lon, seq, at.isoformat(), time.time(), delivery_id, seq),
    )
    moved = cursor.rowcount == 1
    await cursor.close()
    return moved


async def note_order_version(db: aiosqlite.Connection, delivery_id: str, version: int | None) -> None:
    """Remember the newest order version seen (ePOS ``order.updated``); it changes nothing else."""
    await db.execute(
        "UPDATE deliveries SET order_version = MAX(COALESCE(order_version, 0), ?), updated_at = ?"
        " WHERE id = ?",
        (version or 0, time.time(), delivery_id),
    )


add_once = outbox.add_once
