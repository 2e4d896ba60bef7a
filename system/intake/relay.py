"""The intake relay process: publishes the intake DB's outbox to the broker with confirms.

Why a separate process (``python -m system.intake relay``, one replica in ``system/services.toml``)
rather than a relay task inside each HTTP replica: the replicas share one DB file, and the messaging
core's :class:`OutboxRelay` publishes every pending row of the table it reads, so N in-process relays
would each publish every row N times. One relay process publishes each row once (plus the republishes
an unknown outcome needs), the HTTP replicas never touch AMQP (a broker outage cannot stall or crash
them), and rows committed by a replica that is SIGKILLed a moment later are published all the same.
If the relay itself dies, its rows stay ``pending``; the supervisor restarts it and it republishes
them with the same message ids (consumers deduplicate).

While every broker node is down the publisher's connector retries with capped backoff
(``DRILL_MSG_RECONNECT_MAX_S``); the backlog waits in the DB and flows when a node returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from system.logs import get_logger
from system.messaging import outbox
from system.messaging.connector import ClusterConnector
from system.messaging.db import open_db
from system.messaging.declare import declare_topology
from system.messaging.publisher import ConfirmingPublisher
from system.messaging.relay import OutboxRelay
from system.messaging.settings import MessagingSettings
from system.platform.topology import ORDERS, platform_topology

from .settings import IntakeSettings
from .store import IntakeStore

log = get_logger(__name__)


async def declare(settings: IntakeSettings, msg: MessagingSettings, stop: asyncio.Event) -> bool:
    """Declare what intake publishes to (the ``orders`` exchange, or the whole platform topology), retrying
    on any node until it works or ``stop`` is set. Publishing before would only collect returns."""
    connector = ClusterConnector(msg, name="intake:declare")
    delay = msg.reconnect_initial_s
    while not stop.is_set():
        try:
            connection = await connector.connect(stop)
        except ConnectionError:
            return False
        try:
            async with asyncio.timeout(30):
                if settings.declare_platform_topology:
                    await declare_topology(connection, platform_topology())
                else:
                    channel = await connection.channel()
                    await channel.declare_exchange(ORDERS, "topic", durable=True)
                    await channel.close()
            log.info("topology declared", extra={"platform": settings.declare_platform_topology})
            return True
        except Exception as exc:  # a node dying mid-declare: any failure here means "try again"
            log.warning("declaring the topology failed; retrying", extra={"error": repr(exc)})
        finally:
            with contextlib.suppress(Exception):
                await connection.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, msg.reconnect_max_s)
    return False


async def _report(store_path: str, relay: OutboxRelay, every_s: float, stop: asyncio.Event) -> None:
    """One "relay progress" line every ``every_s``: pending rows (the backlog) and what was published."""
    db = await open_db(store_path)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            try:
                pending = await outbox.count_pending(db)
            except Exception as exc:  # a locked DB must not end the report loop
                log.warning("counting pending rows failed", extra={"error": repr(exc)})
                continue
            log.info(
                "relay progress",
                extra={
                    "pending": pending,
                    "published": relay.stats.published,
                    "marked_sent": relay.stats.marked_sent,
                    "returned": relay.stats.returned,
                },
            )
    finally:
        await db.close()


async def run_relay(settings: IntakeSettings, msg: MessagingSettings) -> None:
    """Relay until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Create the tables first, so the relay can start even before any HTTP replica did.
    store = IntakeStore(settings.database, synchronous=settings.sqlite_synchronous)
    await store.open()
    await store.close()
    log.info("intake relay starting", extra={"db": str(settings.database), "nodes": len(msg.amqp_urls)})
    if not await declare(settings, msg, stop):
        return
    publisher = ConfirmingPublisher(msg, name="intake:relay")
    relay = OutboxRelay(settings.database, publisher, msg)
    task = asyncio.create_task(relay.run(stop))
    reporter = asyncio.create_task(_report(str(settings.database), relay, settings.relay_stats_every_s, stop))
    await stop.wait()
    t0 = time.monotonic()
    # Publishes in flight get a grace period; then closing the publisher ends the ones stuck waiting for
    # a broker (their rows stay pending and are published again by the next relay).
    done, _ = await asyncio.wait({task}, timeout=settings.shutdown_grace_s)
    if not done:
        await publisher.close()
        done, _ = await asyncio.wait({task}, timeout=settings.shutdown_grace_s)
    if not done:
        task.cancel()
    await asyncio.gather(task, reporter, return_exceptions=True)
    await publisher.close()
    log.info(
        "intake relay stopped",
        extra={"published": relay.stats.published, "stop_s": round(time.monotonic() - t0, 3)},
    )
