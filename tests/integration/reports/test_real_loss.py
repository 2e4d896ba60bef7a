"""The audit catches a real loss on a real broker, exactly, and exits non-zero; a clean run passes.

The loss is made the way operators make it: a quorum queue is deleted while confirmed messages are
still in it. Every publish is recorded as ``attempt`` then ``ack`` (publisher confirm), every
consumed message as ``observe``; the audit must report lost = exactly the messages that were in the
queue when it was deleted.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import pytest

from rig.cluster import Cluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


async def publish_consume(
    url: str, total: int, consume: int, delete_rest: bool
) -> tuple[set[str], list[dict[str, object]]]:
    """Publish ``total`` confirmed messages, consume ``consume`` of them; the ids never consumed, and the ops."""
    queue_name = f"audit-loss-{uuid.uuid4().hex[:8]}"
    records: list[dict[str, object]] = []
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        queue = await ch.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        ids = [f"m-{i:05d}" for i in range(total)]
        for mid in ids:
            records.append({"t": time.time(), "kind": "attempt", "id": mid, "flow": "loss"})
            await ch.default_exchange.publish(
                aio_pika.Message(
                    mid.encode(), message_id=mid, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                ),
                routing_key=queue_name,
                mandatory=True,
            )  # returns once the broker confirmed it
            records.append({"t": time.time(), "kind": "ack", "id": mid, "flow": "loss"})
        seen: set[str] = set()
        while len(seen) < consume:
            msg = await queue.get(no_ack=False, timeout=10)
            assert msg is not None
            await msg.ack()
            seen.add(str(msg.message_id))
            records.append({"t": time.time(), "kind": "observe", "id": msg.message_id, "flow": "loss"})
        if delete_rest:
            await ch.queue_delete(queue_name, if_empty=False)  # the loss: confirmed messages destroyed
        else:
            while len(seen) < total:
                msg = await queue.get(no_ack=False, timeout=10)
                assert msg is not None
                await msg.ack()
                seen.add(str(msg.message_id))
                records.append({"t": time.time(), "kind": "observe", "id": msg.message_id, "flow": "loss"})
            await ch.queue_delete(queue_name)
    return set(ids) - seen, records


def write_ops(run_dir: Path, records: list[dict[str, object]]) -> None:
    run_dir.mkdir()
    (run_dir / "ops.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def audit(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "audit", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_deleted_queue_is_reported_as_exactly_its_lost_messages(cluster: Cluster, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    destroyed, records = asyncio.run(publish_consume(cluster.amqp_urls[0], 300, 180, True))
    write_ops(run_dir, records)
    assert len(destroyed) == 120
    res = audit(run_dir)
    print(res.stdout)
    assert res.returncode == 1, res.stdout + res.stderr
    verdict = next(line for line in res.stdout.splitlines() if line.startswith("VERDICT:"))
    assert "VERDICT: FAIL" in verdict and " lost=120 " in f"{verdict} " and "unexpected=0" in verdict
    report = json.loads((run_dir / "audit" / "report.json").read_text())
    flow = (
        next(f for f in report["flows"] if f["name"] == "loss")
        if isinstance(report["flows"], list)
        else report["flows"]["loss"]
    )
    assert flow["counts"]["lost"] == 120 and flow["counts"]["ok"] == 180
    assert set(flow["samples"]["lost"]) <= destroyed


def test_the_same_run_without_the_deletion_passes(cluster: Cluster, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    missing, records = asyncio.run(publish_consume(cluster.amqp_urls[0], 300, 180, False))
    assert missing == set()
    write_ops(run_dir, records)
    res = audit(run_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "VERDICT: PASS" in res.stdout and "lost=0" in res.stdout
