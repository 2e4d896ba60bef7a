"""Dispatch's SQL (``<run dir>/dispatch.db``, shared by the replicas). Every function takes the connection
of the transaction already open (the consumer's or a sweep's) and never commits.

A job is a row in ``jobs`` plus its ``attempts``; :func:`save` writes a decision's new job with guards
(the job's ``version``, each changed attempt's old status and asks), so two replicas never apply two
decisions to the same state: the loser's transaction raises :class:`StaleJob` and is retried from fresh
state.
Booking deadlines are a column of ``attempts`` (a sweep acts on them), never an in-memory timer. An
attempt's ``message_id`` is its first ask's request id; ask ``k >= 2`` went out as ``<message_id>-<k>``.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

import aiosqlite
from pydantic import TypeAdapter

from system.domain.quoting import Quote
from system.messaging import outbox
from system.platform.contracts import Driver

from .decide import Attempt, AttemptStatus, Job, JobStatus, booking_request_id

# A schema change needs no migration: every run starts from a fresh run dir (a new dispatch.db).
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    delivery_id     TEXT PRIMARY KEY,
    order_reference TEXT NOT NULL,
    retailer_id     TEXT,
    status          TEXT NOT NULL,
    quoted          INTEGER NOT NULL,
    options         TEXT NOT NULL,
    courier         TEXT,
    courier_job_id  TEXT,
    driver          TEXT,
    version         INTEGER NOT NULL,
    round           INTEGER NOT NULL DEFAULT 1,
    book_by         REAL,
    pending         TEXT NOT NULL DEFAULT '[]',
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id    TEXT NOT NULL,
    number         INTEGER NOT NULL,
    message_id     TEXT NOT NULL UNIQUE,
    courier        TEXT NOT NULL,
    quote_id       TEXT NOT NULL,
    status         TEXT NOT NULL,
    deadline_at    REAL NOT NULL,
    courier_job_id TEXT,
    reason         TEXT,
    asks           INTEGER NOT NULL DEFAULT 1,
    round          INTEGER NOT NULL DEFAULT 1,
    updated_at     REAL NOT NULL,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attempts_due ON attempts (deadline_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS cancels (
    message_id     TEXT PRIMARY KEY,
    delivery_id    TEXT NOT NULL,
    courier        TEXT NOT NULL,
    courier_job_id TEXT NOT NULL,
    why            TEXT NOT NULL,
    status         TEXT NOT NULL,
    reason         TEXT,
    requested_at   REAL NOT NULL,
    answered_at    REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cancels_job ON cancels (courier_job_id);
"""

# The id of ask k >= 2: the attempt's message_id + "-<k>" (booking_request_id).
_LATER_ASK = re.compile(r"(?P<base>.+)-(?P<ask>[2-9]|[1-9][0-9]+)")

_OPTIONS: TypeAdapter[tuple[Quote, ...]] = TypeAdapter(tuple[Quote, ...])


class StaleJob(Exception):
    """The job changed under a decision (another replica got there first): redo it from fresh state."""


def utc(at: float) -> datetime:
    """Unix time as an aware UTC datetime."""
    return datetime.fromtimestamp(at, UTC)


add_once = outbox.add_once


async def load_job(db: aiosqlite.Connection, delivery_id: str) -> Job | None:
    """The job of ``delivery_id`` with its attempts, if any."""
    cursor = await db.execute(
        "SELECT order_reference, retailer_id, status, quoted, options, courier, courier_job_id, driver, version,"
        " round, book_by, pending FROM jobs WHERE delivery_id = ?",
        (delivery_id,),
    )
    row = await cursor.fetchone()
    await cursor.close()
    if row is None:
        return None
    cursor = await db.execute(
        "SELECT number, courier, quote_id, deadline_at, status, courier_job_id, reason, asks, round"
        " FROM attempts WHERE delivery_id = ? ORDER BY number",
        (delivery_id,),
    )
    attempts = tuple(
        Attempt(
            r[0], r[1], r[2], float(r[3]), AttemptStatus(r[4]), r[5], r[6], asks=int(r[7]), round=int(r[8])
        )
        for r in await cursor.fetchall()
    )
    await cursor.close()
    return Job(
        delivery_id=delivery_id,
        order_reference=row[0],
        retailer_id=row[1],
        status=JobStatus(row[2]),
        quoted=bool(row[3]),
        options=_OPTIONS.validate_json(row[4]),
        attempts=attempts,
        courier=row[5],
        courier_job_id=row[6],
        driver=Driver.model_validate_json(row[7]) if row[7] else None,
        version=int(row[8]),
        round=int(row[9]),
        book_by=math.inf if row[10] is None else float(row[10]),
        pending=tuple(json.loads(row[11])),
    )


async def save(db: aiosqlite.Connection, old: Job | None, new: Job, now: float) -> None:
    """Write ``new`` over ``old`` (None: a new job); :class:`StaleJob` if either changed meanwhile."""
    driver = new.driver.model_dump_json() if new.driver is not None else None
    options = _OPTIONS.dump_json(new.options).decode()
    book_by = None if math.isinf(new.book_by) else new.book_by
    pending = json.dumps(list(new.pending))
    if old is None:
        cursor = await db.execute(
            "INSERT OR IGNORE INTO jobs (delivery_id, order_reference, retailer_id, status, quoted, options,"
            " courier, courier_job_id, driver, version, round, book_by, pending, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
            (
                new.delivery_id, new.order_reference, new.retailer_id, new.status.value, int(new.quoted),
                options, new.courier, new.courier_job_id, driver, new.round, book_by, pending, now, now,
            ),
        )  # fmt: skip
    else:
        cursor = await db.execute(
            "UPDATE jobs SET retailer_id = ?, status = ?, quoted = ?, options = ?, courier = ?,"
            " courier_job_id = ?, driver = ?, round = ?, book_by = ?, pending = ?, version = version + 1,"
            " updated_at = ? WHERE delivery_id = ? AND version = ?",
            (
                new.retailer_id, new.status.value, int(new.quoted), options, new.courier, new.courier_job_id,
                driver, new.round, book_by, pending, now, new.delivery_id, old.version,
            ),
        )  # fmt: skip
    if cursor.rowcount != 1:
        raise StaleJob(f"job {new.delivery_id} changed under the decision")
    before = {a.number: a for a in old.attempts} if old is not None else {}
    for a in new.attempts:
        prior = before.get(a.number)
        if prior is None:
            await db.execute(
                "INSERT INTO attempts (delivery_id, number, message_id, courier, quote_id, status, deadline_at,"
                " courier_job_id, reason, asks, round, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new.delivery_id, a.number, booking_request_id(new.delivery_id, a.number), a.courier,
                    a.quote_id, a.status.value, a.deadline_at, a.courier_job_id, a.reason, a.asks, a.round, now,
                ),
            )  # fmt: skip
        elif prior != a:
            cursor = await db.execute(
                "UPDATE attempts SET status = ?, courier_job_id = ?, reason = ?, deadline_at = ?, asks = ?,"
                " updated_at = ? WHERE delivery_id = ? AND number = ? AND status = ? AND asks = ?",
                (
                    a.status.value, a.courier_job_id, a.reason, a.deadline_at, a.asks, now,
                    new.delivery_id, a.number, prior.status.value, prior.asks,
                ),
            )  # fmt: skip
            if cursor.rowcount != 1:
                raise StaleJob(f"attempt {a.number} of {new.delivery_id} changed under the decision")


async def find_attempt(db: aiosqlite.Connection, request_id: str) -> tuple[str, int, str, str] | None:
    """(delivery id, attempt number, courier, quote id) of the booking request ``request_id``: the
    attempt's first ask (its ``message_id``) or a later ask ``<message_id>-<k>`` that was sent."""
    cursor = await db.execute(
        "SELECT delivery_id, number, courier, quote_id FROM attempts WHERE message_id = ?", (request_id,)
    )
    row = await cursor.fetchone()
    await cursor.close()
    later = _LATER_ASK.fullmatch(request_id) if row is None else None
    if later is not None:
        cursor = await db.execute(
            "SELECT delivery_id, number, courier, quote_id FROM attempts WHERE message_id = ? AND asks >= ?",
            (later["base"], int(later["ask"])),
        )
        row = await cursor.fetchone()
        await cursor.close()
    return (row[0], int(row[1]), row[2], row[3]) if row is not None else None


async def due_attempts(
    db: aiosqlite.Connection, now: float, limit: int, timeout_s: float
) -> list[tuple[str, int]]:
    """Pending attempts whose booking deadline passed: (delivery id, number), oldest deadline first.

    The wait for an answer starts when the broker confirmed the booking request of the attempt's latest
    ask (its outbox row is ``sent``), not when the ask was committed: during a broker outage the request
    waits in the outbox, and giving up on the courier then would book the next one while that request is
    still to be delivered — two acceptances for one order once the broker is back. ``timeout_s`` is the
    first ask's wait; ask ``k`` waits ``timeout_s * 2**(k-1)`` (:func:`.decide.ask_wait_s`).
    """
    cursor = await db.execute(
        "SELECT a.delivery_id, a.number FROM attempts a JOIN outbox o ON o.message_id ="
        " CASE a.asks WHEN 1 THEN a.message_id ELSE a.message_id || '-' || a.asks END"
        " WHERE a.status = 'pending' AND a.deadline_at <= ? AND o.status = 'sent'"
        " AND o.sent_at + ? * (1 << (a.asks - 1)) <= ? ORDER BY a.deadline_at LIMIT ?",
        (now, timeout_s, now, limit),
    )
    rows = await cursor.fetchall()
    await cursor.close()
    return [(r[0], int(r[1])) for r in rows]


async def record_cancel(
    db: aiosqlite.Connection,
    message_id: str,
    delivery_id: str,
    courier: str,
    job_id: str,
    why: str,
    now: float,
) -> bool:
    """Remember a cancel request we send (False: already sent for that courier job)."""
    cursor = await db.execute(
        "INSERT OR IGNORE INTO cancels (message_id, delivery_id, courier, courier_job_id, why, status,"
        " requested_at) VALUES (?, ?, ?, ?, ?, 'sent', ?)",
        (message_id, delivery_id, courier, job_id, why, now),
    )
    return cursor.rowcount == 1


async def find_cancel(
    db: aiosqlite.Connection, request_id: str | None, courier_job_id: str
) -> tuple[str, str, str, str] | None:
    """(message id, delivery id, courier, status) of the cancel request an answer replies to.

    Matched by ``in_reply_to`` when the answer has one, else by the courier job.
    """
    if request_id is not None:
        sql, arg = (
            "SELECT message_id, delivery_id, courier, status FROM cancels WHERE message_id = ?",
            request_id,
        )
    else:
        sql, arg = (
            "SELECT message_id, delivery_id, courier, status FROM cancels WHERE courier_job_id = ?",
            courier_job_id,
        )
    cursor = await db.execute(sql, (arg,))
    row = await cursor.fetchone()
    await cursor.close()
    return (row[0], row[1], row[2], row[3]) if row is not None else None


async def settle_cancel(
    db: aiosqlite.Connection, message_id: str, accepted: bool, reason: str | None, now: float
) -> bool:
    """Record the courier's answer to a cancel request (False: answered already)."""
    cursor = await db.execute(
        "UPDATE cancels SET status = ?, reason = ?, answered_at = ? WHERE message_id = ? AND status = 'sent'",
        ("accepted" if accepted else "rejected", reason, now, message_id),
    )
    return cursor.rowcount == 1
