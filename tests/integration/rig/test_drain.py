"""The audit drains before judging: it waits for queues and outboxes to empty, or says what was left."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aio_pika
import pytest

from rig.cluster import LocalCluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


async def publish(url: str, queue: str, n: int) -> list[dict[str, object]]:
    ops: list[dict[str, object]] = []
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for i in range(n):
            mid = f"{queue}-{i}"
            ops.append({"t": time.time(), "kind": "attempt", "id": mid, "flow": "drain"})
            await ch.default_exchange.publish(
                aio_pika.Message(mid.encode(), message_id=mid), queue, mandatory=True
            )
            ops.append({"t": time.time(), "kind": "ack", "id": mid, "flow": "drain"})
    return ops


def slow_consumer(url: str, queue: str, n: int, ops_file: Path, start_when: Path | None = None) -> None:
    """Consumes one message every 30 ms and records each as observed, as a service's inbox would;
    with ``start_when``, only once that file exists (the drain's first depth sample)."""

    deadline = time.monotonic() + 60
    while start_when is not None and time.monotonic() < deadline:
        if start_when.exists() and start_when.stat().st_size > 0:
            break
        time.sleep(0.05)

    async def run() -> None:
        conn = await aio_pika.connect(url)
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=1)
            q = await ch.declare_queue(queue, passive=True)
            with ops_file.open("a") as fh:
                for _ in range(n):
                    msg = await q.get(timeout=30)
                    assert msg is not None
                    await asyncio.sleep(0.03)
                    fh.write(
                        json.dumps(
                            {"t": time.time(), "kind": "observe", "id": msg.message_id, "flow": "drain"}
                        )
                        + "\n"
                    )
                    fh.flush()
                    await msg.ack()

    asyncio.run(run())


def audit(run_dir: Path, rig: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "audit", str(run_dir), "--drain", "--cluster-run-dir", str(rig), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_audit_waits_for_the_backlog_then_passes(local_cluster: LocalCluster, tmp_path: Path) -> None:
    queue = f"drain-{uuid.uuid4().hex[:8]}"
    run_dir = tmp_path / "run"
    (run_dir / "ops").mkdir(parents=True)
    ops = asyncio.run(publish(local_cluster.amqp_urls[0], queue, 60))
    (run_dir / "ops" / "publisher.jsonl").write_text("".join(json.dumps(o) + "\n" for o in ops))
    # The consumer starts once the drain has sampled the queue (60 ready messages): ~2 s of backlog the
    # drain must wait out. Started before, it could finish before a slow audit's first sample.
    consumer = threading.Thread(
        target=slow_consumer,
        args=(local_cluster.amqp_urls[1], queue, 60, run_dir / "ops" / "consumer.jsonl"),
        kwargs={"start_when": run_dir / "metrics" / "queues.jsonl"},
    )
    consumer.start()
    try:
        res = audit(
            run_dir, local_cluster.spec.run_dir, "--drain-queues", f"/{queue}$", "--drain-deadline", "60"
        )
    finally:
        consumer.join(timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "drained in" in res.stdout and "VERDICT: PASS" in res.stdout and "lost=0" in res.stdout
    assert json.loads((run_dir / "drain.json").read_text())["drained"] is True
    samples = (run_dir / "metrics" / "queues.jsonl").read_text().splitlines()
    assert any(
        json.loads(line)["queue"] == f"//{queue}" and json.loads(line)["messages"] > 0 for line in samples
    )
    asyncio.run(_delete(local_cluster.amqp_urls[0], queue))


def test_a_backlog_that_never_drains_is_reported_with_what_was_left(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    queue = f"stuck-{uuid.uuid4().hex[:8]}"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ops = asyncio.run(publish(local_cluster.amqp_urls[0], queue, 20))
    (run_dir / "ops.jsonl").write_text("".join(json.dumps(o) + "\n" for o in ops))
    with sqlite3.connect(run_dir / "service.db") as db:  # an outbox with a row never confirmed
        db.execute("CREATE TABLE outbox (status TEXT)")
        db.execute("INSERT INTO outbox VALUES ('pending'), ('sent')")
    res = audit(run_dir, local_cluster.spec.run_dir, "--drain-queues", f"/{queue}$", "--drain-deadline", "3")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "NOT drained" in res.stdout
    doc = json.loads((run_dir / "drain.json").read_text())
    assert doc["drained"] is False
    assert doc["leftover"] == {f"//{queue}": 20, f"outbox:{run_dir / 'service.db'}": 1}
    assert "FAILED  drained" in res.stdout and "lost=20" in res.stdout
    asyncio.run(_delete(local_cluster.amqp_urls[0], queue))


async def _delete(url: str, queue: str) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel()
        await ch.queue_delete(queue)


def test_the_drill_samples_queue_depths_while_the_traffic_runs(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    """Depths before, during and after a backlog (the per-fault drain time needs all three), from the
    queues themselves, with the outboxes beside them."""
    from reports.faults import read_queue_samples
    from rig.queues import QueueDepthSampler

    queue = f"sampled-{uuid.uuid4().hex[:8]}"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with sqlite3.connect(run_dir / "service.db") as db:
        db.execute("CREATE TABLE outbox (status TEXT)")
        db.execute("INSERT INTO outbox VALUES ('pending'), ('pending'), ('sent')")
    asyncio.run(publish(local_cluster.amqp_urls[0], queue, 0))  # declared, empty
    sampler = QueueDepthSampler(
        run_dir,
        [local_cluster.management_url(n) for n in local_cluster.node_indices],
        local_cluster.admin,
        local_cluster.amqp_urls,
        "/",
        ignore=r"\.retry\.",
        interval_s=0.3,
    )
    name = f"//{queue}"

    def depths() -> list[int]:
        return [m for _, m in read_queue_samples(run_dir / "metrics" / "queues.jsonl").by_queue.get(name, [])]

    def wait(cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {depths()}"
            time.sleep(0.1)

    sampler.start()
    try:
        wait(lambda: len(depths()) >= 2, "samples of the empty queue")
        asyncio.run(publish(local_cluster.amqp_urls[1], queue, 40))
        wait(lambda: 40 in depths(), "the backlog to be sampled")
        slow_consumer(local_cluster.amqp_urls[2], queue, 40, tmp_path / "consumed.jsonl")
        wait(lambda: depths()[-1] == 0, "the drained queue to be sampled")
    finally:
        sampler.stop()
    seen = depths()
    assert seen[0] == 0 and max(seen) == 40 and seen[-1] == 0, seen
    samples = read_queue_samples(run_dir / "metrics" / "queues.jsonl")
    assert samples.malformed == 0
    assert {m for _, m in samples.by_queue["outbox:service.db"]} == {2}
    written = len((run_dir / "metrics" / "queues.jsonl").read_text().splitlines())
    time.sleep(1.0)
    assert len((run_dir / "metrics" / "queues.jsonl").read_text().splitlines()) == written, (
        "stopped means stopped"
    )
    asyncio.run(_delete(local_cluster.amqp_urls[0], queue))
