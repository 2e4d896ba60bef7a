"""Quoting's SQL (``<run dir>/quoting.db``, shared by the replicas). Every function takes the connection of
the transaction already open (the consumer's or a sweep's) and never commits.

A round's deadline is a column, not a timer: whichever replica sweeps first after it passed decides, and
the decision is a conditional ``UPDATE … WHERE status = 'collecting'``, so it happens once. One row per
delivery holds its current round (``round_no``); answers are kept per round.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import aiosqlite
from pydantic import TypeAdapter

from system.domain.intake import DeliveryRequest
from system.domain.quoting import Quote, QuoteDeclined
from system.domain.retailers import RetailerRules
from system.messaging import outbox

from .decide import Answer, Round, RoundStatus

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
    round_no        INTEGER NOT NULL DEFAULT 1,
    book_by         REAL NOT NULL,
    decided_at      REAL,
    outcome         TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quote_rounds_due ON quote_rounds (deadline_at) WHERE status = 'collecting';
CREATE TABLE IF NOT EXISTS quote_answers (
    delivery_id TEXT NOT NULL,
    round_no    INTEGER NOT NULL,
    courier     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    answer      TEXT NOT NULL,
    late        INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (delivery_id, round_no, courier)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS couriers (
    courier         TEXT PRIMARY KEY,
    first_asked_at  REAL NOT NULL,
    last_answer_at  REAL,
    silent_since    REAL,
    answered_ask_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quote_asks (
    request_id TEXT PRIMARY KEY,
    asked_at   REAL NOT NULL
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
        " status, created_at, deadline_at, round_no, book_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            r.round_no,
            r.book_by,
        ),
    )
    return cursor.rowcount == 1


async def get_round(db: aiosqlite.Connection, delivery_id: str) -> Round | None:
    """The round of ``delivery_id``, if any."""
    cursor = await db.execute(
        "SELECT delivery_id, order_reference, retailer_id, request, rules, asked, deadline_at, status, attempt,"
        " round_no, book_by FROM quote_rounds WHERE delivery_id = ?",
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
        round_no=int(row[9]),
        book_by=float(row[10]),
    )


async def record_answer(
    db: aiosqlite.Connection,
    delivery_id: str,
    round_no: int,
    message_id: str,
    answer: Answer,
    *,
    late: bool,
    now: float,
) -> bool:
    """Record a courier's answer in round ``round_no``; False if that courier already answered this round
    (the first counts)."""
    cursor = await db.execute(
        "INSERT OR IGNORE INTO quote_answers (delivery_id, round_no, courier, message_id, kind, answer, late,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            delivery_id,
            round_no,
            answer.courier,
            message_id,
            "quote" if isinstance(answer, Quote) else "quote_declined",
            answer.model_dump_json(),
            int(late),
            now,
        ),
    )
    return cursor.rowcount == 1


async def answers_in_time(db: aiosqlite.Connection, delivery_id: str, round_no: int = 1) -> list[Answer]:
    """The answers that arrived while round ``round_no`` was collecting (late ones are kept but never count)."""
    cursor = await db.execute(
        "SELECT answer FROM quote_answers WHERE delivery_id = ? AND round_no = ? AND late = 0 ORDER BY courier",
        (delivery_id, round_no),
    )
    rows = await cursor.fetchall()
    await cursor.close()
    return [_ANSWER.validate_json(r[0]) for r in rows]


async def close_round(
    db: aiosqlite.Connection,
    delivery_id: str,
    status: RoundStatus,
    now: float,
    outcome: str,
    round_no: int | None = None,
) -> bool:
    """Move a collecting round to ``status``; False if it was no longer collecting (decided elsewhere) or,
    with ``round_no``, if the delivery moved to another round meanwhile."""
    cursor = await db.execute(
        "UPDATE quote_rounds SET status = ?, decided_at = ?, outcome = ?"
        " WHERE delivery_id = ? AND status = 'collecting' AND (? IS NULL OR round_no = ?)",
        (status.value, now, outcome, delivery_id, round_no, round_no),
    )
    return cursor.rowcount == 1


async def ask_again(db: aiosqlite.Connection, r: Round, deadline_at: float) -> bool:
    """Move a collecting round to its next ask with a new deadline; False if it moved meanwhile."""
    cursor = await db.execute(
        "UPDATE quote_rounds SET attempt = ?, deadline_at = ?"
        " WHERE delivery_id = ? AND status = 'collecting' AND attempt = ? AND round_no = ?",
        (r.attempt + 1, deadline_at, r.delivery_id, r.attempt, r.round_no),
    )
    return cursor.rowcount == 1


async def start_next_round(
    db: aiosqlite.Connection, r: Round, asked: tuple[str, ...], deadline_at: float
) -> bool:
    """Move a decided (quoted) round ``r`` to round ``r.round_no + 1``, collecting again from ``asked``;
    False if the delivery is no longer at that round or not quoted (a repeated requote, a cancel)."""
    cursor = await db.execute(
        "UPDATE quote_rounds SET round_no = round_no + 1, attempt = 1, status = 'collecting', asked = ?,"
        " deadline_at = ?, decided_at = NULL, outcome = NULL"
        " WHERE delivery_id = ? AND round_no = ? AND status = 'quoted'",
        (json.dumps(list(asked)), deadline_at, r.delivery_id, r.round_no),
    )
    return cursor.rowcount == 1


async def declined(db: aiosqlite.Connection, delivery_id: str) -> set[str]:
    """The couriers that declined to quote ``delivery_id`` in any round (they are not asked again)."""
    cursor = await db.execute(
        "SELECT DISTINCT courier FROM quote_answers WHERE delivery_id = ? AND kind = 'quote_declined'",
        (delivery_id,),
    )
    rows = await cursor.fetchall()
    await cursor.close()
    return {str(r[0]) for r in rows}


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


async def note_asked(db: aiosqlite.Connection, requests: dict[str, str], now: float) -> None:
    """Remember an ask: ``requests`` maps each courier asked to its request id. A courier's silence counts
    from the first ask it has not answered (``silent_since``); each request's time is kept so that an
    answer tells which ask it came back for."""
    await db.executemany(
        "INSERT INTO couriers (courier, first_asked_at, silent_since) VALUES (?, ?, ?)"
        " ON CONFLICT (courier) DO UPDATE SET silent_since = coalesce(silent_since, excluded.silent_since)",
        [(c, now, now) for c in requests],
    )
    await db.executemany(
        "INSERT OR IGNORE INTO quote_asks (request_id, asked_at) VALUES (?, ?)",
        [(r, now) for r in requests.values()],
    )


async def note_answer(db: aiosqlite.Connection, courier: str, in_reply_to: str, now: float) -> None:
    """A courier answered request ``in_reply_to``: it is reachable as of ``now`` (no longer silent), and
    the transport worked for asks as recent as that request."""
    cursor = await db.execute("SELECT asked_at FROM quote_asks WHERE request_id = ?", (in_reply_to,))
    row = await cursor.fetchone()
    await cursor.close()
    asked_at = None if row is None else float(row[0])
    await db.execute(
        "INSERT INTO couriers (courier, first_asked_at, last_answer_at, answered_ask_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (courier) DO UPDATE SET"
        " last_answer_at = max(coalesce(last_answer_at, 0), excluded.last_answer_at),"
        " silent_since = NULL,"
        " answered_ask_at = max(coalesce(answered_ask_at, 0), coalesce(excluded.answered_ask_at, 0))",
        (courier, now, now, asked_at),
    )


async def unreachable(
    db: aiosqlite.Connection, couriers: Iterable[str], down_after_s: float, now: float
) -> set[str]:
    """Those of ``couriers`` that are down: silent since an ask made ``down_after_s`` or more before an ask
    another courier has answered. Measured between asks, not on the clock and not between answers: a
    broker outage silences everyone, and when it ends the queued answers come back in no useful order (one
    courier's backlog before another's), so an answer received late says nothing; an answer to an ask made
    30 s after ours says the transport carried asks long after ours, and ours is still unanswered.

    A courier that has never answered anything is also unreachable once ``down_after_s`` have passed on
    the clock since its first ask, if another courier answered after that ask: when no other order is
    being quoted (the last orders of a run, a quiet hour) nobody is asked later, and a round would
    otherwise wait until the order's deadline for a courier nobody runs. A courier that has answered
    before keeps the rule between asks alone, so an outage never makes it unreachable."""
    wanted = set(couriers)
    if not wanted:
        return set()
    cursor = await db.execute("SELECT max(last_answer_at), max(answered_ask_at) FROM couriers")
    row = await cursor.fetchone()
    await cursor.close()
    freshest, latest_answered_ask = (None, None) if row is None else row
    if freshest is None:
        return set()
    cursor = await db.execute("SELECT courier, first_asked_at, last_answer_at, silent_since FROM couriers")
    rows = await cursor.fetchall()
    await cursor.close()
    out = set()
    for c, first_asked, last_answer, silent_since in rows:
        if c not in wanted:
            continue
        outlasted = (
            silent_since is not None
            and latest_answered_ask is not None
            and latest_answered_ask >= silent_since + down_after_s
        )
        never_answered_while_others_did = (
            last_answer is None and freshest > first_asked and now - first_asked >= down_after_s
        )
        if outlasted or never_answered_while_others_did:
            out.add(str(c))
    return out
