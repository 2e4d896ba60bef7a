"""Admission control's moving parts: the relay's lag sampler and each HTTP replica's gate.

The HTTP replicas never touch AMQP (a broker outage must not stall them, :mod:`.relay`), so the one
process that has a broker connection — the relay — measures the lag and shares it through the intake DB
they already share::

    relay: LagSampler ── every admission_sample_s ──► intake.db admission_lag (one row)
             passive queue.declare of each watched queue (ready messages; no permission needed)
             + the oldest outbox row not yet published (its own backlog)
    replica: AdmissionGate ── every admission_sample_s ──► reads the row, decide.admission(...)
             the request path only reads the gate's latest decision (no I/O per request)

A passive declare is answered by the queue itself and needs no permission on it, so the relay's
least-privilege ``intake`` user may ask quoting's and dispatch's queues their depth. The sampler uses a
connection of its own: it never publishes, so an alarm that blocks the relay's publishing connection
does not block it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
from aio_pika.abc import AbstractChannel, AbstractConnection

from system.logs import get_logger
from system.messaging.connector import ClusterConnector
from system.messaging.db import open_db, transaction
from system.messaging.settings import MessagingSettings

from .decide import OK, Decision, Lag, Limits, admission

log = get_logger(__name__)

SCHEMA = """
-- The latest lag sample (one row, id 1), written by the relay's sampler, read by every HTTP replica.
CREATE TABLE IF NOT EXISTS admission_lag (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    sampled_at   REAL NOT NULL,
    depth        INTEGER,
    deepest      TEXT,
    outbox_age_s REAL NOT NULL,
    unbooked     INTEGER
);
"""


# -- the shared row ------------------------------------------------------------------------------------


async def write_lag(db: aiosqlite.Connection, lag: Lag) -> None:
    """Replace the lag sample (one short write transaction)."""
    async with transaction(db):
        await db.execute(
            "INSERT OR REPLACE INTO admission_lag (id, sampled_at, depth, deepest, outbox_age_s, unbooked)"
            " VALUES (1, ?, ?, ?, ?, ?)",
            (lag.sampled_at, lag.depth, lag.deepest, lag.outbox_age_s, lag.unbooked),
        )


async def read_lag(db: aiosqlite.Connection) -> Lag | None:
    """The latest lag sample, or None when the relay never wrote one."""
    cursor = await db.execute(
        "SELECT sampled_at, depth, deepest, outbox_age_s, unbooked FROM admission_lag WHERE id = 1"
    )
    row = await cursor.fetchone()
    await cursor.close()
    if row is None:
        return None
    return Lag(
        float(row[0]),
        None if row[1] is None else int(row[1]),
        row[2],
        float(row[3]),
        None if row[4] is None else int(row[4]),
    )


async def outbox_age(db: aiosqlite.Connection, now: float) -> float:
    """Seconds the oldest outbox row never published yet has waited (0: none).

    ``attempts = 0``: a row the broker returned (unroutable) waits with a backoff and is not the relay's
    backlog; it must not hold admission shut. The partial index on pending rows keeps this cheap.
    """
    cursor = await db.execute(
        "SELECT created_at FROM outbox WHERE status = 'pending' AND attempts = 0 ORDER BY id LIMIT 1"
    )
    row = await cursor.fetchone()
    await cursor.close()
    return 0.0 if row is None else max(0.0, now - float(row[0]))


async def unbooked_count(db: aiosqlite.Connection) -> int:
    """Accepted orders with no courier yet: ``requested`` or ``quoted`` in intake's mirror of tracking's
    states (the index on ``state`` keeps this cheap)."""
    cursor = await db.execute("SELECT count(*) FROM deliveries WHERE state IN ('requested', 'quoted')")
    row = await cursor.fetchone()
    await cursor.close()
    return 0 if row is None else int(row[0])


def deepest_of(depths: dict[str, int]) -> tuple[int, str | None]:
    """The total of ``depths`` and the queue holding most (None when every queue is empty).

    Example:
        >>> deepest_of({"quoting.orders": 3, "quoting.answers": 40}), deepest_of({"a": 0})
        ((43, 'quoting.answers'), (0, None))
    """
    total = sum(depths.values())
    if total == 0:
        return 0, None
    return total, max(depths, key=lambda q: depths[q])


# -- the relay's sampler -------------------------------------------------------------------------------

Probe = Callable[[Sequence[str]], Awaitable[dict[str, int]]]


class LagSampler:
    """The relay's task: sample the lag every ``every_s`` and write it into the intake DB.

    ``probe`` (tests) replaces the broker: it returns each queue's ready messages or raises. Without it
    the sampler keeps its own AMQP connection and asks with passive declares.
    """

    def __init__(
        self,
        db_path: Path,
        queues: Sequence[str],
        every_s: float,
        timeout_s: float,
        msg: MessagingSettings | None = None,
        probe: Probe | None = None,
        synchronous: str = "NORMAL",
        count_unbooked: bool = False,
    ) -> None:
        self._db_path = db_path
        self._queues = list(queues)
        self._every_s = every_s
        self._timeout_s = timeout_s
        self._msg = msg
        self._probe = probe
        self._synchronous = synchronous
        # Only with the state mirror: without it every order stays 'requested' in intake.db.
        self._count_unbooked = count_unbooked
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self.samples = 0
        self._failing = False

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set; no failure ends the loop (an unknown lag only means admit)."""
        db = await open_db(self._db_path, synchronous=self._synchronous)
        try:
            while not stop.is_set():
                try:
                    await self.sample_once(db, stop)
                except Exception as exc:  # a locked DB or a dying node must not end the sampler
                    log.warning("lag sample failed", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._every_s)
        finally:
            await self._close()
            await db.close()

    async def sample_once(self, db: aiosqlite.Connection, stop: asyncio.Event | None = None) -> Lag:
        """Measure once and write the sample (``depth`` None when the broker did not answer)."""
        depths: dict[str, int] | None
        try:
            depths = await asyncio.wait_for(self._depths(stop), self._timeout_s)
        except Exception as exc:  # timeout, closed channel, node down: the depth is unknown this time
            depths = None
            await self._close()
            if not self._failing:
                log.warning("queue depths unknown: intake admits until they are", extra={"error": repr(exc)})
            self._failing = True
        else:
            if self._failing:
                log.info("queue depths known again", extra={"queues": len(depths)})
            self._failing = False
        now = time.time()
        age = await outbox_age(db, now)
        depth, deepest = deepest_of(depths) if depths is not None else (None, None)
        unbooked = await unbooked_count(db) if self._count_unbooked else None
        lag = Lag(now, depth, deepest, round(age, 3), unbooked)
        await write_lag(db, lag)
        self.samples += 1
        return lag

    async def _depths(self, stop: asyncio.Event | None) -> dict[str, int]:
        if self._probe is not None:
            return await self._probe(self._queues)
        if self._msg is None:
            raise RuntimeError("LagSampler needs MessagingSettings or a probe")
        channel = self._channel
        if channel is None or channel.is_closed:
            connection = self._connection
            if connection is None or connection.is_closed:
                connection = self._connection = await ClusterConnector(
                    self._msg, name="intake:admission"
                ).connect(stop)
            channel = self._channel = await connection.channel()
        out: dict[str, int] = {}
        for name in self._queues:
            declared = await channel.declare_queue(name, passive=True)
            out[name] = int(declared.declaration_result.message_count or 0)
        return out

    async def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


# -- the replica's gate ----------------------------------------------------------------------------------


class AdmissionGate:
    """One HTTP replica's admission state: the latest decision, refreshed from the DB once a second.

    :meth:`check` is what the request path asks (no I/O). Sheds are counted by reason; every change of
    state is logged once with its figures, every shed by the store with its order's keys.
    """

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self._clock = clock
        self.decision = Decision(False, OK)
        self.lag: Lag | None = None
        self.shed_total = 0
        self.shed_by_reason: Counter[str] = Counter()

    def refresh(self, lag: Lag | None) -> Decision:
        """Decide again from ``lag`` (keeping the hysteresis); logs when admitting turns into shedding
        or back."""
        self.lag = lag
        before = self.decision
        after = admission(lag, self.limits, shedding=before.shed, now=self._clock())
        if after.shed != before.shed:
            figures = {
                "reason": after.reason,
                "detail": after.detail,
                "depth": None if lag is None else lag.depth,
                "deepest": None if lag is None else lag.deepest,
                "outbox_age_s": None if lag is None else lag.outbox_age_s,
                "unbooked": None if lag is None else lag.unbooked,
                "shed_total": self.shed_total,
            }
            if after.shed:
                log.warning("admission: shedding new orders", extra=figures)
            else:
                log.info("admission: admitting new orders again", extra=figures)
        self.decision = after
        return after

    def check(self) -> Decision | None:
        """The shed decision to answer a new order with, or None to admit it."""
        return self.decision if self.decision.shed else None

    def count_shed(self, reason: str) -> int:
        """Count one shed answer; returns the running total."""
        self.shed_total += 1
        self.shed_by_reason[reason] += 1
        return self.shed_total

    def snapshot(self) -> dict[str, Any]:
        """The gate's state for ``GET /healthz``."""
        return {
            "enabled": self.limits.enabled,
            "shedding": self.decision.shed,
            "reason": self.decision.reason,
            "shed_total": self.shed_total,
            "shed_by_reason": dict(self.shed_by_reason),
        }

    async def run(
        self, read: Callable[[], Awaitable[Lag | None]], every_s: float, stop: asyncio.Event
    ) -> None:
        """Refresh from ``read()`` every ``every_s`` until ``stop``; a failed read is an unknown lag."""
        while not stop.is_set():
            try:
                lag = await read()
            except Exception as exc:  # a locked or missing DB: unknown, so admit
                log.warning("reading the lag sample failed", extra={"error": repr(exc)})
                lag = None
            self.refresh(lag)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
