"""Publishing with confirms: a bounded window, a timeout per publish, republish on unknown outcome."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp import commands as spec

from system.logs import get_logger

from .connector import ClusterConnector
from .envelope import OutgoingMessage
from .settings import MessagingSettings

log = get_logger(__name__)


class UnroutableMessage(Exception):
    """The broker returned the message (``mandatory``): no queue is bound for its routing key.

    Confirmed is not routed, so a return is a failure: retrying at once won't help, the topology
    is wrong or not declared yet.
    """

    def __init__(self, message: OutgoingMessage, reply_text: str) -> None:
        super().__init__(f"unroutable {message.exchange}:{message.routing_key} ({reply_text})")
        self.message = message


class PublisherClosed(Exception):
    """The publisher was closed while a publish had not been confirmed yet (outcome unknown)."""


@dataclass
class PublisherStats:
    """Counters of what happened to publishes (unknown outcomes are republished, never dropped)."""

    confirmed: int = 0
    nacked: int = 0
    timed_out: int = 0
    channel_lost: int = 0
    returned: int = 0
    blocked_waits: int = 0

    @property
    def republished(self) -> int:
        """Publishes sent again after an unknown outcome."""
        return self.nacked + self.timed_out + self.channel_lost


def broker_blocked(connection: AbstractConnection | None) -> bool:
    """Whether the broker sent ``connection.blocked`` (memory/disk alarm) and not yet ``unblocked``.

    aiormq tracks the state but only privately (its writer waits on it); reading it lets us tell a
    confirm delayed by an alarm from a lost one, so we wait instead of republishing into the buffer.
    """
    transport = getattr(connection, "transport", None)
    underlay = getattr(transport, "connection", None)
    event = getattr(underlay, "_Connection__connection_unblocked", None)
    return isinstance(event, asyncio.Event) and not event.is_set()


class ConfirmingPublisher:
    """Publishes :class:`OutgoingMessage` s and returns only once the broker confirmed them.

    * At most ``confirm_window`` publishes are unconfirmed at a time: callers wait (back-pressure).
    * ``mandatory=True``; a return raises :class:`UnroutableMessage`.
    * A nack (e.g. a quorum queue electing a leader), a confirm timeout or a lost channel/connection
      means "outcome unknown": it is logged with the message id and the same message is republished,
      on a fresh channel (any node) when the old one is gone.
    * While the broker blocks the connection (alarm) a missing confirm is not a timeout: the publish
      keeps waiting, the window stays full and callers are held back instead of buffering.
    """

    def __init__(
        self,
        settings: MessagingSettings,
        *,
        connector: ClusterConnector | None = None,
        name: str = "publisher",
    ) -> None:
        self._settings = settings
        self._connector = connector or ClusterConnector(settings, name=name)
        self._window = asyncio.Semaphore(settings.confirm_window)
        self._lock = asyncio.Lock()
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._generation = 0
        self._closing = asyncio.Event()
        self._nack_streak = 0
        self.stats = PublisherStats()

    @property
    def blocked(self) -> bool:
        """True while the broker blocks our connection (a resource alarm is raised)."""
        return broker_blocked(self._connection)

    @property
    def in_flight(self) -> int:
        """Publishes currently waiting for their confirm."""
        return self._settings.confirm_window - self._window._value

    async def start(self) -> None:
        """Connect now (publishing connects lazily otherwise)."""
        await self._ensure_channel()

    async def close(self) -> None:
        """Close the connection; publishes still waiting raise :class:`PublisherClosed`."""
        self._closing.set()
        async with self._lock:
            if self._connection is not None:
                await _quietly_close(self._connection)
            self._connection = self._channel = None

    async def publish(self, message: OutgoingMessage) -> None:
        """Publish and wait for the confirm; republishes on unknown outcome until confirmed."""
        async with self._window:
            await self._until_confirmed(message)

    async def _until_confirmed(self, message: OutgoingMessage) -> None:
        backoff = 0.02
        while True:
            if self._closing.is_set():
                raise PublisherClosed(message.message_id)
            channel, generation = await self._ensure_channel()
            try:
                await self._publish_once(channel, message)
            except aiormq.exceptions.PublishError as exc:
                self.stats.returned += 1
                log.error(
                    "publish returned: unroutable",
                    extra={
                        "message_id": message.message_id,
                        "exchange": message.exchange,
                        "routing_key": message.routing_key,
                    },
                )
                raise UnroutableMessage(message, str(exc)) from None
            except aiormq.exceptions.DeliveryError:
                # Quorum leader election answers Basic.Nack: the message is not stored, send again —
                # on a fresh channel: observed here, a channel that saw the leader die can keep
                # nacking every publish long after a new leader was elected.
                self.stats.nacked += 1
                self._nack_streak += 1
                self._unknown(message, "nack")
                # Nacks that outlast an election (hundreds in a row, no confirm) : try another node.
                await self._invalidate(
                    generation, drop_connection=self._nack_streak > 4 * self._settings.confirm_window
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            except TimeoutError:
                self.stats.timed_out += 1
                self._unknown(message, "confirm timeout")
                # A confirm may be stuck for good on this channel: republish on a new one.
                await self._invalidate(generation)
                continue
            except (
                aiormq.exceptions.AMQPError,
                aiormq.exceptions.ChannelInvalidStateError,
                ConnectionError,
                OSError,
                RuntimeError,
            ) as exc:
                if self._closing.is_set():
                    raise PublisherClosed(message.message_id) from exc
                self.stats.channel_lost += 1
                self._unknown(message, f"channel lost: {exc!r}")
                await self._invalidate(generation)
                continue
            self.stats.confirmed += 1
            self._nack_streak = 0
            return

    def _unknown(self, message: OutgoingMessage, why: str) -> None:
        log.warning(
            "publish outcome unknown, republishing",
            extra={"message_id": message.message_id, "reason": why, "routing_key": message.routing_key},
        )

    async def _publish_once(self, channel: AbstractChannel, message: OutgoingMessage) -> None:
        underlay = await channel.get_underlay_channel()
        properties = spec.Basic.Properties(
            message_id=message.message_id,
            delivery_mode=2,  # persistent
            content_type=message.content_type,
            headers=dict(message.headers),
            message_type=message.message_type,
            expiration=None if message.expiration_ms is None else str(message.expiration_ms),
        )
        sent = asyncio.ensure_future(
            underlay.basic_publish(
                message.body,
                exchange=message.exchange,
                routing_key=message.routing_key,
                properties=properties,
                mandatory=True,
            )
        )
        try:
            was_blocked = False
            while True:
                done, _ = await asyncio.wait({sent}, timeout=self._settings.publish_timeout_s)
                if done:
                    sent.result()
                    return
                if self.blocked and not self._closing.is_set():
                    # Alarm: the broker holds our frames until it clears. Not a failure; keep waiting.
                    was_blocked = True
                    self.stats.blocked_waits += 1
                    if self.stats.blocked_waits % 1000 == 1:  # one line per episode, not per message
                        log.warning(
                            "connection blocked by broker alarm; holding publishes",
                            extra={"message_id": message.message_id, "in_flight": self.in_flight},
                        )
                    continue
                if was_blocked:
                    # The alarm has just cleared: give the broker a full timeout to work off the backlog.
                    was_blocked = False
                    continue
                raise TimeoutError
        finally:
            if not sent.done():
                sent.cancel()

    async def _ensure_channel(self) -> tuple[AbstractChannel, int]:
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel, self._generation
        async with self._lock:
            while self._channel is None or self._channel.is_closed:
                if self._closing.is_set():
                    raise PublisherClosed("closed")
                if self._connection is None or self._connection.is_closed:
                    self._connection = await self._connector.connect(self._closing)
                try:
                    async with asyncio.timeout(self._settings.connect_timeout_s):
                        self._channel = await self._connection.channel(
                            publisher_confirms=True, on_return_raises=True
                        )
                except (
                    TimeoutError,
                    aiormq.exceptions.AMQPError,
                    ConnectionError,
                    OSError,
                    RuntimeError,
                ) as exc:
                    log.warning("channel open failed; reconnecting", extra={"error": repr(exc)})
                    await _quietly_close(self._connection)
                    self._connection = None
                    continue
                self._generation += 1
            return self._channel, self._generation

    async def _invalidate(self, generation: int, *, drop_connection: bool = False) -> None:
        """Drop the channel of ``generation`` (and its connection if broken, or if asked to)."""
        async with self._lock:
            if generation != self._generation or self._channel is None:
                return  # someone already replaced it
            channel, self._channel = self._channel, None
            if drop_connection:
                self._nack_streak = 0
                log.warning("persistent nacks; reconnecting, possibly to another node")
            if self._connection is not None and (
                drop_connection or self._connection.is_closed or channel.is_closed
            ):
                # A dead channel usually means a dead connection; a fresh one may go to another node.
                await _quietly_close(self._connection)
                self._connection = None
            else:
                await _quietly_close(channel)


async def _quietly_close(thing: AbstractConnection | AbstractChannel) -> None:
    try:
        async with asyncio.timeout(2):
            await thing.close()
    except Exception as exc:  # closing a broken connection may fail in many ways; it's gone anyway
        log.debug("close failed", extra={"error": repr(exc)})


__all__ = ["ConfirmingPublisher", "PublisherClosed", "PublisherStats", "UnroutableMessage", "broker_blocked"]
