"""The parking lot: inspecting and replaying messages the consumers gave up on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiormq
from aio_pika.abc import AbstractConnection
from aiormq.abc import DeliveredMessage

from system.logs import get_logger

from .connector import ClusterConnector
from .envelope import (
    CORE_HEADERS,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
    PARK_REASON,
    PARKED_AT,
    PARKED_FROM,
    OutgoingMessage,
)
from .publisher import ConfirmingPublisher, UnroutableMessage
from .settings import MessagingSettings
from .topology import WorkQueue

log = get_logger(__name__)

_BROKER_DEATH_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


@dataclass(frozen=True)
class ParkedMessage:
    """A message in a parking lot, with why and from where it was parked."""

    message_id: str
    reason: str
    parked_from: str
    original_exchange: str
    original_routing_key: str
    parked_at: float | None
    headers: Mapping[str, Any]
    body: bytes
    content_type: str | None
    message_type: str | None

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly one-line view."""
        return {
            "message_id": self.message_id,
            "reason": self.reason,
            "parked_from": self.parked_from,
            "original_exchange": self.original_exchange,
            "original_routing_key": self.original_routing_key,
            "parked_at": self.parked_at,
            "bytes": len(self.body),
        }

    def replay_message(self) -> OutgoingMessage:
        """The message to publish again: same id, original destination, retry bookkeeping removed."""
        headers = {k: v for k, v in self.headers.items() if k not in CORE_HEADERS + _BROKER_DEATH_HEADERS}
        return OutgoingMessage(
            exchange=self.original_exchange,
            routing_key=self.original_routing_key,
            body=self.body,
            message_id=self.message_id,
            headers=headers,
            content_type=self.content_type or "application/octet-stream",
            message_type=self.message_type,
        )


def parse_parked(raw: DeliveredMessage, work_queue: str) -> ParkedMessage:
    """Read the parking metadata: ours when the consumer parked it, ``x-death`` when the broker did."""
    props = raw.header.properties
    headers: dict[str, Any] = dict(props.headers or {})
    deaths = headers.get("x-death")
    first: Mapping[str, Any] = deaths[0] if isinstance(deaths, list) and deaths else {}
    keys = first.get("routing-keys") or [raw.routing_key or ""]
    reason = headers.get(PARK_REASON)
    if reason is None and first:
        reason = f"broker dead-lettered: {first.get('reason')} (x-delivery-limit reached)"
    parked_at = headers.get(PARKED_AT)
    return ParkedMessage(
        message_id=props.message_id or "",
        reason=_text(reason or "unknown"),
        parked_from=_text(headers.get(PARKED_FROM, work_queue)),
        original_exchange=_text(headers.get(ORIGINAL_EXCHANGE, first.get("exchange", ""))),
        original_routing_key=_text(headers.get(ORIGINAL_ROUTING_KEY, keys[0])),
        parked_at=float(parked_at) if isinstance(parked_at, int | float) else None,
        headers=headers,
        body=raw.body,
        content_type=props.content_type,
        message_type=props.message_type,
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class ReplayReport:
    """What a replay did."""

    replayed: list[str]
    unroutable: list[str]


class ParkingLot:
    """The parking lot of one work queue: list, show and replay its messages.

    Reading uses ``basic.get`` without ack; the channel is closed at the end, which puts every
    message we did not replay back in the parking lot.
    """

    def __init__(self, settings: MessagingSettings, work_queue: WorkQueue | str) -> None:
        self._settings = settings
        self._queue = work_queue if isinstance(work_queue, WorkQueue) else WorkQueue(work_queue, bindings=())
        self._connector = ClusterConnector(settings, name=f"parking:{self._queue.name}")

    @property
    def queue_name(self) -> str:
        """The parking lot's queue name."""
        return self._queue.parked_queue

    async def list(self, limit: int = 100) -> list[ParkedMessage]:
        """Up to ``limit`` parked messages (left in place)."""
        found: list[ParkedMessage] = []

        async def collect(message: ParkedMessage) -> bool:
            found.append(message)
            return False  # leave it parked

        await self._scan(limit, lambda _: True, collect)
        return found

    async def show(self, message_id: str) -> ParkedMessage | None:
        """The parked message with ``message_id``, if any."""
        found = [m for m in await self.list(limit=100_000) if m.message_id == message_id]
        return found[0] if found else None

    async def replay(self, message_ids: set[str] | None = None, limit: int = 100_000) -> ReplayReport:
        """Publish parked messages (all, or those in ``message_ids``) to where they were first sent.

        Each one is removed from the parking lot only after the broker confirmed the republish, so a
        crash duplicates at worst — and the consumer's inbox absorbs duplicates.
        """
        report = ReplayReport([], [])
        publisher = ConfirmingPublisher(self._settings, name="parking:replay")
        try:
            await self._scan(
                limit,
                lambda m: message_ids is None or m.message_id in message_ids,
                lambda m: self._republish(publisher, m, report),
            )
        finally:
            await publisher.close()
        return report

    async def _republish(
        self, publisher: ConfirmingPublisher, parked: ParkedMessage, report: ReplayReport
    ) -> bool:
        try:
            await publisher.publish(parked.replay_message())
        except UnroutableMessage:
            report.unroutable.append(parked.message_id)
            return False
        report.replayed.append(parked.message_id)
        log.info(
            "parked message replayed",
            extra={"message_id": parked.message_id, "exchange": parked.original_exchange},
        )
        return True

    async def _scan(
        self,
        limit: int,
        select: Callable[[ParkedMessage], bool],
        act: Callable[[ParkedMessage], Awaitable[bool]],
    ) -> None:
        connection: AbstractConnection = await self._connector.connect()
        try:
            channel = await connection.channel(publisher_confirms=False)
            underlay = await channel.get_underlay_channel()
            declared = await underlay.queue_declare(self._queue.parked_queue, passive=True)
            budget = min(limit, int(declared.message_count or 0))
            for _ in range(budget):
                raw = await _get(underlay, self._queue.parked_queue)
                if raw is None:
                    break
                parked = parse_parked(raw, self._queue.name)
                tag = raw.delivery_tag
                if select(parked) and await act(parked) and tag is not None:
                    await underlay.basic_ack(tag)
        finally:
            # Closing the channel requeues every message we looked at but did not replay.
            async with asyncio.timeout(5):
                await connection.close()


async def _get(channel: aiormq.abc.AbstractChannel, queue: str) -> DeliveredMessage | None:
    raw = await channel.basic_get(queue, no_ack=False)
    if raw.delivery_tag is None:  # Basic.GetEmpty
        return None
    return raw


def dumps(messages: list[ParkedMessage]) -> str:
    """JSON lines, one parked message per line."""
    return "\n".join(json.dumps(m.summary(), default=str) for m in messages)
