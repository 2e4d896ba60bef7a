"""Least privilege on a real broker: each service's user can use its own queues and nothing else."""

from __future__ import annotations

import json

import aio_pika
import aiormq
import pytest

from system.platform.settings import amqp_urls_from_secrets
from system.platform.topology import DISPATCH_ANSWERS, ORDERS, QUOTING_ORDERS, TRACKING, platform_topology

from .conftest import PlatformVhost


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


def _url(pv: PlatformVhost, service: str) -> str:
    return amqp_urls_from_secrets(json.loads(pv.secrets.read_text()), service)[0]


async def test_a_service_is_refused_another_services_queue(platform_vhost: PlatformVhost) -> None:
    assert oct(platform_vhost.secrets.stat().st_mode & 0o777) == "0o600"
    conn = await aio_pika.connect(_url(platform_vhost, "quoting"))
    try:
        own = await conn.channel()
        queue = await own.get_queue(QUOTING_ORDERS, ensure=True)  # its own queue: allowed
        assert queue.name == QUOTING_ORDERS
        other = await conn.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match=DISPATCH_ANSWERS):
            q = await other.get_queue(DISPATCH_ANSWERS, ensure=False)
            await q.consume(_ignore)
        third = await conn.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match=TRACKING):
            ex = await third.get_exchange(TRACKING, ensure=False)
            await ex.publish(aio_pika.Message(b"{}"), "delivery.state.delivered")
            await third.close()  # the refusal arrives asynchronously; a round trip surfaces it
    finally:
        await conn.close()


async def test_every_user_can_declare_its_own_queues_and_the_guest_user_is_unused(
    platform_vhost: PlatformVhost,
) -> None:
    from system.messaging.declare import declare_topology

    topo = platform_topology(platform_vhost.vhost)
    for service in ("intake", "quoting", "dispatch", "gateway", "tracking", "notifications", "couriers"):
        url = _url(platform_vhost, service)
        assert "guest" not in url
        conn = await aio_pika.connect(url)
        try:
            await declare_topology(conn, topo, service=service)
        finally:
            await conn.close()
    # intake may publish orders but not consume anybody's queue
    conn = await aio_pika.connect(_url(platform_vhost, "intake"))
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(ORDERS, ensure=False)
        await ex.publish(aio_pika.Message(b"{}", headers={"x-delivery-id": "dlv_x"}), "order.nothing")
        ch2 = await conn.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            q = await ch2.get_queue(QUOTING_ORDERS, ensure=False)
            await q.consume(_ignore)
    finally:
        await conn.close()
