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

The same process runs intake's state mirror (:mod:`.mirror`): an :class:`InboxConsumer` on
``intake.deliveries`` writing tracking's state changes into ``intake.db``. One consumer per relay
replica; the inbox in ``intake.db`` makes a redelivery a no-op.

Credentials and declarations: with a platform secrets file (``DRILL_PLATFORM_SECRETS`` or ``<run
dir>/secrets/platform.json``) the relay connects as the ``intake`` user, which may not declare
exchanges (provisioning did), so it declares only intake's own queues. Without one it connects with
``DRILL_AMQP_URLS`` and declares the whole platform topology (or, with
``DRILL_INTAKE_DECLARE_PLATFORM_TOPOLOGY=false``, only the ``orders`` exchange — then there is no
``intake.deliveries`` queue and the mirror stays off).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from system.logs import get_logger
from system.messaging import outbox
from system.messaging.connector import ClusterConnector
from system.messaging.consumer import InboxConsumer
from system.messaging.db import open_db
from system.messaging.declare import declare_topology
from system.messaging.publisher import ConfirmingPublisher
from system.messaging.relay import OutboxRelay
from system.messaging.settings import MessagingSettings
from system.platform.contracts import StateChanged
from system.platform.topology import INTAKE, INTAKE_DELIVERIES, ORDERS, platform_topology
from system.shutdown import stop_with_deadline

from .admission import LagSampler
from .mirror import decode_state_changed, handle_state_changed
from .settings import IntakeSettings
from .store import IntakeStore

log = get_logger(__name__)


def _declare_mode(settings: IntakeSettings) -> str:
    if settings.uses_platform_secrets:
        return "own-queues"
    return "platform" if settings.declare_platform_topology else "orders-exchange"


def mirror_enabled(settings: IntakeSettings) -> bool:
    """Whether the relay consumes ``intake.deliveries``: asked for, and the queue is declared."""
    return settings.mirror_states and _declare_mode(settings) != "orders-exchange"


async def declare(settings: IntakeSettings, msg: MessagingSettings, stop: asyncio.Event) -> bool:
    """Declare what intake uses — its own queues as the ``intake`` user (secrets file), else the whole
    platform topology, or only the ``orders`` exchange — retrying on any node until it works or ``stop``
    is set. Publishing before would only collect returns."""
    mode = _declare_mode(settings)
    connector = ClusterConnector(msg, name="intake:declare")
    delay = msg.reconnect_initial_s
    while not stop.is_set():
        try:
            connection = await connector.connect(stop)
        except ConnectionError:
            return False
        try:
            async with asyncio.timeout(30):
                if mode == "own-queues":
                    # The intake user may not declare exchanges: provisioning declared them.
                    await declare_topology(connection, platform_topology(), service=INTAKE)
                elif mode == "platform":
                    await declare_topology(connection, platform_topology())
                else:
                    channel = await connection.channel()
                    await channel.declare_exchange(ORDERS, "topic", durable=True)
                    await channel.close()
            log.info("topology declared", extra={"mode": mode})
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


async def _mark_ready(settings: IntakeSettings, mirror: InboxConsumer[StateChanged] | None) -> None:
    """The ready marker (``<run dir>/ready/intake.<replica>``), once the mirror consumes (if it runs)."""
    if mirror is not None:
        await mirror.consuming.wait()
    marker = settings.ready_marker
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    log.info("intake relay ready", extra={"mirror": mirror is not None})


async def run_relay(settings: IntakeSettings, msg: MessagingSettings) -> None:
    """Relay until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_with_deadline(stop.set, 4 * settings.shutdown_grace_s + 10.0))
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
    mirror: InboxConsumer[StateChanged] | None = None
    if mirror_enabled(settings):
        mirror = InboxConsumer(
            msg,
            db_path=settings.database,
            topology=platform_topology(),
            queue=INTAKE_DELIVERIES,
            handler=handle_state_changed,
            decode=decode_state_changed,
            name=f"{INTAKE}.{settings.replica}:{INTAKE_DELIVERIES}",
        )
    else:
        log.warning(
            "state mirror off: intake.db will not see tracking's state changes",
            extra={"mirror_states": settings.mirror_states, "mode": _declare_mode(settings)},
        )
    mirror_task = asyncio.create_task(mirror.run()) if mirror is not None else None
    sampler_task: asyncio.Task[None] | None = None
    if settings.admission_enabled:
        # Admission control's lag (system/intake/admission.py): the HTTP replicas read it from intake.db.
        sampler = LagSampler(
            settings.database,
            settings.admission_queues,
            settings.admission_sample_s,
            settings.admission_probe_timeout_s,
            msg=msg,
            synchronous=settings.sqlite_synchronous,
            count_unbooked=settings.mirror_states,
        )
        sampler_task = asyncio.create_task(sampler.run(stop))
    ready = asyncio.create_task(_mark_ready(settings, mirror))
    await stop.wait()
    t0 = time.monotonic()
    ready.cancel()
    if mirror is not None:
        mirror.stop()
    # Publishes in flight get a grace period; then closing the publisher ends the ones stuck waiting for
    # a broker (their rows stay pending and are published again by the next relay).
    done, _ = await asyncio.wait({task}, timeout=settings.shutdown_grace_s)
    if not done:
        await publisher.close()
        done, _ = await asyncio.wait({task}, timeout=settings.shutdown_grace_s)
    if not done:
        task.cancel()
    await asyncio.gather(task, reporter, ready, return_exceptions=True)
    if sampler_task is not None:
        await asyncio.gather(sampler_task, return_exceptions=True)
    await publisher.close()
    if mirror_task is not None:
        # The consumer finishes its batch in hand (commit, then ack) before it returns.
        _, pending = await asyncio.wait({mirror_task}, timeout=2 * settings.shutdown_grace_s)
        for leftover in pending:
            leftover.cancel()
        await asyncio.gather(mirror_task, return_exceptions=True)
    with contextlib.suppress(FileNotFoundError):
        settings.ready_marker.unlink()
    log.info(
        "intake relay stopped",
        extra={"published": relay.stats.published, "stop_s": round(time.monotonic() - t0, 3)},
    )
