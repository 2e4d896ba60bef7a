"""Intake as real processes under the supervisor, against the session's real 3-node cluster.

``intake_system`` starts ``system/services.toml`` (2 HTTP replicas + the relay) with free ports, the
cluster's URLs and a simulator-written retailers file; ``orders_queue`` is a fresh quorum queue bound to
the ``orders`` exchange, from which :func:`drain_ids` counts the delivery ids of ``order.created``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import sqlite3
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest

from rig.cluster import Cluster
from rig.ports import port_free
from rig.supervisor import SystemHandle
from simulator.channels.base import WireRequest
from simulator.channels.encoders import Encoders
from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.orders import OrderGenerator, OrderSpec
from simulator.sender import Answer, HttpSender
from simulator.world import Retailer, build_retailers, write_retailers_file

ROOT = Path(__file__).resolve().parents[3]
SEED = 42


@dataclass
class World:
    """Retailers (and their secrets file) and orders, encoded by the simulator's own encoders."""

    path: Path
    retailers: dict[str, Retailer]
    orders: list[OrderSpec]
    encoders: Encoders

    def requests(self, order: OrderSpec) -> list[WireRequest]:
        return self.encoders.for_channel(order.channel).encode_order(order, self.retailers[order.retailer_id])


def make_world(tmp: Path, count: int) -> World:
    scenario = Scenario.model_validate(
        {
            "arrivals": {"rate": 10.0},
            "world": {"retailers": 6, "channel_mix": {"rest": 1, "shopify": 1, "epos": 1}},
            # Many ePOS orders get an order.updated, some before their order.created.
            "webhooks": {"update_share": 0.5, "out_of_order_share": 0.3},
        }
    )
    retailers = build_retailers(SEED, scenario)
    path = tmp / "secrets" / "retailers.json"
    write_retailers_file(path, SEED, retailers)
    orders = [o for _, o in zip(range(count), OrderGenerator(scenario, SEED, retailers), strict=False)]
    return World(path, {r.id: r for r in retailers}, orders, Encoders(SimClock(epoch=time.time())))


def free_port_base() -> int:
    for _ in range(200):
        base = random.randrange(20000, 40000)
        if port_free("127.0.0.1", base) and port_free("127.0.0.1", base + 1):
            return base
    raise RuntimeError("no two free consecutive ports")


@dataclass
class IntakeSystem:
    handle: SystemHandle
    run_dir: Path
    ports: list[int]

    @property
    def db(self) -> Path:
        return self.run_dir / "intake.db"

    def url(self, replica: int) -> str:
        return f"http://127.0.0.1:{self.ports[replica]}"

    def scalar(self, sql: str, *args: object) -> int:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as conn:
            return int(conn.execute(sql, args).fetchone()[0])

    def delivery_ids(self) -> set[str]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as conn:
            return {r[0] for r in conn.execute("SELECT id FROM deliveries")}


def write_spec(tmp: Path, cluster: Cluster, world: World, base: int) -> Path:
    """``system/services.toml`` with this test's ports, broker URLs, retailers and short timeouts."""
    specs = [
        s
        for s in tomllib.loads((ROOT / "system" / "services.toml").read_text())["service"]
        if s["name"] in ("intake", "intake-relay")  # the spec also lists the other platform services
    ]
    env = {
        "PYTHONPATH": str(ROOT),
        "DRILL_RETAILERS": str(world.path),
        "DRILL_AMQP_URLS": ",".join(cluster.amqp_urls),
        "DRILL_MSG_PUBLISH_TIMEOUT_S": "3",
        "DRILL_MSG_CONNECT_TIMEOUT_S": "2",
        "DRILL_MSG_HEARTBEAT_S": "5",
        "DRILL_MSG_RECONNECT_MAX_S": "1",
        "DRILL_MSG_RELAY_RETRY_BACKOFF_S": "0.5",
        # Only the orders exchange: the test binds its own queue (the platform's would fill up).
        "DRILL_INTAKE_DECLARE_PLATFORM_TOPOLOGY": "false",
        "DRILL_INTAKE_RELAY_STATS_EVERY_S": "2",
    }
    lines = []
    for s in specs:
        service_env = {**env, **{k: v.replace("8080", str(base)) for k, v in s.get("env", {}).items()}}
        lines += [
            "[[service]]",
            f"name = {json.dumps(s['name'])}",
            f"argv = {json.dumps(s['argv'])}",
            f"replicas = {s.get('replicas', 1)}",
            "env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in service_env.items()) + " }",
            "",
        ]
    path = tmp / "services.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path, 600)


@pytest.fixture
async def orders_queue(cluster: Cluster) -> AsyncIterator[str]:
    """A fresh quorum queue bound to ``orders`` with ``order.#`` (so updates and cancellations are routable
    too); deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}.intake-orders"
    connection = await aio_pika.connect(cluster.amqp_urls[0], timeout=10)
    channel = await connection.channel()
    exchange = await channel.declare_exchange("orders", "topic", durable=True)
    queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind(exchange, "order.#")
    await connection.close()
    yield name
    for url in cluster.amqp_urls:
        try:
            connection = await aio_pika.connect(url, timeout=5)
        except Exception:
            continue
        try:
            channel = await connection.channel()
            await channel.queue_delete(name)
        finally:
            await connection.close()
        break


@pytest.fixture
def intake_system(tmp_path: Path, cluster: Cluster, world: World) -> Iterator[IntakeSystem]:
    base = free_port_base()
    spec = write_spec(tmp_path, cluster, world, base)
    run_dir = tmp_path / "run"
    handle = SystemHandle.start(run_dir, spec)
    system = IntakeSystem(handle, run_dir, [base, base + 1])
    try:
        yield system
    finally:
        handle.stop()
        for log in sorted((run_dir / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-3:]
            print(f"[{log.name}] " + " | ".join(line[:200] for line in tail))


async def wait_ready(system: IntakeSystem, replicas: list[int], within: float = 20.0) -> None:
    """Until ``GET /readyz`` answers 200 on each replica (a deadline, not a sleep)."""
    import aiohttp

    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        for r in replicas:
            while True:
                try:
                    async with session.get(system.url(r) + "/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"intake#{r} not ready after {within} s")
                await asyncio.sleep(0.05)


async def send_all(
    system: IntakeSystem, world: World, orders: list[OrderSpec], concurrency: int = 32
) -> list[tuple[OrderSpec, list[Answer]]]:
    """Every request of every order (ePOS updates in their order, after or before the create), order n
    to replica n % 2. Returns the answers per order."""
    senders = [HttpSender(system.url(r), concurrency=concurrency, timeout_s=10) for r in (0, 1)]
    for s in senders:
        await s.__aenter__()
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int, order: OrderSpec) -> tuple[OrderSpec, list[Answer]]:
        async with gate:
            return order, [await senders[n % 2].send(req) for req in world.requests(order)]

    t0 = time.monotonic()
    try:
        out = list(await asyncio.gather(*(one(n, o) for n, o in enumerate(orders))))
        requests = sum(len(answers) for _, answers in out)
        elapsed = time.monotonic() - t0
        print(f"\n[send] {requests} requests in {elapsed:.2f} s: {requests / elapsed:.0f} req/s")
        return out
    finally:
        for s in senders:
            await s.__aexit__(None, None, None)


async def drain_ids(
    cluster: Cluster, queue: str, expected: set[str], within: float
) -> collections.Counter[str]:
    """Consume ``queue`` (manual acks) until the ``order.created`` of every id of ``expected`` was seen or
    ``within`` passed; returns how often each delivery id's ``order.created`` came (duplicates: above 1)."""
    seen: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not expected <= set(seen):
        for url in cluster.amqp_urls:
            try:
                connection = await aio_pika.connect(url, timeout=5)
                break
            except Exception:
                continue
        else:
            await asyncio.sleep(0.5)
            continue
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=500)
            q = await channel.get_queue(queue, ensure=False)
            async with q.iterator() as it:
                while time.monotonic() < deadline and not expected <= set(seen):
                    try:
                        message = await asyncio.wait_for(it.__anext__(), timeout=1.0)
                    except TimeoutError:
                        continue
                    doc = json.loads(message.body)
                    if doc["type"] == "order.created":
                        seen[doc["delivery_id"]] += 1
                    await message.ack()
        except Exception as exc:  # a node still recovering: reconnect and go on
            print(f"[drain] {exc!r}; reconnecting")
        finally:
            await connection.close()
    return seen
