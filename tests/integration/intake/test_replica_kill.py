"""SIGKILL of an intake replica (and of the relay) mid-traffic: the other replica keeps answering and
no accepted order is lost.

Who publishes the killed replica's rows: the replicas share ONE intake DB and publish nothing
themselves; the separate relay process publishes every committed outbox row, whichever replica wrote
it. So a row committed by replica 0 a moment before its SIGKILL is published by the relay as usual.
The relay is SIGKILLed too, mid-traffic: its unconfirmed or unrecorded rows stay ``pending`` and the
restarted relay (the supervisor brings it back) republishes them with the same message ids.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from rig.cluster import Cluster
from simulator.sender import Answer, HttpSender

from .conftest import IntakeSystem, World, drain_ids, wait_ready

pytestmark = pytest.mark.integration


async def test_replica_and_relay_sigkill_mid_traffic(
    cluster: Cluster, intake_system: IntakeSystem, world: World, orders_queue: str
) -> None:
    await wait_ready(intake_system, [0, 1])
    orders = world.orders[:400]
    senders = [HttpSender(intake_system.url(r), concurrency=16, timeout_s=10) for r in (0, 1)]
    for s in senders:
        await s.__aenter__()
    answered = 0
    killed = asyncio.Event()
    at_replica1: list[Answer] = []
    failed_over = 0
    final: dict[str, list[Answer]] = {}
    gate = asyncio.Semaphore(16)
    reached = {120: asyncio.Event(), 200: asyncio.Event()}  # answered orders → kill replica 0, the relay

    async def client(n: int) -> None:
        """A retailer behind a load balancer: replica n % 2 first; on no answer or a 5xx, the same bytes
        again on the other replica (an unknown outcome is retried with the same idempotency key)."""
        nonlocal answered, failed_over
        order = orders[n]
        async with gate:
            out = []
            for req in world.requests(order):
                first = n % 2
                answer = await senders[first].send(req)
                if first == 1:
                    at_replica1.append(answer)
                if answer.outcome == "unknown":
                    failed_over += 1
                    answer = await senders[1 - first].send(req)
                    if first == 0:
                        at_replica1.append(answer)
                out.append(answer)
            final[order.ref] = out
            answered += 1
            if answered in reached:
                reached[answered].set()
        # Pace the traffic a little so the kill lands mid-stream, not after it.
        await asyncio.sleep(0.002 * (n % 7))

    async def chaos() -> None:
        await reached[120].wait()
        intake_system.handle.signal("intake", 0, signal.SIGKILL)
        await reached[200].wait()
        intake_system.handle.signal("intake-relay", 0, signal.SIGKILL)
        killed.set()

    old_pid = intake_system.handle.replica("intake", 0)["pid"]
    chaos_task = asyncio.create_task(chaos())
    await asyncio.gather(*(client(n) for n in range(len(orders))))
    await chaos_task
    assert killed.is_set()
    try:
        # The other replica answered everything it was sent, before and after the kill.
        bad = [a for a in at_replica1 if a.http_status not in (200, 202)]
        assert not bad, bad[:3]
        # And every order was accepted in the end (the failed-over ones by replica 1, same delivery ids).
        statuses = {a.http_status for answers in final.values() for a in answers}
        assert statuses <= {200, 202}, statuses
        accepted = {a.delivery_id for answers in final.values() for a in answers if a.delivery_id}
        assert len(final) == len(orders)
        # One delivery per order although some were sent to both replicas (committed by replica 0 just
        # before it died, then retried on replica 1): the retry found the same row.
        assert len(accepted) == len(orders) == intake_system.scalar("SELECT COUNT(*) FROM deliveries")

        # Replica 0 comes back (the supervisor restarts it) and takes orders again.
        intake_system.handle.wait("running", "intake", 0, timeout=30, not_pid=old_pid)
        await wait_ready(intake_system, [0])
        (req,) = [r for r in world.requests(world.orders[450]) if r.kind == "order"][:1]
        answer = await senders[0].send(req)
        assert answer.http_status == 202 and answer.delivery_id
        accepted.add(answer.delivery_id)
    finally:
        for s in senders:
            await s.__aexit__(None, None, None)

    t0 = time.monotonic()
    seen = await drain_ids(cluster, orders_queue, accepted, within=45)
    lost = accepted - set(seen)
    committed = intake_system.delivery_ids()
    print(
        f"\n[replica kill] accepted={len(accepted)} failed_over={failed_over} replica1_answers={len(at_replica1)}"
        f" consumed_unique={len(seen)} lost={len(lost)} unexpected={len(set(seen) - committed)}"
        f" duplicates={sum(n - 1 for n in seen.values())} drained_in={time.monotonic() - t0:.1f} s"
    )
    assert failed_over > 0, "the kill landed after the traffic: the test proved nothing"
    assert not lost, sorted(lost)[:5]
    assert set(seen) <= committed
