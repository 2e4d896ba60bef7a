"""The AMQP Locust user against the real 3-node cluster: confirmed publishes all reach the quorum queue."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from pathlib import Path

import aio_pika
import pytest
from fake_intake import ROOT

from loadtests.ledger import INTERRUPTED
from loadtests.runner import run_locust
from rig.cluster import Cluster

pytestmark = pytest.mark.integration

AMQP_USER = ROOT / "loadtests" / "amqp_user.py"


async def _drain(url: str, queue: str, expect_at_least: int, deadline_s: float = 30.0) -> list[str]:
    """Consume ``queue`` until it is empty (and at least ``expect_at_least`` came); the message ids."""
    ids: list[str] = []
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=500)
        q = await ch.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        deadline = time.monotonic() + deadline_s
        async with q.iterator() as it:
            while time.monotonic() < deadline:
                try:
                    msg = await asyncio.wait_for(it.__anext__(), timeout=2.0)
                except TimeoutError:
                    if len(ids) >= expect_at_least:
                        break  # nothing more for 2 s and everything confirmed has come: empty
                    continue
                ids.append(str(msg.message_id))
                await msg.ack()
        await q.delete(if_unused=False, if_empty=False)
    finally:
        await conn.close()
    return ids


def test_amqp_user_publishes_confirmed_messages(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.amqp_urls[0]
    queue = f"loadtest.publish.{uuid.uuid4().hex[:8]}"
    run = tmp_path / "run"
    result = run_locust(
        AMQP_USER,
        url,
        run,
        users=16,
        spawn_rate=16,
        duration=5,
        env={"DRILL_AMQP_URL": url, "DRILL_AMQP_QUEUE": queue, "DRILL_AMQP_SIZE": "512"},
    )
    log = (run / "locust" / "master.log").read_text()
    assert result.exit_code == 0, log[-3000:]
    stats = result.endpoint(f"publish {queue}", "AMQP")
    assert stats is not None and stats.requests > 0, [e.name for e in result.endpoints]
    assert stats.failures == 0
    # The op file: every attempt has exactly one outcome, and the confirmed ones match the stats.
    ops = [
        json.loads(line)
        for part in (run / "locust").glob("amqp-*.jsonl")
        for line in part.read_text().splitlines()
    ]
    kinds = Counter(op["kind"] for op in ops)
    acked = {op["id"] for op in ops if op["kind"] == "ack"}
    attempted = {op["id"] for op in ops if op["kind"] == "attempt"}
    # Every attempt has exactly one outcome. Locust counts all of them but the publishes it cut when it
    # ended the run (at most one per user): those are recorded as unknown, "interrupted".
    interrupted = {op["id"] for op in ops if op["kind"] == "unknown" and op.get("error") == INTERRUPTED}
    assert kinds["attempt"] == len(attempted) == kinds["ack"] + kinds["fail"] + kinds["unknown"]
    assert len(interrupted) <= 16
    assert len(attempted) - len(interrupted) == stats.requests
    assert len(acked) == stats.requests - stats.failures
    dequeued = asyncio.run(_drain(url, queue, len(acked)))
    unique = set(dequeued)
    assert not acked - unique, f"lost: {len(acked - unique)} confirmed messages never dequeued"
    assert not unique - attempted, "unexpected: dequeued messages nobody published"
    print(
        f"\n[loadtest] AMQP: {stats.requests} confirmed publishes in ~5 s ({stats.rps:.0f}/s), "
        f"median {stats.median_ms} ms p95 {stats.p95_ms} ms; {len(dequeued)} dequeued, {len(unique)} unique"
    )
