"""The intake database: deliveries, their history, idempotency keys, webhook events and the outbox.

ONE SQLite file (WAL) is shared by every intake replica of a run and by the relay process. Every
decision that accepts, replays, updates or cancels an order runs inside ONE ``BEGIN IMMEDIATE``
transaction that reads what is stored and writes the delivery row, its history, the idempotency record
and the outbox row together: the write lock serialises racing replicas, so check-then-insert is safe,
and an order is answered 202 only after that transaction committed.

Delivery ids are deterministic (:func:`system.domain.intake.delivery_id_for` of the order key), so a
retry landing on the other replica finds the row its first attempt wrote.

Hook for the tracking service: :meth:`IntakeStore.apply_lifecycle_event` applies a canonical lifecycle
event (through :func:`system.domain.lifecycle.transition`, which rejects illegal and out-of-order
events) and records courier, driver and ETA; ``GET /v1/deliveries/{id}`` reads them back with the
``delivery_history`` table. In the running platform tracking decides and intake mirrors:
:mod:`system.intake.mirror` applies tracking's state changes with :func:`get_delivery` and
:func:`mirror_state` inside its consumer's transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiosqlite

from system.domain.intake import (
    DeliveryRequest,
    EposAction,
    IdempotencyVerdict,
    StoredKey,
    delivery_id_for,
    epos_is_newer,
    idempotency_check,
)
from system.domain.lifecycle import Accepted, Event, Reason, State, Track, is_terminal, transition
from system.logs import get_logger
from system.messaging import outbox
from system.messaging.db import open_db, transaction, while_locked
from system.messaging.envelope import OutgoingMessage
from system.platform import contracts
from system.platform.contracts import iso

from .admission import SCHEMA as ADMISSION_SCHEMA
from .admission import AdmissionGate, read_lag
from .decide import Decision, Lag, retry_after_header

log = get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id              TEXT PRIMARY KEY,
    order_key       TEXT NOT NULL UNIQUE,
    retailer_id     TEXT NOT NULL,
    channel         TEXT NOT NULL,
    reference       TEXT NOT NULL,
    source_id       TEXT,
    source_version  INTEGER,
    fingerprint     TEXT,
    state           TEXT NOT NULL,
    status_seq      INTEGER NOT NULL DEFAULT 0,
    request         TEXT NOT NULL,
    courier         TEXT,
    courier_job_id  TEXT,
    driver_id       TEXT,
    driver_vehicle  TEXT,
    eta             TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_reference ON deliveries (retailer_id, reference);
-- Admission control counts the orders with no courier yet (system/intake/admission.py) every second.
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state);
-- One row per state the delivery entered (intake writes 'requested' and 'cancelled'; the tracking
-- service appends the rest through IntakeStore.apply_lifecycle_event).
CREATE TABLE IF NOT EXISTS delivery_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    state       TEXT NOT NULL,
    at          REAL NOT NULL,
    source      TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS delivery_history_delivery ON delivery_history (delivery_id, id);
-- REST Idempotency-Key per retailer and scope ('create', or 'cancel:<delivery id>').
CREATE TABLE IF NOT EXISTS idempotency_keys (
    retailer_id TEXT NOT NULL,
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (retailer_id, scope, key)
);
-- Webhook deliveries already handled (Shopify X-Shopify-Webhook-Id, ePOS event_id).
CREATE TABLE IF NOT EXISTS webhook_events (
    channel     TEXT NOT NULL,
    retailer_id TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    delivery_id TEXT,
    outcome     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (channel, retailer_id, event_id)
);
"""


@dataclass(frozen=True)
class Answer:
    """What the HTTP layer sends back: a status, its JSON body and extra headers (``on_commit``: what to
    do once the transaction that produced it has committed, e.g. log "order accepted")."""

    status: int
    body: dict[str, Any]
    on_commit: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)


Op = Callable[[aiosqlite.Connection], Awaitable["Answer"]]


@dataclass(frozen=True)
class Delivery:
    """A delivery row as intake reads it."""

    id: str
    retailer_id: str
    channel: str
    reference: str
    source_version: int | None
    fingerprint: str | None
    state: State
    status_seq: int
    courier: str | None
    courier_job_id: str | None
    driver_id: str | None
    driver_vehicle: str | None
    eta: str | None
    created_at: float
    updated_at: float

    @property
    def track(self) -> Track:
        """The lifecycle position, for :func:`transition`."""
        return Track(self.state, self.status_seq)


_COLUMNS = (
    "id, retailer_id, channel, reference, source_version, fingerprint, state, status_seq, courier,"
    " courier_job_id, driver_id, driver_vehicle, eta, created_at, updated_at"
)


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row[0],
        retailer_id=row[1],
        channel=row[2],
        reference=row[3],
        source_version=row[4],
        fingerprint=row[5],
        state=State(row[6]),
        status_seq=int(row[7]),
        courier=row[8],
        courier_job_id=row[9],
        driver_id=row[10],
        driver_vehicle=row[11],
        eta=row[12],
        created_at=float(row[13]),
        updated_at=float(row[14]),
    )


def _accepted(d: Delivery | str, state: State | str, status: int) -> Answer:
    delivery_id = d if isinstance(d, str) else d.id
    return Answer(status, {"id": delivery_id, "state": str(state)})


class IntakeStore:
    """The intake DB of one process: a write connection (transactions, one at a time) and a read one."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        max_batch: int = 64,
        admission: AdmissionGate | None = None,
    ) -> None:
        """``admission``: the gate asked before a new delivery is created (None: every order admitted)."""
        self.path = path
        self.admission = admission
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._pending: list[tuple[Op, asyncio.Future[Answer]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        # aiosqlite shares one connection between tasks: two requests must not interleave statements
        # inside one transaction, so each transaction holds this lock.
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()

    async def open(self) -> None:
        """Open both connections and create the tables (idempotent; safe with racing replicas)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await open_db(self.path, synchronous=self._synchronous)
        # Racing replicas create the tables together: wait out the other's lock (a steady 50-ms pause).
        await while_locked(lambda: self._schema(self._writer), tries=50, first_pause_s=0.05, max_pause_s=0.05)
        self._reader = await open_db(self.path, synchronous=self._synchronous)

    async def _schema(self, db: aiosqlite.Connection) -> None:
        await db.executescript(SCHEMA)
        await db.executescript(ADMISSION_SCHEMA)
        await outbox.ensure_schema(db)

    async def close(self) -> None:
        """Finish the group transaction in progress, then close the connections."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        for conn in (self._db, self._reader):
            if conn is not None:
                await conn.close()
        self._db = self._reader = None

    @property
    def _writer(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("IntakeStore used before open()")
        return self._db

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            if self._writer.in_transaction:
                # A task cancelled while its BEGIN ran in aiosqlite's thread left a transaction open
                # (nothing of it was committed): end it, or every later BEGIN would fail.
                log.warning("rolling back a transaction left open by a cancelled task")
                await self._writer.execute("ROLLBACK")
            async with transaction(self._writer) as db:
                yield db

    # -- probes -------------------------------------------------------------------------------------

    async def writable(self) -> bool:
        """Whether a write transaction can be opened and committed now (the readiness probe)."""
        # No timeout around it: cancelling a task inside BEGIN could leave the transaction open (see
        # _tx); BEGIN IMMEDIATE itself gives up after busy_timeout and its bounded retries.
        try:
            async with self._tx() as db:
                await db.execute("SELECT 1 FROM deliveries LIMIT 1")
        except (sqlite3.Error, RuntimeError) as exc:
            log.warning("intake DB not writable", extra={"error": repr(exc)})
            return False
        return True

    # -- reads --------------------------------------------------------------------------------------

    async def lag(self) -> Lag | None:
        """The relay's latest lag sample (admission control), or None."""
        if self._reader is None:
            raise RuntimeError("IntakeStore used before open()")
        async with self._read_lock:
            return await read_lag(self._reader)

    def _shed(self, request: DeliveryRequest, key: str) -> Answer | None:
        """The 503 answer for a NEW order while admission control sheds, else None (admit).

        Asked only where a delivery would be created, after the idempotency and duplicate checks: a
        retry or a duplicate of an order already accepted is not new work and gets its stored answer.
        """
        gate = self.admission
        decision = gate.check() if gate is not None else None
        if gate is None or decision is None:
            return None
        return _shed_answer(gate, decision, request, key)

    async def delivery(self, delivery_id: str) -> Delivery | None:
        """The delivery ``delivery_id`` (a committed snapshot), or None."""
        if self._reader is None:
            raise RuntimeError("IntakeStore used before open()")
        async with self._read_lock:
            return await _get(self._reader, delivery_id)

    async def view(self, delivery_id: str) -> tuple[Delivery, list[dict[str, Any]]] | None:
        """The delivery and its history (one read transaction: both from the same snapshot)."""
        if self._reader is None:
            raise RuntimeError("IntakeStore used before open()")
        async with self._read_lock:
            reader = self._reader
            await reader.execute("BEGIN")
            try:
                d = await _get(reader, delivery_id)
                if d is None:
                    return None
                cursor = await reader.execute(
                    "SELECT state, at, source, detail FROM delivery_history WHERE delivery_id = ? ORDER BY id",
                    (delivery_id,),
                )
                rows = await cursor.fetchall()
                await cursor.close()
            finally:
                await reader.execute("COMMIT")
        history = [
            {"state": r[0], "at": iso(float(r[1])), "source": r[2], **({"detail": r[3]} if r[3] else {})}
            for r in rows
        ]
        return d, history

    # -- group commit -----------------------------------------------------------------------------

    async def _run(self, op: Op) -> Answer:
        """Run ``op`` in the next group transaction and return its answer once that has COMMITTED.

        Concurrent requests are batched: one ``BEGIN IMMEDIATE`` … ``COMMIT`` (one fsync) for up to
        ``max_batch`` of them, each inside its own SAVEPOINT so a failing one rolls back alone. Nobody
        hears an answer before the commit that made it durable.
        """
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        answer = await future
        if answer.on_commit is not None:
            answer.on_commit()
        return answer

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            results: list[tuple[asyncio.Future[Answer], Answer | BaseException]] = []
            try:
                async with self._tx() as db:
                    for op, future in batch:
                        await db.execute("SAVEPOINT intake_op")
                        try:
                            answer = await op(db)
                        except Exception as exc:  # this request fails alone; the others go on
                            await db.execute("ROLLBACK TO intake_op")
                            results.append((future, exc))
                        else:
                            results.append((future, answer))
                        await db.execute("RELEASE intake_op")
            except Exception as exc:  # BEGIN or COMMIT failed: nothing of the batch is stored
                results = [(future, exc) for _, future in batch]
            for future, result in results:
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    # -- REST -------------------------------------------------------------------------------------

    async def submit_rest(self, request: DeliveryRequest, idempotency_key: str, fingerprint: str) -> Answer:
        """A REST create: new → 202; same key + same body → 200 (the same delivery); same key + other
        body → 409 with the original id. The same reference under another key is the same order: 200
        when the body matches, 409 otherwise (a reference names one order per retailer)."""

        async def op(db: aiosqlite.Connection) -> Answer:
            stored = await _idempotency(db, request.retailer_id, "create", idempotency_key)
            verdict = idempotency_check(stored, fingerprint)
            if stored is not None and verdict is IdempotencyVerdict.CONFLICT:
                return Answer(409, {"error": "idempotency conflict", "id": stored.delivery_id})
            if stored is not None:
                d = await _get(db, stored.delivery_id)
                return _accepted(stored.delivery_id, d.state if d else State.REQUESTED, 200)
            delivery_id = _delivery_id(request)
            existing = await _get(db, delivery_id)
            if existing is not None:
                if existing.fingerprint != fingerprint:
                    return Answer(
                        409,
                        {"error": "reference already used by another order", "id": existing.id},
                    )
                await _remember_key(
                    db, request.retailer_id, "create", idempotency_key, fingerprint, delivery_id
                )
                return _accepted(existing, existing.state, 200)
            shed = self._shed(request, idempotency_key)
            if shed is not None:
                return shed
            message = await _insert(db, delivery_id, request, fingerprint, time.time())
            await _remember_key(db, request.retailer_id, "create", idempotency_key, fingerprint, delivery_id)
            answer = _accepted(delivery_id, State.REQUESTED, 202)
            return replace(answer, on_commit=lambda: _log_accepted(delivery_id, request, message))

        return await self._run(op)

    async def cancel_rest(
        self, retailer_id: str, delivery_id: str, idempotency_key: str, fingerprint: str, reason: str
    ) -> Answer:
        """A REST cancel: 202 cancelled (also when already cancelled), 404 unknown (or another retailer's),
        409 too late (the lifecycle says the parcel is collected) or a reused key with another body."""
        scope = f"cancel:{delivery_id}"

        async def op(db: aiosqlite.Connection) -> Answer:
            d = await _get(db, delivery_id)
            if d is None or d.retailer_id != retailer_id:
                return Answer(404, {"error": f"unknown delivery {delivery_id}"})
            stored = await _idempotency(db, retailer_id, scope, idempotency_key)
            if idempotency_check(stored, fingerprint) is IdempotencyVerdict.CONFLICT:
                return Answer(409, {"error": "idempotency conflict", "id": delivery_id})
            answer = await _cancel(db, d, reason, time.time(), source="rest")
            if answer.status == 202 and stored is None:
                await _remember_key(db, retailer_id, scope, idempotency_key, fingerprint, delivery_id)
            return answer

        return await self._run(op)

    # -- webhooks ---------------------------------------------------------------------------------

    async def submit_shopify(
        self, request: DeliveryRequest, webhook_id: str, *, cancel: bool, reason: str = "customer"
    ) -> Answer:
        """A Shopify ``orders/create`` (``cancel=False``) or ``orders/cancelled``; a repeated webhook id
        answers 200 with the delivery's current state and changes nothing."""
        return await self._webhook("shopify", request, webhook_id, cancel=cancel, reason=reason)

    async def submit_epos(
        self, retailer_id: str, event_id: str, action: EposAction, request: DeliveryRequest | None
    ) -> Answer:
        """An ePOS event: deduplicated on ``event_id``; PICKUP-only orders are ignored; the first event
        of an order (created or updated) creates the delivery, later ones apply only when newer."""
        if action is EposAction.IGNORE or request is None:

            async def ignore(db: aiosqlite.Connection) -> Answer:
                await _remember_event(db, "epos", retailer_id, event_id, None, "ignored")
                return Answer(200, {"id": None, "state": "ignored"})

            return await self._run(ignore)
        return await self._webhook(
            "epos", request, event_id, cancel=action is EposAction.CANCEL, reason="customer"
        )

    async def _webhook(
        self, channel: str, request: DeliveryRequest, event_id: str, *, cancel: bool, reason: str
    ) -> Answer:
        delivery_id = _delivery_id(request)

        async def op(db: aiosqlite.Connection) -> Answer:
            now = time.time()
            created: OutgoingMessage | None = None
            apply_cancel = cancel
            seen = await _event(db, channel, request.retailer_id, event_id)
            if seen is not None:
                seen_id, outcome = seen
                if seen_id is None:
                    return Answer(200, {"id": None, "state": outcome})
                d = await _get(db, seen_id)
                return _accepted(seen_id, d.state if d else outcome, 200)
            existing = await _get(db, delivery_id)
            if existing is None:
                shed = self._shed(request, event_id)
                if shed is not None:
                    return shed  # nothing recorded: the provider's retry is evaluated again
                # The first event of this order, whichever it is (an update or a cancel may come first):
                # create the delivery from the whole order it carries.
                created = await _insert(db, delivery_id, request, None, now)
                existing = await _get(db, delivery_id)
                assert existing is not None  # written just above, in this transaction
                status = 202
            elif channel == "epos" and not epos_is_newer(
                request.source_version or 0, existing.source_version
            ):
                status = 200  # a stale version (a late order.created after its order.updated): ignored
                apply_cancel = False
            else:
                status = 200
                # A newer version of a live order: store it and tell quoting (a finished or cancelled
                # delivery has nothing left to update).
                if not apply_cancel and channel == "epos" and not is_terminal(existing.state):
                    await _update_version(db, existing, request, now)
            if apply_cancel:
                answer = await _cancel(db, existing, reason, now, source=channel)
                if answer.status == 409:
                    return answer  # not recorded: a retry is evaluated again
                if channel == "epos" and request.source_version is not None:
                    await db.execute(
                        "UPDATE deliveries SET source_version = MAX(COALESCE(source_version, 0), ?) WHERE id = ?",
                        (request.source_version, delivery_id),
                    )
                state = State.CANCELLED
            else:
                state = existing.state
            await _remember_event(db, channel, request.retailer_id, event_id, delivery_id, str(state))
            answer = _accepted(delivery_id, state, status)
            if created is None:
                return answer
            message = created
            return replace(answer, on_commit=lambda: _log_accepted(delivery_id, request, message))

        return await self._run(op)

    # -- the tracking hook ------------------------------------------------------------------------

    async def apply_lifecycle_event(
        self,
        delivery_id: str,
        event: Event,
        *,
        seq: int | None = None,
        at: float | None = None,
        source: str = "tracking",
        courier: str | None = None,
        courier_job_id: str | None = None,
        driver_id: str | None = None,
        driver_vehicle: str | None = None,
        eta: str | None = None,
    ) -> Accepted | Reason | None:
        """Apply a lifecycle event reported by another service (None: unknown delivery).

        Returns :class:`Accepted` (state, history and the given courier/driver/ETA fields written) or
        the :class:`Reason` it was rejected; courier/driver/ETA fields are recorded even when the state
        does not change (a duplicate status may carry a newer ETA), never when the event is rejected
        as out of order or illegal.
        """
        now = time.time() if at is None else at
        async with self._tx() as db:
            d = await _get(db, delivery_id)
            if d is None:
                return None
            outcome = transition(d.track, event, seq)
            if isinstance(outcome, Accepted):
                await _set_state(db, d.id, outcome.track, now, source, None)
            elif outcome.reason is not Reason.DUPLICATE:
                return outcome.reason
            await db.execute(
                "UPDATE deliveries SET courier = COALESCE(?, courier), courier_job_id = COALESCE(?, courier_job_id),"
                " driver_id = COALESCE(?, driver_id), driver_vehicle = COALESCE(?, driver_vehicle),"
                " eta = COALESCE(?, eta), updated_at = ? WHERE id = ?",
                (courier, courier_job_id, driver_id, driver_vehicle, eta, now, d.id),
            )
            return outcome if isinstance(outcome, Accepted) else outcome.reason


# -- the state mirror (system/intake/mirror.py; run inside the consumer's open transaction) ---------------


async def get_delivery(db: aiosqlite.Connection, delivery_id: str) -> Delivery | None:
    """The delivery ``delivery_id`` read with ``db`` (inside the caller's transaction), or None."""
    return await _get(db, delivery_id)


async def mirror_state(
    db: aiosqlite.Connection,
    d: Delivery,
    state: State,
    *,
    at: float,
    detail: str | None = None,
    courier: str | None = None,
    courier_job_id: str | None = None,
    driver_id: str | None = None,
    driver_vehicle: str | None = None,
    eta: str | None = None,
) -> bool:
    """Move ``d`` to ``state`` as tracking decided it (history source ``tracking``), keeping courier,
    driver and ETA fields the change does not name. Conditional on the row still being in ``d.state``:
    False (nothing written) when it moved meanwhile. The caller decides that ``state`` is forward."""
    cursor = await db.execute(
        "UPDATE deliveries SET state = ?, courier = COALESCE(?, courier),"
        " courier_job_id = COALESCE(?, courier_job_id), driver_id = COALESCE(?, driver_id),"
        " driver_vehicle = COALESCE(?, driver_vehicle), eta = COALESCE(?, eta), updated_at = ?"
        " WHERE id = ? AND state = ?",
        (
            state.value,
            courier,
            courier_job_id,
            driver_id,
            driver_vehicle,
            eta,
            time.time(),
            d.id,
            d.state.value,
        ),
    )
    moved = cursor.rowcount == 1
    await cursor.close()
    if moved:
        await _history(db, d.id, state, at, "tracking", detail)
    return moved


# -- SQL helpers (all run inside the caller's transaction) -----------------------------------------------


def _delivery_id(request: DeliveryRequest) -> str:
    return delivery_id_for(request.order_key)


async def _get(db: aiosqlite.Connection, delivery_id: str) -> Delivery | None:
    cursor = await db.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,))
    row = await cursor.fetchone()
    await cursor.close()
    return _delivery(row) if row is not None else None


async def _insert(
    db: aiosqlite.Connection, delivery_id: str, request: DeliveryRequest, fingerprint: str | None, now: float
) -> OutgoingMessage:
    """The delivery row, its first history entry and its ``order.created`` outbox row."""
    await db.execute(
        "INSERT INTO deliveries (id, order_key, retailer_id, channel, reference, source_id, source_version,"
        " fingerprint, state, request, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            delivery_id,
            request.order_key,
            request.retailer_id,
            request.channel,
            request.reference,
            request.source_id,
            request.source_version,
            fingerprint,
            State.REQUESTED.value,
            request.model_dump_json(),
            now,
            now,
        ),
    )
    await _history(db, delivery_id, State.REQUESTED, now, "intake", request.channel)
    message = contracts.order_created(delivery_id, request, now)
    await outbox.add(db, message)
    return message


async def _history(
    db: aiosqlite.Connection, delivery_id: str, state: State, at: float, source: str, detail: str | None
) -> None:
    await db.execute(
        "INSERT INTO delivery_history (delivery_id, state, at, source, detail) VALUES (?, ?, ?, ?, ?)",
        (delivery_id, state.value, at, source, detail),
    )


async def _set_state(
    db: aiosqlite.Connection, delivery_id: str, track: Track, at: float, source: str, detail: str | None
) -> None:
    await db.execute(
        "UPDATE deliveries SET state = ?, status_seq = ?, updated_at = ? WHERE id = ?",
        (track.state.value, track.seq, at, delivery_id),
    )
    await _history(db, delivery_id, track.state, at, source, detail)


async def _cancel(db: aiosqlite.Connection, d: Delivery, reason: str, now: float, *, source: str) -> Answer:
    outcome = transition(d.track, Event.CANCELLED)
    if isinstance(outcome, Accepted):
        await _set_state(db, d.id, outcome.track, now, source, reason)
        message = contracts.cancel_requested(d.id, d.reference, d.retailer_id, reason, now)
        await outbox.add(db, message)
        log.info(
            "cancellation recorded",
            extra={"delivery_id": d.id, "message_id": message.message_id, "source": source},
        )
        return _accepted(d, State.CANCELLED, 202)
    if outcome.reason is Reason.DUPLICATE:
        return _accepted(d, State.CANCELLED, 202)  # already cancelled: the same answer again
    return Answer(
        409, {"error": f"too late to cancel: the delivery is {d.state}", "id": d.id, "state": str(d.state)}
    )


async def _update_version(
    db: aiosqlite.Connection, d: Delivery, request: DeliveryRequest, now: float
) -> None:
    await db.execute(
        "UPDATE deliveries SET source_version = ?, request = ?, updated_at = ? WHERE id = ?",
        (request.source_version, request.model_dump_json(), now, d.id),
    )
    message = contracts.order_updated(d.id, request, now)
    # A replayed version (same event id is caught earlier; a different event with the same version
    # is stale and never gets here), so the message id is new: plain insert.
    await outbox.add(db, message)
    log.info(
        "order updated",
        extra={"delivery_id": d.id, "message_id": message.message_id, "version": request.source_version},
    )


async def _idempotency(db: aiosqlite.Connection, retailer_id: str, scope: str, key: str) -> StoredKey | None:
    cursor = await db.execute(
        "SELECT fingerprint, delivery_id FROM idempotency_keys WHERE retailer_id = ? AND scope = ? AND key = ?",
        (retailer_id, scope, key),
    )
    row = await cursor.fetchone()
    await cursor.close()
    return StoredKey(row[0], row[1]) if row is not None else None


async def _remember_key(
    db: aiosqlite.Connection, retailer_id: str, scope: str, key: str, fingerprint: str, delivery_id: str
) -> None:
    await db.execute(
        "INSERT INTO idempotency_keys (retailer_id, scope, key, fingerprint, delivery_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (retailer_id, scope, key, fingerprint, delivery_id, time.time()),
    )


async def _event(
    db: aiosqlite.Connection, channel: str, retailer_id: str, event_id: str
) -> tuple[str | None, str] | None:
    cursor = await db.execute(
        "SELECT delivery_id, outcome FROM webhook_events WHERE channel = ? AND retailer_id = ? AND event_id = ?",
        (channel, retailer_id, event_id),
    )
    row = await cursor.fetchone()
    await cursor.close()
    return (row[0], row[1]) if row is not None else None


async def _remember_event(
    db: aiosqlite.Connection,
    channel: str,
    retailer_id: str,
    event_id: str,
    delivery_id: str | None,
    outcome: str,
) -> None:
    # OR IGNORE: an ignored (PICKUP) event repeated concurrently must not turn into a 500.
    await db.execute(
        "INSERT OR IGNORE INTO webhook_events (channel, retailer_id, event_id, delivery_id, outcome, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (channel, retailer_id, event_id, delivery_id, outcome, time.time()),
    )


def _shed_answer(gate: AdmissionGate, decision: Decision, request: DeliveryRequest, key: str) -> Answer:
    """503 + ``Retry-After``: nothing was stored, the same request may be sent again after the delay."""
    retry_after = retry_after_header(decision.retry_after_s)

    def counted() -> None:
        total = gate.count_shed(decision.reason)
        log.warning(
            "order shed",
            extra={
                "channel": request.channel,
                "retailer_id": request.retailer_id,
                "order_reference": request.reference,
                "idempotency_key": key,
                "reason": decision.reason,
                "detail": decision.detail,
                "retry_after_s": int(retry_after),
                "shed_total": total,
            },
        )

    body = {
        "error": "overloaded: the order was not accepted; send it again after Retry-After seconds",
        "reason": decision.reason,
        "detail": decision.detail,
        "retry_after_s": int(retry_after),
    }
    return Answer(503, body, on_commit=counted, headers={"Retry-After": retry_after})


def _log_accepted(delivery_id: str, request: DeliveryRequest, message: OutgoingMessage) -> None:
    log.info(
        "order accepted",
        extra={
            "delivery_id": delivery_id,
            "message_id": message.message_id,
            "channel": request.channel,
            "retailer_id": request.retailer_id,
            "order_reference": request.reference,
        },
    )
