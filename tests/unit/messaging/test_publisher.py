"""ConfirmingPublisher's failure handling against a scripted fake broker channel (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiormq
import pytest
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from system.messaging.envelope import OutgoingMessage
from system.messaging.publisher import ConfirmingPublisher, UnroutableMessage
from system.messaging.settings import MessagingSettings

# What the broker does with the n-th publish (0-based, over all channels): "ack", "nack", "hang",
# "return" or "drop" (the channel dies).
Script = Callable[[int], str]


@dataclass
class FakeBroker:
    script: Script
    publishes: list[tuple[int, str]] = field(default_factory=list)  # (channel number, message id)
    channels_opened: int = 0
    concurrent: int = 0
    max_concurrent: int = 0
    ack_delay: float = 0.0


class FakeUnderlay:
    def __init__(self, broker: FakeBroker, number: int, channel: FakeChannel) -> None:
        self.broker, self.number, self.channel = broker, number, channel

    async def basic_publish(self, body: bytes, *, properties: spec.Basic.Properties, **_: Any) -> object:
        broker = self.broker
        n = len(broker.publishes)
        broker.publishes.append((self.number, str(properties.message_id)))
        broker.concurrent += 1
        broker.max_concurrent = max(broker.max_concurrent, broker.concurrent)
        try:
            if self.channel.is_closed:
                raise aiormq.exceptions.ChannelInvalidStateError("closed")
            action = broker.script(n)
            await asyncio.sleep(broker.ack_delay)
            if action == "nack":
                raise aiormq.exceptions.DeliveryError(None, spec.Basic.Nack(delivery_tag=n))
            if action == "hang":
                await asyncio.Event().wait()
            if action == "return":
                returned = DeliveredMessage(
                    delivery=spec.Basic.Return(
                        reply_code=312, reply_text="NO_ROUTE", exchange="ex", routing_key="k"
                    ),
                    header=ContentHeader(properties=properties, body_size=len(body)),
                    body=body,
                    channel=None,  # type: ignore[arg-type]
                )
                raise aiormq.exceptions.PublishError(returned, returned.delivery)  # type: ignore[arg-type]
            if action == "drop":
                self.channel.is_closed = True
                raise aiormq.exceptions.ChannelInvalidStateError("channel closed by broker")
            return spec.Basic.Ack(delivery_tag=n)
        finally:
            broker.concurrent -= 1


class FakeChannel:
    def __init__(self, broker: FakeBroker) -> None:
        broker.channels_opened += 1
        self.is_closed = False
        self._underlay = FakeUnderlay(broker, broker.channels_opened, self)

    async def get_underlay_channel(self) -> FakeUnderlay:
        return self._underlay

    async def close(self) -> None:
        self.is_closed = True


class FakeConnection:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker, self.is_closed = broker, False

    async def channel(self, **_: Any) -> FakeChannel:
        return FakeChannel(self.broker)

    async def close(self) -> None:
        self.is_closed = True


class FakeConnector:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker, self.connects = broker, 0

    async def connect(self, stop: asyncio.Event | None = None) -> FakeConnection:
        self.connects += 1
        return FakeConnection(self.broker)


def publisher_for(broker: FakeBroker, **settings: Any) -> tuple[ConfirmingPublisher, FakeConnector]:
    connector = FakeConnector(broker)
    values: dict[str, Any] = {"publish_timeout_s": 0.05, "confirm_window": 8, **settings}
    pub = ConfirmingPublisher(MessagingSettings(**values), connector=connector)  # type: ignore[arg-type]
    return pub, connector


def msg(i: int = 0) -> OutgoingMessage:
    return OutgoingMessage.json("ex", "k", {"i": i}, message_id=f"m{i}")


async def test_nack_republishes_the_same_id_on_a_fresh_channel() -> None:
    broker = FakeBroker(lambda n: "nack" if n < 2 else "ack")
    pub, _ = publisher_for(broker)
    await pub.publish(msg())
    assert [mid for _, mid in broker.publishes] == ["m0", "m0", "m0"]
    assert len({ch for ch, _ in broker.publishes}) == 3  # each retry on a new channel
    assert (pub.stats.nacked, pub.stats.confirmed) == (2, 1)


async def test_confirm_timeout_means_unknown_outcome_and_a_republish() -> None:
    broker = FakeBroker(lambda n: "hang" if n == 0 else "ack")
    pub, _ = publisher_for(broker)
    await asyncio.wait_for(pub.publish(msg()), 5)
    assert [mid for _, mid in broker.publishes] == ["m0", "m0"]
    assert pub.stats.timed_out == 1 and pub.stats.confirmed == 1


async def test_lost_channel_republishes_after_reconnecting() -> None:
    broker = FakeBroker(lambda n: "drop" if n == 0 else "ack")
    pub, connector = publisher_for(broker)
    await pub.publish(msg())
    assert pub.stats.channel_lost == 1 and pub.stats.confirmed == 1
    assert connector.connects == 2  # the dead channel's connection was replaced (maybe another node)


async def test_a_return_is_a_failure_not_a_success() -> None:
    broker = FakeBroker(lambda n: "return")
    pub, _ = publisher_for(broker)
    with pytest.raises(UnroutableMessage):
        await pub.publish(msg())
    assert len(broker.publishes) == 1 and pub.stats.confirmed == 0


async def test_the_window_bounds_unconfirmed_publishes() -> None:
    broker = FakeBroker(lambda n: "ack", ack_delay=0.01)
    pub, _ = publisher_for(broker, confirm_window=3)
    await asyncio.gather(*(pub.publish(msg(i)) for i in range(20)))
    assert broker.max_concurrent == 3 and pub.stats.confirmed == 20
    assert sorted(mid for _, mid in broker.publishes) == sorted(f"m{i}" for i in range(20))
