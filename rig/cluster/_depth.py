"""Queue depths that can be trusted: the queue's own answer to a passive ``queue.declare``.

The management API's ``messages`` for a quorum queue is a statistic: measured here, it stayed ``None``
(and ``0`` with ``enable_queue_totals``) for seconds after 20 messages were published. A drain or a
steady-state probe built on it would pass while messages sit in the queue. The passive declare is
answered by the queue itself with its ready-message count (unacknowledged deliveries not included).
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote, urlsplit, urlunsplit


def _with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


async def _depths(amqp_url: str, queues: list[tuple[str, str]], step_s: float) -> dict[str, int]:
    import aio_pika
    from aio_pika.exceptions import ChannelClosed

    out: dict[str, int] = {}
    by_vhost: dict[str, list[str]] = {}
    for vhost, name in queues:
        by_vhost.setdefault(vhost, []).append(name)
    for vhost, names in by_vhost.items():
        conn = await asyncio.wait_for(aio_pika.connect(_with_vhost(amqp_url, vhost)), step_s)
        async with conn:
            ch = await conn.channel()
            for name in names:
                try:
                    q = await asyncio.wait_for(ch.declare_queue(name, passive=True), step_s)
                except ChannelClosed:  # deleted meanwhile: the broker closed the channel (404)
                    ch = await conn.channel()
                    continue
                out[f"{vhost}/{name}"] = int(q.declaration_result.message_count or 0)
    return out


def amqp_queue_depths(
    amqp_urls: list[str], queues: list[tuple[str, str]], timeout: float = 5.0
) -> dict[str, int] | None:
    """``vhost/name`` -> ready messages, asked of the first node that answers (None: none did)."""
    for url in amqp_urls:
        try:
            return asyncio.run(_depths(url, queues, timeout))
        except Exception:  # a node down or refusing (aio-pika's errors share no base with OSError): next
            continue
    return None
