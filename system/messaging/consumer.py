"""The inbox consumer: manual acks after the handler's transaction commits, retries, parking."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiormq
import aiosqlite
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage
from pydantic import ValidationError

from system.logs import get_logger

from . import inbox
from .abc import Decoder, Handler, Publisher
from .connector import ClusterConnector
from .db import begin_immediate, open_db
from .envelope import (
    ATTEMPT,
    LAST_ERROR,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
    PARK_REASON,
    PARKED_AT,
    PARKED_FROM,
    InboundMessage,
    OutgoingMessage,
)
from .publisher import ConfirmingPublisher
from .retry import Park, Retry, RetryPolicy
from .settings import MessagingSettings
from .topology import Topology, WorkQueue

log = get_logger(__name__)

T = TypeVar("T")


class MalformedMessage(Exception):
    """The body can't be decoded or fails the schema: retrying can't help, park at once."""


def parse_or_park(validate: Callable[[Any], T], body: Any, what: str) -> T:
    """``validate(body)`` (e.g. ``Model.model_validate_json``); a body that fails raises
    :class:`MalformedMessage` naming up to five bad fields, so the parking lot says why.

    Example:
        >>> from pydantic import BaseModel
        >>> class Ping(BaseModel):
        ...     seq: int
        >>> parse_or_park(Ping.model_validate_json, b'{"seq": "x"}', "a ping")
        Traceback (most recent call last):
        ...
        system.messaging.consumer.MalformedMessage: not a ping: seq: Input should be a valid integer, unable to parse string as an integer
    """
    try:
        return validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise MalformedMessage(f"not {what}: {problems}") from None


@dataclass
class ConsumerStats:
    """Counters of one consumer."""

    delivered: int = 0
    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    parked: int = 0
    stale_dropped: int = 0
    reconnects: int = 0
    idle_resubscribes: int = 0


@dataclass(frozen=True)
class _HandlerFailed:
    """The fast path's verdict: this delivery's handler raised ``error``."""

    delivery: _Delivery
    error: Exception


@dataclass(eq=False)
class _Delivery:
    generation: int
    channel: aiormq.abc.AbstractChannel
    raw: DeliveredMessage


class InboxConsumer(Generic[T]):
    """Consumes one work queue; each message's effects happen exactly once.

    For a batch of deliveries (up to ``consumer_batch``, already prefetched) one SQLite transaction is
    opened; per message a savepoint holds the inbox insert and the handler's writes, so a failing
    handler rolls back only its own message. After COMMIT, failed messages are republished (with
    confirms) to their retry tier or the parking lot and only then every delivery is acked. A crash
    anywhere before the ack means redelivery; the inbox makes the redelivery a no-op.

    The consumer owns its reconnect loop (any node of the cluster); deliveries that belong to a
    channel that has since died are dropped unacked: the broker has already requeued them.

    A consumer that has received nothing for ``idle_resubscribe_s`` (default: six stall checks)
    re-subscribes on a fresh connection to the next node, then waits twice as long before the next such
    move (up to eight times), until a real connection loss resets the wait. Why: a quorum queue's
    deliveries to a channel are sent by the queue's member on the channel's node ("local delivery"); a
    member that lags after a node restart (seen after a whole-cluster SIGKILL: stuck in pre_vote with
    its log behind the commit index) never sends them. The leader counts them as unacked to this
    consumer, so neither the ready count of a passive declare nor anything else on AMQP shows them.
    Closing the channel returns them to the queue; a consumer on another node receives them.
    ``idle_resubscribe_s=math.inf`` turns the moves off.
    """

    def __init__(
        self,
        settings: MessagingSettings,
        *,
        db_path: str | Path,
        topology: Topology,
        queue: str,
        handler: Handler[T],
        decode: Decoder[T],
        name: str | None = None,
        idle_resubscribe_s: float | None = None,
    ) -> None:
        self._settings = settings
        self._idle_resubscribe_s = (
            6 * settings.stall_check_s if idle_resubscribe_s is None else idle_resubscribe_s
        )
        self._db_path = db_path
        self._topology = topology
        self._queue: WorkQueue = topology.work_queue(queue)
        self._handler = handler
        self._decode = decode
        self._name = name or f"consumer:{queue}"
        self._connector = ClusterConnector(settings, name=self._name)
        # Retries and parking use their own connection: an alarm blocks publishers, not consumers.
        self._publisher: Publisher = ConfirmingPublisher(settings, name=f"{self._name}:republish")
        self._policy = RetryPolicy(self._queue.retry_tiers, self._queue.max_attempts)
        self._buffer: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._generation = 0
        self._stop = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._busy = False
        self._in_hand = 0  # deliveries of the batch the worker is processing
        self._ack_channel: aiormq.abc.AbstractChannel | None = None
        self._acked_through = 0  # on _ack_channel, every delivery tag up to this one is settled
        self._settled_above: set[int] = set()  # settled tags above _acked_through (out of order)
        self._received = 0  # deliveries received, all sessions
        self._last_received_at = 0.0  # loop time of the last delivery
        self._idle_moves = 0  # idle re-subscriptions since the last real connection loss
        self._moving = False  # the session in progress ends for idleness, not a loss
        self._progress = asyncio.Condition()
        self._started = asyncio.Event()
        self.stats = ConsumerStats()

    @property
    def consuming(self) -> asyncio.Event:
        """Set once the first ``basic.consume`` succeeded."""
        return self._started

    async def wait_processed(self, count: int) -> None:
        """Return once ``count`` messages have been processed (committed and acked) by this consumer."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.stats.processed >= count)

    def stop(self) -> None:
        """Ask for a graceful stop: no new deliveries; the ones already received are processed and acked
        (those still on the wire are requeued by the close)."""
        self._stop.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; reconnects (to any node) whenever the channel or connection dies."""
        db = await open_db(self._db_path)
        await inbox.ensure_schema(db)
        worker = self._worker = asyncio.create_task(self._work(db))
        try:
            await self._session_loop()
        finally:
            # The worker finishes the batch in hand (handlers, commit, acks) and returns; setting stop
            # also covers leaving by cancellation.
            self._stop.set()
            await asyncio.gather(worker, return_exceptions=True)
            await self._publisher.close()
            await db.close()

    async def _session_loop(self) -> None:
        delay = self._settings.reconnect_initial_s
        while not self._stop.is_set():
            connection: AbstractConnection | None = None
            try:
                connection = await self._connector.connect(self._stop)
                if await self._session(connection):
                    return
                delay = self._settings.reconnect_initial_s
                if self._moving:
                    self._moving = False
                    self._idle_moves += 1
                    self.stats.idle_resubscribes += 1
                    continue
                self._idle_moves = 0
                self.stats.reconnects += 1
                log.warning("channel lost; reconnecting", extra={"queue": self._queue.name})
            except (aiormq.exceptions.AMQPError, ConnectionError, OSError, RuntimeError, TimeoutError) as exc:
                self._moving = False
                self._idle_moves = 0
                if self._stop.is_set():
                    return
                log.warning("consumer session failed", extra={"queue": self._queue.name, "error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.reconnect_max_s)
            finally:
                if connection is not None:
                    await _close_quietly(connection)

    async def _session(self, connection: AbstractConnection) -> bool:
        """Consume on one channel until it dies (False) or a stop completes (True)."""
        # Every step has a deadline: during a leader election or on a frozen node these can hang.
        async with asyncio.timeout(2 * self._settings.connect_timeout_s):
            channel = await connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=self._settings.prefetch)
            underlay = await channel.get_underlay_channel()
        self._generation += 1
        generation = self._generation
        lost = asyncio.Event()
        channel.close_callbacks.add(lambda *_: lost.set())
        connection.close_callbacks.add(lambda *_: lost.set())

        async def on_delivery(raw: DeliveredMessage) -> None:
            self._received += 1
            self._last_received_at = asyncio.get_running_loop().time()
            self._buffer.put_nowait(_Delivery(generation, underlay, raw))

        async with asyncio.timeout(2 * self._settings.connect_timeout_s):
            ok = await underlay.basic_consume(self._queue.name, on_delivery, no_ack=False)
        log.info("consuming", extra={"queue": self._queue.name, "generation": generation})
        self._started.set()
        watchdog = asyncio.create_task(self._watch_for_stall(underlay, lost, generation))
        try:
            await _first_of(self._stop.wait(), lost.wait())
        finally:
            watchdog.cancel()
        if self._stop.is_set() and not lost.is_set():
            await self._shutdown(channel, underlay, str(ok.consumer_tag))
            return True
        return self._stop.is_set()

    async def _watch_for_stall(
        self, underlay: aiormq.abc.AbstractChannel, lost: asyncio.Event, generation: int
    ) -> None:
        """Declare the session lost when it is silent while the queue has ready messages, or when it
        has received nothing for the idle limit (then the next session goes to another node).

        Guards against consumers the broker silently stopped serving (e.g. after a quorum leader
        change), half-open connections the heartbeat has not caught yet, and deliveries a lagging
        quorum member on this node never sends (see the class docstring).
        """
        loop = asyncio.get_running_loop()
        period = self._settings.stall_check_s
        session_start = loop.time()
        seen = self._received
        done, idle_checks = self._settled(), 0
        while not lost.is_set():
            await asyncio.sleep(period)
            if not self._buffer.empty() or self._busy:
                # Work in hand: the broker delivered. A worker that settles nothing for long is stuck
                # (its deliveries stay unacked, invisible to the ready count below): say so loudly.
                idle_checks = idle_checks + 1 if self._settled() == done else 0
                done = self._settled()
                if idle_checks and idle_checks % 6 == 0:
                    held = self._holding(underlay, generation)
                    held["seconds"] = round(idle_checks * period, 1)
                    log.error("consumer worker settled nothing while deliveries wait", extra=held)
                seen = self._received
                continue
            idle_checks = 0
            if self._received != seen:
                seen = self._received
                continue
            try:
                async with asyncio.timeout(period):
                    # Shielded: aiormq closes the channel when an RPC is cancelled, and a graceful stop
                    # cancels this watchdog; the acks of the batch in hand must still go out on it.
                    declared = await asyncio.shield(underlay.queue_declare(self._queue.name, passive=True))
            except Exception as exc:  # any failure of a passive declare means the channel is unusable
                log.warning(
                    "stall check failed; reconnecting", extra={"queue": self._queue.name, "error": repr(exc)}
                )
                lost.set()
                return
            if (declared.message_count or 0) > 0:
                log.warning(
                    "no deliveries while the queue has ready messages; reconnecting",
                    extra=self._holding(underlay, generation) | {"ready": declared.message_count},
                )
                lost.set()
                return
            idle = loop.time() - max(session_start, self._last_received_at)
            limit = self._idle_resubscribe_s * 2 ** min(self._idle_moves, 3)
            if idle >= limit:
                log.warning(
                    "no deliveries for the idle limit; re-subscribing on another node",
                    extra=self._holding(underlay, generation)
                    | {"idle_s": round(idle, 1), "limit_s": limit, "moves": self._idle_moves,
                       "consumers": declared.consumer_count},
                )  # fmt: skip
                self._moving = True
                lost.set()
                return

    def _holding(self, underlay: aiormq.abc.AbstractChannel, generation: int) -> dict[str, Any]:
        """What this consumer holds locally, for the watchdog's logs (the broker's unacked count for
        this consumer should equal ``unsettled``; more there means deliveries that never arrived)."""
        return {
            "queue": self._queue.name,
            "unsettled": self._buffer.qsize() + self._in_hand,
            "waiting": self._buffer.qsize(),
            "busy": self._busy,
            "received": self._received,
            "channel": underlay.number,
            "channel_open": not underlay.is_closed,
            "generation": generation,
            "current_generation": self._generation,
        }

    def _settled(self) -> int:
        """Deliveries the worker has finished with (processed, duplicate, retried, parked, dropped)."""
        st = self.stats
        return st.processed + st.duplicates + st.retried + st.parked + st.stale_dropped

    async def _shutdown(self, channel: AbstractChannel, underlay: Any, consumer_tag: str) -> None:
        try:
            # nowait: a Basic.Cancel RPC that times out or is cancelled makes aiormq close the channel,
            # and then the batch in hand could not be acked (its messages would come back as duplicates).
            # Deliveries already on the wire for this tag are ignored and requeued at the close.
            async with asyncio.timeout(5):
                await underlay.basic_cancel(consumer_tag, nowait=True)
        except (TimeoutError, aiormq.exceptions.AMQPError, RuntimeError, ConnectionError):
            pass
        # The worker returns once the batch in progress is committed and acked: only then close.
        if self._worker is not None:
            await asyncio.wait({self._worker})
        await _close_quietly(channel)

    # -- processing ------------------------------------------------------------------------

    async def _work(self, db: aiosqlite.Connection) -> None:
        while True:
            get = asyncio.ensure_future(self._buffer.get())
            stop = asyncio.ensure_future(self._stop.wait())
            done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                return  # stopping; unstarted deliveries are requeued by the broker on close
            stop.cancel()
            batch = [get.result()]
            while len(batch) < self._settings.consumer_batch and not self._buffer.empty():
                batch.append(self._buffer.get_nowait())
            current = [d for d in batch if d.generation == self._generation]
            self.stats.stale_dropped += len(batch) - len(current)
            if current:
                self._busy, self._in_hand = True, len(current)
                try:
                    await self._process(db, current)
                finally:
                    self._busy, self._in_hand = False, 0

    async def _process(self, db: aiosqlite.Connection, batch: list[_Delivery]) -> None:
        self.stats.delivered += len(batch)
        try:
            failures = await self._batch_fast(db, batch)
            if isinstance(failures, _HandlerFailed):
                # A handler raised: redo the batch with a savepoint per message, so only the failing
                # message's writes are rolled back (the others' handlers run again, in this new tx).
                # The failed one is not run again: that attempt counts as one failure.
                failures = await self._batch_careful(db, batch, failures)
        except Exception as exc:
            # The transaction itself failed (disk full, locked...): nothing was applied; let the broker
            # redeliver (the delivery limit parks a message that keeps breaking it).
            log.error("batch transaction failed; requeueing", extra={"error": repr(exc)})
            await _rollback_quietly(db)
            for delivery in batch:
                await _settle(delivery, ack=False)
            self._settled_through(batch[0].channel)
            self._note_settled(batch)
            return
        if failures:
            await asyncio.gather(*(self._reroute(d, step) for d, step in failures))
        await self._ack_batch(batch)
        async with self._progress:
            self._progress.notify_all()

    async def _ack_batch(self, batch: list[_Delivery]) -> None:
        """Ack a whole batch with one ``multiple`` ack when every tag before it is settled.

        Why not one ack each: RabbitMQ (3.10) turns every ack frame into a settle command to the quorum
        queue's leader, and a channel with more than 32 unapplied commands stashes further settles
        until the leader catches up. Closing the channel (a graceful stop) drops the stash, and the
        broker requeues messages this consumer acked: CI saw 8 of them come back to the next
        consumer. One command per batch keeps far below that limit.
        """
        channel = batch[0].channel
        tags = [d.raw.delivery_tag for d in batch if d.raw.delivery_tag is not None]
        first = self._settled_through(channel) + 1
        if (
            tags
            and tags == list(range(first, first + len(tags)))
            and all(d.channel is channel for d in batch)
        ):
            await _settle(batch[-1], ack=True, multiple=True)
        else:  # a gap: a multiple ack would also settle deliveries outside this batch
            for delivery in batch:
                await _settle(delivery, ack=True)
        self._note_settled(batch)

    def _settled_through(self, channel: aiormq.abc.AbstractChannel) -> int:
        """The highest tag of ``channel`` up to which every delivery is settled (tags restart per channel)."""
        if channel is not self._ack_channel:
            self._ack_channel, self._acked_through, self._settled_above = channel, 0, set()
        return self._acked_through

    def _note_settled(self, batch: list[_Delivery]) -> None:
        for d in batch:
            if d.raw.delivery_tag is not None and d.channel is self._ack_channel:
                self._settled_above.add(d.raw.delivery_tag)
        while self._acked_through + 1 in self._settled_above:
            self._acked_through += 1
            self._settled_above.discard(self._acked_through)

    async def _batch_fast(
        self, db: aiosqlite.Connection, batch: list[_Delivery]
    ) -> list[tuple[_Delivery, Retry | Park]] | _HandlerFailed:
        """The common case in few SQLite round trips: one inbox lookup and one insert per batch.

        Returns the messages to reroute (malformed ones), or which handler raised (then nothing of
        this transaction was kept).
        """
        failures: list[tuple[_Delivery, Retry | Park]] = []
        messages: list[tuple[_Delivery, InboundMessage[T]]] = []
        for delivery in batch:
            decoded = self._decode_delivery(delivery)
            if isinstance(decoded, Park):
                failures.append((delivery, decoded))
            else:
                messages.append((delivery, decoded))
        await begin_immediate(db)
        try:
            seen = await inbox.already_processed(db, [m.message_id for _, m in messages])
            fresh: list[tuple[_Delivery, InboundMessage[T]]] = []
            duplicates: list[str] = []
            for delivery, message in messages:
                if message.message_id in seen:
                    duplicates.append(message.message_id)
                else:
                    seen.add(message.message_id)
                    fresh.append((delivery, message))
            await inbox.record(db, [m.message_id for _, m in fresh], duplicates, self._queue.name)
            for delivery, message in fresh:
                try:
                    await self._handler(db, message)
                except Exception as exc:  # the batch is redone, one savepoint each, by _batch_careful
                    await db.execute("ROLLBACK")
                    return _HandlerFailed(delivery, exc)
            await db.execute("COMMIT")
        except BaseException:
            await _rollback_quietly(db)
            raise
        self.stats.processed += len(fresh)
        self.stats.duplicates += len(duplicates)
        for mid in duplicates:
            log.info("duplicate delivery ignored", extra={"message_id": mid})
        return failures

    async def _batch_careful(
        self, db: aiosqlite.Connection, batch: list[_Delivery], failed: _HandlerFailed
    ) -> list[tuple[_Delivery, Retry | Park]]:
        failures: list[tuple[_Delivery, Retry | Park]] = []
        await begin_immediate(db)
        try:
            for delivery in batch:
                if delivery is failed.delivery:
                    step: Retry | Park | None = self._after_failure(delivery, failed.error)
                else:
                    step = await self._handle_one(db, delivery)
                if step is not None:
                    failures.append((delivery, step))
            await db.execute("COMMIT")
        except BaseException:
            await _rollback_quietly(db)
            raise
        return failures

    def _decode_delivery(self, delivery: _Delivery) -> InboundMessage[T] | Park:
        raw = delivery.raw
        props = raw.header.properties
        headers = dict(props.headers or {})
        message_id = props.message_id
        if not message_id:
            return Park("malformed: no message_id", 0)
        try:
            payload = self._decode(raw.body)
        except Exception as exc:  # any decoder error means the body can never be handled
            log.warning("malformed message", extra={"message_id": message_id, "error": repr(exc)})
            return Park(f"malformed: {exc!r}"[:500], 0)
        return InboundMessage(
            message_id=message_id,
            payload=payload,
            headers=headers,
            exchange=raw.exchange or "",
            routing_key=raw.routing_key or "",
            redelivered=bool(raw.redelivered),
            attempt=_as_int(headers.get(ATTEMPT)),
            body=raw.body,
        )

    async def _handle_one(self, db: aiosqlite.Connection, delivery: _Delivery) -> Retry | Park | None:
        message = self._decode_delivery(delivery)
        if isinstance(message, Park):
            return message
        message_id = message.message_id
        await db.execute("SAVEPOINT msg")
        try:
            if await inbox.claim(db, message_id, self._queue.name):
                await self._handler(db, message)
                self.stats.processed += 1
            else:
                self.stats.duplicates += 1
                log.info("duplicate delivery ignored", extra={"message_id": message_id})
            await db.execute("RELEASE msg")
            return None
        except Exception as exc:  # handler failures of any kind go through the retry tiers
            await db.execute("ROLLBACK TO msg")
            await db.execute("RELEASE msg")
            return self._after_failure(delivery, exc)

    def _after_failure(self, delivery: _Delivery, exc: Exception) -> Retry | Park:
        headers = delivery.raw.header.properties.headers or {}
        step: Retry | Park
        if isinstance(exc, MalformedMessage):
            # The handler found the message itself invalid: retrying can't help, park it now.
            step = Park(f"malformed: {exc}"[:500], _as_int(headers.get(ATTEMPT)) + 1)
        else:
            step = self._policy.after_failure(_as_int(headers.get(ATTEMPT)), repr(exc)[:300])
        log.warning(
            "handler failed",
            extra={
                "message_id": delivery.raw.header.properties.message_id,
                "error": repr(exc),
                "failures": step.failures,
            },
        )
        return step

    async def _reroute(self, delivery: _Delivery, step: Retry | Park) -> None:
        raw = delivery.raw
        props = raw.header.properties
        headers = dict(props.headers or {})
        headers.setdefault(ORIGINAL_EXCHANGE, raw.exchange or "")
        headers.setdefault(ORIGINAL_ROUTING_KEY, raw.routing_key or "")
        headers[ATTEMPT] = step.failures
        if isinstance(step, Retry):
            exchange = self._topology.retry_exchange
            routing_key = self._queue.retry_queue(step.tier)
            headers[LAST_ERROR] = step.error
            self.stats.retried += 1
        else:
            exchange = self._topology.parked_exchange
            routing_key = self._queue.name
            headers[PARK_REASON] = step.reason
            headers[PARKED_FROM] = self._queue.name
            headers[PARKED_AT] = time.time()
            self.stats.parked += 1
        message = OutgoingMessage(
            exchange=exchange,
            routing_key=routing_key,
            body=raw.body,
            message_id=props.message_id or "",
            headers=headers,
            content_type=props.content_type or "application/octet-stream",
            message_type=props.message_type,
        )
        # Confirmed before the original is acked: a crash in between only duplicates, never loses.
        await self._publisher.publish(message)
        log.info(
            "message parked" if isinstance(step, Park) else "message sent to retry tier",
            extra={"message_id": message.message_id, "routing_key": routing_key, "failures": step.failures},
        )


async def _settle(delivery: _Delivery, *, ack: bool, multiple: bool = False) -> None:
    tag = delivery.raw.delivery_tag
    if tag is None:
        return
    try:
        # wait=False: an ack is fire-and-forget in AMQP; waiting for the socket drain of a dying
        # connection could block the worker forever.
        if ack:
            await delivery.channel.basic_ack(tag, multiple=multiple, wait=False)
        else:
            await delivery.channel.basic_nack(tag, requeue=True, wait=False)
    except (aiormq.exceptions.AMQPError, RuntimeError, ConnectionError, OSError):
        # The channel died: the broker requeued the delivery; the inbox absorbs the redelivery.
        log.info("could not settle delivery on a dead channel", extra={"delivery_tag": tag})


async def _first_of(*aws: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def _close_quietly(thing: AbstractConnection | AbstractChannel) -> None:
    try:
        async with asyncio.timeout(3):
            await thing.close()
    except Exception as exc:  # already broken; nothing more to do
        log.debug("close failed", extra={"error": repr(exc)})


async def _rollback_quietly(db: aiosqlite.Connection) -> None:
    with contextlib.suppress(aiosqlite.Error):
        await db.execute("ROLLBACK")


def _as_int(value: object) -> int:
    """A header value as int (0 when absent or not a number)."""
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str | bytes) and value.strip().isdigit():
        return int(value)
    return 0
