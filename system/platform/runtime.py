"""The process runtime every platform service runs in: its consumers, its outbox relay, its timers.

A service is a handful of handlers over one SQLite file (shared by its replicas, WAL): each queue's
handler writes its effects and its outgoing messages (outbox rows) in the transaction the
:class:`~system.messaging.InboxConsumer` opens, so "processed", "state changed" and "will be sent"
commit together. Timers (a quote deadline, a booking timeout) are periodic sweeps over that same file in
their own transactions: a deadline is a row, not an in-memory timer, so a SIGKILLed replica loses none.

Why a relay lease: the replicas share the outbox table and an :class:`~system.messaging.OutboxRelay`
publishes every pending row it reads, so N relays would publish everything N times. Each replica runs
the relay only while it holds the ``relay`` lease (a row renewed every third of ``relay_lease_s``); when
the holder dies, another replica takes over within ``relay_lease_s``. A row in flight when the lease
moves may be published twice, with the same message id: consumers deduplicate.

Example (a service's ``__main__``)::

    runtime = ServiceRuntime(settings, msg, topology, schema=SCHEMA)
    runtime.consume(QUOTING_ORDERS, handle_order, decode_order)
    runtime.every(0.25, sweep_deadlines)
    asyncio.run(runtime.run())
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiosqlite

from system.logs import get_logger
from system.messaging import inbox, outbox
from system.messaging.abc import Decoder, Handler
from system.messaging.connector import ClusterConnector
from system.messaging.consumer import InboxConsumer
from system.messaging.db import begin_immediate, open_db
from system.messaging.declare import declare_topology
from system.messaging.publisher import ConfirmingPublisher
from system.messaging.relay import OutboxRelay
from system.messaging.settings import MessagingSettings
from system.messaging.topology import Topology
from system.shutdown import stop_with_deadline

from .settings import ServiceSettings

log = get_logger(__name__)

# A stop that has not ended 2 x grace + this after SIGTERM is forced (system/shutdown.py).
STOP_MARGIN_S = 10.0

LEASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

Sweep = Callable[["ServiceRuntime"], Awaitable[None]]


@dataclass
class _Subscription:
    queue: str
    handler: Handler[Any]
    decode: Decoder[Any]


async def try_lease(db: aiosqlite.Connection, name: str, owner: str, ttl_s: float, now: float) -> bool:
    """Take or renew the lease ``name`` for ``owner`` (one transaction); True if ``owner`` holds it now."""
    await begin_immediate(db)
    try:
        await db.execute(
            "INSERT OR IGNORE INTO leases (name, owner, expires_at) VALUES (?, ?, ?)",
            (name, owner, now + ttl_s),
        )
        await db.execute(
            "UPDATE leases SET owner = ?, expires_at = ? WHERE name = ? AND (owner = ? OR expires_at < ?)",
            (owner, now + ttl_s, name, owner, now),
        )
        cursor = await db.execute("SELECT owner FROM leases WHERE name = ?", (name,))
        row = await cursor.fetchone()
        await cursor.close()
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")
    return row is not None and row[0] == owner


async def release_lease(db: aiosqlite.Connection, name: str, owner: str) -> None:
    """Give the lease up (a graceful stop): the next replica need not wait for it to expire."""
    await begin_immediate(db)
    await db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
    await db.execute("COMMIT")


class ServiceRuntime:
    """Runs one replica of a service until SIGTERM/SIGINT (or :meth:`stop`)."""

    def __init__(
        self,
        settings: ServiceSettings,
        messaging: MessagingSettings,
        topology: Topology,
        *,
        schema: str = "",
    ) -> None:
        self.settings = settings
        self.messaging = messaging
        self.topology = topology
        self._schema = schema
        self._subscriptions: list[_Subscription] = []
        self._sweeps: list[tuple[float, Sweep]] = []
        self._stop = asyncio.Event()
        self._owner = f"{settings.service}.{settings.replica}:{os.getpid()}"
        self._db: aiosqlite.Connection | None = None
        self._db_lock = asyncio.Lock()
        self.consumers: list[InboxConsumer[Any]] = []
        self.relay: OutboxRelay | None = None
        self.holds_relay = False

    # -- building ----------------------------------------------------------------------------

    def consume(self, queue: str, handler: Handler[Any], decode: Decoder[Any]) -> None:
        """Consume ``queue`` (one of this service's work queues) with ``handler``."""
        self.topology.work_queue(queue)  # KeyError now rather than at start
        self._subscriptions.append(_Subscription(queue, handler, decode))

    def every(self, period_s: float, sweep: Sweep) -> None:
        """Call ``sweep(runtime)`` every ``period_s``; it uses :meth:`transaction`. Errors are logged."""
        self._sweeps.append((period_s, sweep))

    # -- used by sweeps -------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` on the runtime's own connection (sweeps share it, serialised).

        The local relay is woken only when the transaction changed rows: a sweep that found nothing due
        (five times a second, on an idle platform) has added no outbox row, and woke it for nothing."""
        assert self._db is not None, "transaction() is only available while the runtime runs"
        async with self._db_lock:
            changes = self._db.total_changes
            await begin_immediate(self._db)
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")
            changed = self._db.total_changes != changes
        if changed:
            self.wake_relay()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The runtime's connection for reads outside any write transaction (serialised like
        :meth:`transaction`). A sweep asks here first whether anything is due: an idle platform's sweeps
        ran five times a second each, and each took the database's write lock to find nothing."""
        assert self._db is not None, "reading() is only available while the runtime runs"
        async with self._db_lock:
            yield self._db

    def wake_relay(self) -> None:
        """Tell the local relay (if this replica holds the lease) that new rows are committed."""
        if self.relay is not None and self.holds_relay:
            self.relay.notify()

    def stop(self) -> None:
        """Ask for a graceful stop."""
        self._stop.set()

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the DB, declare this service's queues, consume, relay, sweep; until stopped."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # The stop waits up to 2 x grace for work in flight; past that plus a margin, exit loudly.
            loop.add_signal_handler(
                sig, stop_with_deadline(self._stop.set, 2 * self.settings.shutdown_grace_s + STOP_MARGIN_S)
            )
        self.settings.database.parent.mkdir(parents=True, exist_ok=True)
        self._db = await open_db(self.settings.database)
        try:
            # CREATE ... IF NOT EXISTS, each statement its own transaction: replicas may start together.
            await self._db.executescript(LEASE_SCHEMA + outbox.SCHEMA + inbox.SCHEMA + self._schema)
        except BaseException:
            await self._db.close()  # else aiosqlite's non-daemon thread keeps the failed process alive
            raise
        log.info(
            "service starting",
            extra={
                "service": self.settings.service,
                "replica": self.settings.replica,
                "db": str(self.settings.database),
                "queues": [s.queue for s in self._subscriptions],
            },
        )
        try:
            if not await self._declare():
                return
            await self._serve()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.settings.ready_marker.unlink()
            await self._db.close()
            log.info("service stopped", extra={"service": self.settings.service})

    async def _declare(self) -> bool:
        """Declare this service's own queues (idempotent), retrying until it works or we are stopped."""
        connector = ClusterConnector(self.messaging, name=f"{self.settings.service}:declare")
        delay = self.messaging.reconnect_initial_s
        while not self._stop.is_set():
            try:
                connection = await connector.connect(self._stop)
            except ConnectionError:
                return False
            try:
                async with asyncio.timeout(30):
                    await declare_topology(connection, self.topology, service=self.settings.service)
                return True
            except Exception as exc:  # a node dying mid-declare, exchanges not provisioned yet: retry
                log.warning("declaring the service's queues failed; retrying", extra={"error": repr(exc)})
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, self.messaging.reconnect_max_s)
        return False

    async def _serve(self) -> None:
        for sub in self._subscriptions:
            self.consumers.append(
                InboxConsumer(
                    self.messaging,
                    db_path=self.settings.database,
                    topology=self.topology,
                    queue=sub.queue,
                    handler=sub.handler,
                    decode=sub.decode,
                    name=f"{self.settings.service}.{self.settings.replica}:{sub.queue}",
                )
            )
        tasks = [asyncio.create_task(c.run(), name=f"consume:{c}") for c in self.consumers]
        background = [asyncio.create_task(self._relay_loop(), name="relay")]
        background += [asyncio.create_task(self._sweep_loop(p, s), name="sweep") for p, s in self._sweeps]
        ready = asyncio.create_task(self._mark_ready())
        await self._stop.wait()
        log.info("stopping", extra={"service": self.settings.service})
        ready.cancel()
        for consumer in self.consumers:
            consumer.stop()
        grace = self.settings.shutdown_grace_s
        _, pending = await asyncio.wait(tasks + background, timeout=2 * grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, *background, ready, return_exceptions=True)

    async def _mark_ready(self) -> None:
        await asyncio.gather(*(c.consuming.wait() for c in self.consumers))
        marker = self.settings.ready_marker
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        log.info("consuming on every queue", extra={"service": self.settings.service})

    async def _sweep_loop(self, period_s: float, sweep: Sweep) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), period_s)
            if self._stop.is_set():
                return
            try:
                await sweep(self)
            except Exception:  # a sweep that fails now runs again next period: never end the loop
                log.exception("sweep failed", extra={"service": self.settings.service})

    async def _relay_loop(self) -> None:
        """Hold the relay lease and run the relay while held; give it up on stop."""
        ttl = self.settings.relay_lease_s
        lease_db = await open_db(self.settings.database)
        try:
            while not self._stop.is_set():
                if await self._renew(lease_db, ttl):
                    await self._relay_while_held(lease_db, ttl)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), ttl / 3)
            if self.holds_relay:
                with contextlib.suppress(Exception):
                    await release_lease(lease_db, "relay", self._owner)
        finally:
            await lease_db.close()

    async def _renew(self, db: aiosqlite.Connection, ttl: float) -> bool:
        try:
            return await try_lease(db, "relay", self._owner, ttl, time.time())
        except Exception as exc:  # a locked DB: not holding is the safe answer
            log.warning("relay lease renewal failed", extra={"error": repr(exc)})
            return False

    async def _relay_while_held(self, db: aiosqlite.Connection, ttl: float) -> None:
        lost = asyncio.Event()
        publisher = ConfirmingPublisher(self.messaging, name=f"{self._owner}:relay")
        self.relay = OutboxRelay(self.settings.database, publisher, self.messaging)
        self.holds_relay = True
        log.info("relay lease taken", extra={"owner": self._owner})
        stop_relay = asyncio.Event()
        task = asyncio.create_task(self.relay.run(stop_relay))
        try:
            while not self._stop.is_set() and not task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), ttl / 3)
                if not await self._renew(db, ttl):
                    lost.set()
                    log.warning("relay lease lost", extra={"owner": self._owner})
                    break
        finally:
            stop_relay.set()
            done, _ = await asyncio.wait({task}, timeout=self.settings.shutdown_grace_s)
            if not done:
                await publisher.close()
                done, _ = await asyncio.wait({task}, timeout=self.settings.shutdown_grace_s)
            if not done:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await publisher.close()
            # Stopping while holding: _relay_loop releases the lease for the next replica.
            self.holds_relay = not lost.is_set()
            self.relay = None
