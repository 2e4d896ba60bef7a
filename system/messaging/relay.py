"""The outbox relay: publishes pending outbox rows with confirms and marks them sent."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from system.logs import get_logger

from . import outbox
from .abc import Publisher
from .db import open_db
from .publisher import PublisherClosed, UnroutableMessage
from .settings import MessagingSettings

log = get_logger(__name__)

_FLUSH_PERIOD_S = 0.02


@dataclass
class RelayStats:
    """What the relay did since it started."""

    published: int = 0
    marked_sent: int = 0
    returned: int = 0


class OutboxRelay:
    """Streams pending rows to a :class:`ConfirmingPublisher`, up to the confirm window at once.

    Rows are marked ``sent`` only after their confirm, in small batches; a crash in between leaves them
    ``pending`` and they are published again on restart (same message id, the consumer's inbox dedupes).
    Rows publish concurrently within the window, so their order on the queue is not guaranteed.
    """

    def __init__(
        self,
        db_path: str | Path,
        publisher: Publisher,
        settings: MessagingSettings,
    ) -> None:
        self._db_path = db_path
        self._publisher = publisher
        self._settings = settings
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.confirm_window)
        self._in_flight: set[int] = set()
        # Rows whose new state ("sent", or returned with a backoff) is not committed yet: not to be
        # picked up again meanwhile.
        self._recording: set[int] = set()
        self._flush_lock = asyncio.Lock()
        self._confirmed: list[int] = []
        self._returned: list[tuple[int, outbox.RowState, str]] = []
        self._halted = False
        #: set when a confirm or a return waits to be recorded: the flusher sleeps until then
        self._dirty = asyncio.Event()
        self.stats = RelayStats()

    def notify(self) -> None:
        """Tell the relay that new rows were committed (it also polls)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, drain_after: asyncio.Event | None = None) -> None:
        """Relay until ``stop`` is set (then finish the publishes in flight and record them), or, once
        ``drain_after`` is set, until no row is pending."""
        await self._run(stop, drain_after)

    async def run_until_empty(self) -> None:
        """Relay until no row is pending (for tools and tests)."""
        drained = asyncio.Event()
        drained.set()
        await self._run(asyncio.Event(), drained)

    async def _run(self, stop: asyncio.Event, drain_after: asyncio.Event | None) -> None:
        db = await open_db(self._db_path)
        await outbox.ensure_schema(db)
        tasks: set[asyncio.Task[None]] = set()
        flusher = asyncio.create_task(self._flush_loop(db, stop))
        try:
            cursor = 0
            next_rescan = time.monotonic()
            last_row = time.monotonic()
            while not stop.is_set():
                if self._halted:
                    await asyncio.sleep(3600)  # TEST ONLY: frozen until SIGKILLed
                    continue
                # Under the flush lock: a row read as pending just before its "sent" mark commits must
                # still be found in _recording when filtered, or it would be published again.
                async with self._flush_lock:
                    rows = await outbox.fetch_pending(
                        db, after_id=cursor, limit=self._settings.relay_batch, now=time.time()
                    )
                    rows = [r for r in rows if r.id not in self._in_flight and r.id not in self._recording]
                if rows:
                    last_row = time.monotonic()
                    for row in rows:
                        await self._slots.acquire()
                        self._in_flight.add(row.id)
                        task = asyncio.create_task(self._send(row))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                        cursor = row.id
                    continue
                if not self._in_flight:
                    await self._flush(db)
                    if (
                        drain_after is not None
                        and drain_after.is_set()
                        and await outbox.count_pending(db) == 0
                    ):
                        return
                if not self._in_flight or time.monotonic() >= next_rescan:
                    # Rescan from the start: returned rows behind the cursor become due after their
                    # backoff (rows in flight or awaiting their "sent" mark are filtered out above).
                    cursor = 0
                    next_rescan = time.monotonic() + self._settings.relay_retry_backoff_s
                self._wake.clear()
                try:
                    async with asyncio.timeout(self._poll_period(last_row)):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            if tasks:
                # Let publishes in flight finish; those that can't in time stay pending (safe).
                _, late = await asyncio.wait(tasks, timeout=2 * self._settings.publish_timeout_s)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            try:
                await self._flush(db)  # waits for a shielded flush still running (it holds the lock)
            finally:
                # Closed whatever happened: an open connection with a transaction left open would hold
                # the database's write lock for good (closing rolls it back).
                await db.close()

    def _poll_period(self, last_row: float) -> float:
        """The fast period while rows flow or publishes are in flight; the quiet one after a quiet spell."""
        s = self._settings
        if self._in_flight or time.monotonic() - last_row < s.relay_quiet_after_s:
            return s.relay_idle_poll_s
        return max(s.relay_quiet_poll_s, s.relay_idle_poll_s)

    async def _send(self, row: outbox.OutboxRow) -> None:
        try:
            await self._publisher.publish(row.message)
        except UnroutableMessage as exc:
            self.stats.returned += 1
            state = outbox.transition(
                row.state, outbox.Returned(time.time(), self._settings.relay_retry_backoff_s)
            )
            self._returned.append((row.id, state, str(exc)))
            self._recording.add(row.id)  # not due again until its backoff is saved
        except PublisherClosed:
            return  # shutting down; the row stays pending
        else:
            self.stats.published += 1
            self._confirmed.append(row.id)
            self._recording.add(row.id)
            log.debug("outbox row confirmed", extra={"message_id": row.message.message_id})
            self._maybe_halt_for_test()
        finally:
            self._in_flight.discard(row.id)
            self._slots.release()
            if self._confirmed or self._returned:
                self._dirty.set()

    def _maybe_halt_for_test(self) -> None:
        limit = self._settings.test_halt_after_publish
        if limit is not None and not self._halted and self.stats.published >= limit:
            # TEST ONLY: freeze between "confirmed" and "recorded as sent" so a test can SIGKILL us here.
            self._halted = True
            log.warning("test halt: not recording confirmed rows", extra={"published": self.stats.published})
            if self._settings.test_halt_marker:
                Path(self._settings.test_halt_marker).write_text(str(self.stats.published))

    async def _flush_loop(self, db: aiosqlite.Connection, stop: asyncio.Event) -> None:
        """Record confirms in batches: once something waits, ``_FLUSH_PERIOD_S`` later. It slept on a
        timer (50 wake-ups a second per relay, mostly for nothing on an idle platform); it now sleeps until
        a confirm or a return is there to record."""
        while not stop.is_set():
            await self._dirty.wait()
            await asyncio.sleep(_FLUSH_PERIOD_S)
            self._dirty.clear()
            if self._confirmed or self._returned:
                try:
                    # Shielded: the relay stopping cancels this loop, and a cancel landing while
                    # BEGIN IMMEDIATE runs in aiosqlite's thread left that transaction open, holding the
                    # service's write lock for good (seen under load: a tracking replica that lost its
                    # relay lease froze every consumer of its process). The flush runs to its COMMIT.
                    await asyncio.shield(self._flush(db))
                except Exception as exc:  # the flusher must survive a failed write; retry next tick
                    log.error("recording sent rows failed", extra={"error": repr(exc)})
                    self._dirty.set()

    async def _flush(self, db: aiosqlite.Connection) -> None:
        async with self._flush_lock:
            if self._halted:
                return
            confirmed, self._confirmed = self._confirmed, []
            returned, self._returned = self._returned, []
            if confirmed:
                try:
                    await outbox.mark_sent(db, confirmed, time.time())
                except Exception:
                    self._confirmed.extend(confirmed)  # try again on the next flush; rows stay excluded
                    raise
                self.stats.marked_sent += len(confirmed)
                self._recording.difference_update(confirmed)
            if returned:
                try:
                    await outbox.save_states(db, returned)
                except Exception:
                    self._returned.extend(returned)
                    raise
                self._recording.difference_update(i for i, _, _ in returned)
