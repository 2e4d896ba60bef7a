"""Investigation: are confirmed publishes to a quorum queue lost after a whole-cluster SIGKILL?

Suspicion (drill run 20261129T054211Z-demo): after ``full_outage mode=kill`` (every node SIGKILLed at
once, restarted together) the couriers' confirmed, mandatory, persistent publishes to ``gateway.doordash``
(RabbitMQ 3.10.8, quorum queue) were never delivered, while its sibling queues worked.

Reproduction with the session's real 3-node cluster: a topic exchange and a few quorum queues (half
plain, half with the platform's work-queue arguments: delivery limit, at-least-once dead-lettering,
reject-publish), traffic through them (publish with confirms, consume and ack; a consumer is still
attached at the kill like the drill's gateway), then every node down at once exactly as
``chaos.faults.broker.FullOutage`` does (``kill`` per node, or ``stop_nodes`` for ``mode=stop``), all
started together (``start_nodes``, ``restart_all`` as fallback), then N confirmed mandatory publishes per
queue and a fresh consumer that must receive all of them.

Each attempt is printed and appended as one JSON line to ``$FULL_OUTAGE_RESULTS`` (default
``/tmp/full_outage_quorum/results.jsonl``): queue, leader before/after, published/confirmed/received, the
passive-declare counts seen from every node, the management API's view and the broker log lines about
the queue since the outage.

Run: ``DRILL_INVESTIGATIONS=1 .venv/bin/pytest tests/integration/investigations/test_full_outage_quorum.py -s``: 140 s measured
with the cluster start (5 scenarios x ``FULL_OUTAGE_CYCLES`` outages of 25-45 s, default 1;
``FULL_OUTAGE_QUEUES_PER_KIND`` queues of each kind, default 2).

OBSERVED (2026-11-29, RabbitMQ 3.10.8, Erlang/OTP 25 from Debian): the loss does NOT reproduce. 22 full
outages (17 SIGKILL, 5 graceful), 136 queue-outages, 4080 confirmed publishes, 4080 received, 0 missing,
0 returned/nacked; publisher on each node in turn, immediately after the restart or after waiting for
leaders, consumers attached before publishing or a fresh one after. The broker log lines seen in the drill
("follower did not have entry at ...", "await_condition - Leader node ... might be down. Re-entering
follower state.") appeared 58 times in these runs, every time without any loss: they are not a
signature of it. The tests below therefore assert that nothing is lost.

EXPLAINED later (drill run 20261129T075325Z-demo-kill, management API and ``quorum_status`` captured):
the messages were not lost by the broker but checked out to consumers whose node's quorum member was
stuck (``pre_vote``, log behind the commit index) and never sent them (local delivery; the leader counted
them unacked, every channel 0). These tests use a fresh consumer, which did not land on a stuck member.
The consumer now moves to another node when it receives nothing for a while:
tests/integration/messaging/test_consumer_after_outage.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage

from rig.cluster import ClusterError, LocalCluster, ManagementClient

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # 140 s of whole-cluster outages: an investigation kept to re-run, not part of every CI run.
    pytest.mark.skipif(
        not os.environ.get("DRILL_INVESTIGATIONS"),
        reason="investigation (140 s): run with DRILL_INVESTIGATIONS=1",
    ),
]

RESULTS = Path(os.environ.get("FULL_OUTAGE_RESULTS", "/tmp/full_outage_quorum/results.jsonl"))
CYCLES = int(os.environ.get("FULL_OUTAGE_CYCLES", "1"))
QUEUES_PER_KIND = int(os.environ.get("FULL_OUTAGE_QUEUES_PER_KIND", "2"))  # plain and work queues each
N_PER_QUEUE = 30  # the drill lost ~31 publishes to one queue
WARMUP_PER_QUEUE = 25  # Raft log entries before the outage (the drill's queue was at index ~19-25)
DOWN_S = 3.0  # the drill's full_outage lasted 3 s plus the kill; the restart then takes ~10 s
RECEIVE_WINDOW_S = 20.0  # how long a fresh consumer may take to get every confirmed message
VHOST = "/"


# --------------------------------------------------------------------------------------------- records
@dataclass
class QueueResult:
    queue: str
    args: str  # "plain" or "work" (the platform's work-queue arguments)
    leader_before: str | None
    leader_after_restart: str | None  # as the management API reported when publishing began
    leader_at_check: str | None
    members: list[str]
    online_at_publish: list[str]
    published: int = 0
    confirmed: int = 0
    returned: int = 0
    nacked: int = 0
    publish_errors: int = 0
    received: int = 0  # distinct confirmed message ids a fresh consumer got
    missing: int = 0
    passive_counts: dict[str, int | str] = field(default_factory=dict)  # node -> declare-ok message_count
    mgmt: dict[str, Any] = field(default_factory=dict)
    late_received: int | None = None  # a second fresh consumer after an extra wait, only when missing


@dataclass
class Attempt:
    label: str
    mode: str  # kill | stop
    cycle: int
    publisher_node: int
    wait_for_leaders: bool
    wait_leaders_s: float | None
    restart_s: float
    queues: list[QueueResult]
    log_lines: dict[str, list[str]]
    started: float = field(default_factory=time.time)

    @property
    def lost(self) -> int:
        return sum(q.missing for q in self.queues)


def record(attempt: Attempt) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    row = asdict(attempt) | {"lost": attempt.lost}
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"\n=== {attempt.label} cycle {attempt.cycle} mode={attempt.mode} publisher=node{attempt.publisher_node}"
          f" wait_for_leaders={attempt.wait_for_leaders} ({attempt.wait_leaders_s}) restart {attempt.restart_s:.1f}s")  # fmt: skip
    for q in attempt.queues:
        print(f"  {q.queue:<28} {q.args:<5} leader {q.leader_before} -> {q.leader_after_restart} -> "
              f"{q.leader_at_check}  pub={q.published} conf={q.confirmed} ret={q.returned} nack={q.nacked} "
              f"err={q.publish_errors} recv={q.received} missing={q.missing} late={q.late_received} "
              f"passive={q.passive_counts} mgmt={q.mgmt}")  # fmt: skip
    for node, lines in attempt.log_lines.items():
        for line in lines[:40]:
            print(f"  [{node}] {line[:260]}")


# --------------------------------------------------------------------------------------------- topology
@dataclass
class Topo:
    prefix: str
    exchange: str
    queues: list[tuple[str, str, str]]  # (queue, routing key, args kind)


def make_topo(n_plain: int = 2, n_work: int = 2) -> Topo:
    prefix = f"fo-{uuid.uuid4().hex[:6]}"
    queues = [(f"{prefix}.plain{i}", f"c{i}.status", "plain") for i in range(n_plain)]
    queues += [(f"{prefix}.work{i}", f"w{i}.status", "work") for i in range(n_work)]
    return Topo(prefix, f"{prefix}.events", queues)


def queue_args(kind: str, prefix: str) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if kind == "work":  # as system/messaging/topology.py declares a work queue
        args |= {
            "x-delivery-limit": 20,
            "x-dead-letter-exchange": f"{prefix}.parked",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    return args


async def declare(url: str, topo: Topo) -> None:
    conn = await aio_pika.connect(url, timeout=10)
    async with conn:
        ch = await conn.channel()
        ex = await ch.declare_exchange(topo.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        await ch.declare_exchange(f"{topo.prefix}.parked", aio_pika.ExchangeType.TOPIC, durable=True)
        for name, key, kind in topo.queues:
            q = await ch.declare_queue(name, durable=True, arguments=queue_args(kind, topo.prefix))
            await q.bind(ex, routing_key=f"{key.split('.')[0]}.#")


async def delete(url: str, topo: Topo) -> None:
    conn = await aio_pika.connect(url, timeout=10)
    async with conn:
        ch = await conn.channel()
        for name, _, _ in topo.queues:
            with contextlib.suppress(Exception):
                await ch.queue_delete(name)
        for ex in (topo.exchange, f"{topo.prefix}.parked"):
            with contextlib.suppress(Exception):
                await ch.exchange_delete(ex)


# --------------------------------------------------------------------------------------------- traffic
@dataclass
class PublishCounts:
    published: int = 0
    confirmed: set[str] = field(default_factory=set)
    returned: int = 0
    nacked: int = 0
    errors: int = 0


async def publish(
    url: str, exchange: str, key: str, ids: list[str], deadline_s: float = 10.0
) -> PublishCounts:
    """Each id once, persistent, mandatory, confirmed (what the couriers do, minus their retries:
    a retry would hide a lost confirm behind a second copy)."""
    out = PublishCounts()
    conn = await aio_pika.connect(url, timeout=10)
    async with conn:
        ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
        ex = await ch.get_exchange(exchange, ensure=False)
        for mid in ids:
            msg = aio_pika.Message(
                json.dumps({"id": mid}).encode(),
                message_id=mid,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
            )
            out.published += 1
            try:
                confirmation = await asyncio.wait_for(
                    ex.publish(msg, routing_key=key, mandatory=True), deadline_s
                )
            except aio_pika.exceptions.DeliveryError as exc:  # returned (unroutable) or nacked
                if exc.frame is not None and isinstance(exc.frame, aiormq.spec.Basic.Return):
                    out.returned += 1
                else:
                    out.nacked += 1
                continue
            except (TimeoutError, aio_pika.exceptions.AMQPError, OSError, RuntimeError):
                out.errors += 1
                continue
            if isinstance(confirmation, aiormq.spec.Basic.Ack):
                out.confirmed.add(mid)
            else:
                out.nacked += 1
    return out


async def consume_all(url: str, queue: str, want: set[str], window: float) -> set[str]:
    """A fresh connection consumes (and acks) until every wanted id arrived or ``window`` elapsed."""
    got: set[str] = set()
    done = asyncio.Event()
    conn = await aio_pika.connect(url, timeout=10)
    async with conn:
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=100)
        q = await ch.get_queue(queue, ensure=False)

        async def on(m: AbstractIncomingMessage) -> None:
            got.add(str(m.message_id))
            await m.ack()
            if want <= got:
                done.set()

        tag = await q.consume(on)
        if want:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), window)
        else:
            await asyncio.sleep(min(window, 2.0))
        with contextlib.suppress(Exception):
            await q.cancel(tag)
    return got


async def warmup(url: str, topo: Topo) -> dict[str, Any]:
    """Traffic through every queue, then a consumer left attached with a few unacked deliveries (the
    drill's gateway consumers were attached when the nodes died). Returns the connection to keep open."""
    for name, key, _ in topo.queues:
        ids = [f"warm-{name}-{i}" for i in range(WARMUP_PER_QUEUE)]
        res = await publish(url, topo.exchange, key, ids)
        assert len(res.confirmed) == len(ids), f"warm-up publish to {name}: {res}"
        got = await consume_all(url, name, set(ids), 15)
        assert got >= set(ids), f"warm-up consume of {name}: {len(got)}/{len(ids)}"
    # Held deliveries: 3 per queue, published, delivered, never acked.
    conn = await aio_pika.connect(url, timeout=10)
    ch = await conn.channel()
    await ch.set_qos(prefetch_count=3)
    held: list[AbstractIncomingMessage] = []

    async def hold_it(m: AbstractIncomingMessage) -> None:
        held.append(m)

    for name, key, _ in topo.queues:
        await publish(url, topo.exchange, key, [f"held-{name}-{i}" for i in range(3)])
        q = await ch.get_queue(name, ensure=False)
        await q.consume(hold_it)
    await asyncio.sleep(1.0)
    return {"conn": conn, "held": held}


async def passive_count(url: str, queue: str) -> int | str:
    try:
        conn = await asyncio.wait_for(aio_pika.connect(url, timeout=5), 8)
    except Exception as exc:
        return f"connect: {type(exc).__name__}"
    try:
        async with conn:
            ch = await conn.channel()
            q = await asyncio.wait_for(ch.declare_queue(queue, passive=True), 8)
            return int(q.declaration_result.message_count or 0)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:120]


# --------------------------------------------------------------------------------------------- broker views
def mgmt_queue(lc: LocalCluster, queue: str) -> dict[str, Any]:
    for n in lc.node_indices:
        try:
            with ManagementClient(lc.management_url(n), *lc.admin, timeout=3.0) as mc:
                q = mc.queue(queue, VHOST)
        except Exception:
            continue
        return {
            "leader": q.get("leader"),
            "members": q.get("members"),
            "online": q.get("online"),
            "messages": q.get("messages"),
            "ready": q.get("messages_ready"),
            "unacked": q.get("messages_unacknowledged"),
            "consumers": q.get("consumers"),
            "state": q.get("state"),
            "asked": n,
        }
    return {"error": "no management API answered"}


def quorum_status(lc: LocalCluster, queue: str) -> str:
    for n in lc.node_indices:
        with contextlib.suppress(ClusterError):
            return lc.ctl(n, "quorum_status", "--vhost", VHOST, queue, "--formatter", "json",
                          tool="rabbitmq-queues", timeout=20)  # fmt: skip
    return "(no node answered)"


def wait_leaders(lc: LocalCluster, queues: list[str], timeout: float = 60.0) -> float:
    """Until every queue has a leader and all its members online (management API). Returns seconds."""
    t0 = time.monotonic()
    while True:
        ok = True
        for name in queues:
            m = mgmt_queue(lc, name)
            members = set(m.get("members") or [])
            if not m.get("leader") or not members or set(m.get("online") or []) != members:
                ok = False
                break
        if ok:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"queues without a leader after {timeout} s: {m}")
        time.sleep(0.25)


def log_offsets(lc: LocalCluster) -> dict[int, int]:
    out = {}
    for n in lc.node_indices:
        p = log_path(lc, n)
        out[n] = p.stat().st_size if p.exists() else 0
    return out


def log_path(lc: LocalCluster, n: int) -> Path:
    return lc.spec.run_dir / f"n{n}" / "log" / f"{lc.state.node(n).name}.log"


def log_lines_since(lc: LocalCluster, offsets: dict[int, int], needles: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in lc.node_indices:
        p = log_path(lc, n)
        if not p.exists():
            continue
        with p.open("rb") as f:
            f.seek(offsets.get(n, 0))
            text = f.read().decode(errors="replace")
        out[f"n{n}"] = [ln for ln in text.splitlines() if any(nd in ln for nd in needles)]
    return out


# --------------------------------------------------------------------------------------------- the outage
def full_outage(lc: LocalCluster, mode: str) -> float:
    """FullOutage.apply then FullOutage.undo (chaos/faults/broker.py), DOWN_S apart. Returns restart s."""
    nodes = lc.node_indices
    if mode == "kill":
        for n in nodes:
            if lc.node_state(n) != "down":
                lc.kill(n)
    else:
        lc.stop_nodes([n for n in nodes if lc.node_state(n) != "down"])
    for n in [n for n in nodes if lc.node_state(n) != "down"]:
        lc.kill(n)
    time.sleep(DOWN_S)
    down = [n for n in nodes if lc.node_state(n) == "down"]
    assert down == nodes
    t0 = time.monotonic()
    try:
        lc.start_nodes(down)
    except ClusterError:
        lc.restart_all()
    return time.monotonic() - t0


class Attached:
    """Consumers attached right after the restart, before anything is published: the drill's gateway
    (two replicas, prefetch 200, acking what they get). Each on its own connection to ``nodes[i]``."""

    def __init__(self, urls: list[str], queues: list[str]) -> None:
        self.urls, self.queues = urls, queues
        self.got: dict[str, set[str]] = {q: set() for q in queues}
        self.conns: list[Any] = []
        self.attach_s: float | None = None

    async def start(self, deadline_s: float = 30.0) -> None:
        t0 = time.monotonic()
        for url in self.urls:
            while True:
                try:
                    conn = await aio_pika.connect(url, timeout=5)
                    ch = await conn.channel()
                    await ch.set_qos(prefetch_count=200)
                    for name in self.queues:
                        q = await ch.get_queue(name, ensure=False)
                        await q.consume(self._on(name))
                    self.conns.append(conn)
                    break
                except Exception:
                    if time.monotonic() - t0 > deadline_s:
                        raise
                    await asyncio.sleep(0.2)
        self.attach_s = time.monotonic() - t0

    def _on(self, name: str) -> Any:
        async def on(m: AbstractIncomingMessage) -> None:
            self.got[name].add(str(m.message_id))
            await m.ack()

        return on

    async def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(), 3)


def run_attempt(lc: LocalCluster, topo: Topo, *, label: str, mode: str, cycle: int, publisher_node: int,
                wait_for_leaders: bool, attached_nodes: list[int] | None = None,
                prekill: int | None = None) -> Attempt:  # fmt: skip
    """One outage and its check. ``attached_nodes``: consumers attached right after the restart (on these
    nodes) must get every confirmed message; ``prekill``: SIGKILL that node and restart it first (the
    drill's kill_node fault ran 13 s before the full outage, leaving a follower behind)."""
    names = [q for q, _, _ in topo.queues]
    # The consumer attached at the outage sits on a different node each cycle (the drill's was on the
    # node that became the leader after the restart).
    hold = _hold(lc, topo, lc.amqp_url(lc.node_indices[cycle % len(lc.node_indices)]))
    try:
        if prekill is not None:
            lc.kill(prekill)
            time.sleep(2)
            lc.restart(prekill)
        before = {q: mgmt_queue(lc, q).get("leader") for q in names}
        offsets = log_offsets(lc)
        restart_s = full_outage(lc, mode)
    finally:
        _close_hold(hold)
    waited = wait_leaders(lc, names) if wait_for_leaders else None
    url = lc.amqp_url(publisher_node)
    pubs: dict[str, PublishCounts] = {}
    attached_got: dict[str, set[str]] = {}
    views: dict[str, dict[str, Any]] = {}

    async def after_restart() -> None:
        att = Attached([lc.amqp_url(n) for n in attached_nodes], names) if attached_nodes else None
        if att is not None:
            await att.start()
        views.update({q: await asyncio.to_thread(mgmt_queue, lc, q) for q in names})
        # Concurrently, like the couriers: every queue's key at once.
        tasks = {
            q: asyncio.create_task(
                publish(url, topo.exchange, key, [f"c{cycle}-{label}-{q}-{i}" for i in range(N_PER_QUEUE)])
            )
            for q, key, _ in topo.queues
        }
        for q, t in tasks.items():
            pubs[q] = await t
        if att is not None:
            deadline = time.monotonic() + RECEIVE_WINDOW_S
            while time.monotonic() < deadline and any(not pubs[q].confirmed <= att.got[q] for q in names):  # noqa: ASYNC110
                await asyncio.sleep(0.2)  # polling the sets the consumer callbacks fill
            attached_got.update(att.got)
            await att.close()

    asyncio.run(after_restart())
    results: list[QueueResult] = []
    for q, _key, kind in topo.queues:
        p = pubs[q]
        mine = attached_got.get(q, set()) & p.confirmed
        if attached_nodes is None or not p.confirmed <= mine:
            # Whatever else is in the queue (held deliveries requeued) is not counted: only this
            # attempt's confirmed ids.
            mine |= asyncio.run(consume_all(url, q, p.confirmed - mine, RECEIVE_WINDOW_S)) & p.confirmed
        passive = {f"n{n}": asyncio.run(passive_count(lc.amqp_url(n), q)) for n in lc.node_indices}
        m = mgmt_queue(lc, q)
        r = QueueResult(
            queue=q, args=kind, leader_before=before[q], leader_after_restart=views[q].get("leader"),
            leader_at_check=m.get("leader"), members=list(views[q].get("members") or []),
            online_at_publish=list(views[q].get("online") or []), published=p.published,
            confirmed=len(p.confirmed), returned=p.returned, nacked=p.nacked, publish_errors=p.errors,
            received=len(mine), missing=len(p.confirmed - mine), passive_counts=passive, mgmt=m,
        )  # fmt: skip
        if attached_nodes is not None:
            r.mgmt["attached_received"] = len(attached_got.get(q, set()) & p.confirmed)
        if r.missing:
            # Not delivered within the window: look again from every node after a while.
            time.sleep(10)
            r.mgmt["after_10s"] = mgmt_queue(lc, q)  # statistics lag: unacked/ready now filled in
            late: set[str] = set(mine)
            for n in lc.node_indices:
                late |= asyncio.run(consume_all(lc.amqp_url(n), q, p.confirmed - late, 5))
            r.late_received = len(late & p.confirmed)
            r.mgmt["quorum_status"] = quorum_status(lc, q)
        results.append(r)
    lines = log_lines_since(lc, offsets, names)
    return Attempt(label, mode, cycle, publisher_node, wait_for_leaders, waited, restart_s, results, lines)


# --------------------------------------------------------------------------------------------- tests
@pytest.fixture
def topo(local_cluster: LocalCluster) -> Iterator[Topo]:
    t = make_topo(QUEUES_PER_KIND, QUEUES_PER_KIND)
    asyncio.run(declare(local_cluster.amqp_urls[0], t))
    yield t
    with contextlib.suppress(Exception):
        local_cluster.ensure_healthy()
        asyncio.run(delete(local_cluster.amqp_urls[0], t))


def _hold(lc: LocalCluster, topo: Topo, url: str) -> dict[str, Any]:
    """Warm-up traffic, and a consumer left attached with unacked deliveries, in an event loop kept
    aside (its connection must outlive this call and die with the nodes)."""
    loop = asyncio.new_event_loop()
    held = loop.run_until_complete(warmup(url, topo))
    held["loop"] = loop
    return held


def _close_hold(hold: dict[str, Any]) -> None:
    loop = hold["loop"]
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.wait_for(hold["conn"].close(), 2))
    loop.close()


def _cycles(lc: LocalCluster, topo: Topo, label: str, cycles: int, **kw: Any) -> list[Attempt]:
    out = []
    for cycle in range(1, cycles + 1):
        node = lc.node_indices[(cycle - 1) % len(lc.node_indices)]  # the publisher on each node in turn
        a = run_attempt(lc, topo, label=label, cycle=cycle, publisher_node=node, **kw)
        record(a)
        out.append(a)
    return out


def _summary(attempts: list[Attempt]) -> list[Any]:
    return [(a.label, a.cycle, f"pub->n{a.publisher_node}", [(q.queue, q.confirmed, q.received) for q in a.queues])
            for a in attempts]  # fmt: skip


MATRIX: dict[str, dict[str, Any]] = {
    # the drill's fault: SIGKILL all, publish as soon as every node answers AMQP
    "kill-immediate": {"mode": "kill", "wait_for_leaders": False},
    # ... with the drill's consumers attached before the publishes, on node 3 (as the gateway was)
    "kill-attached": {"mode": "kill", "wait_for_leaders": False, "attached_nodes": [3, 3]},
    # ... after a single-node kill + restart (the drill's previous fault), consumers attached
    "prekill-kill-attached": {
        "mode": "kill",
        "wait_for_leaders": False,
        "attached_nodes": [3, 3],
        "prekill": 1,
    },
    # the workaround candidate: wait until every queue has a leader and all members online
    "kill-wait-leaders": {"mode": "kill", "wait_for_leaders": True, "attached_nodes": [3, 3]},
    # graceful full stop (full_outage mode=stop)
    "stop-immediate": {"mode": "stop", "wait_for_leaders": False, "attached_nodes": [3, 3]},
}


@pytest.mark.parametrize("label", list(MATRIX))
def test_full_outage_loses_no_confirmed_message_not_reproduced(
    local_cluster: LocalCluster, topo: Topo, label: str
) -> None:
    """The drill's suspicion, per scenario: every confirmed publish after the outage reaches a consumer.
    Observed to hold (see the module docstring); a failure here would be the reproduction."""
    attempts = _cycles(local_cluster, topo, label, CYCLES, **MATRIX[label])
    assert all(a.lost == 0 for a in attempts), f"confirmed messages not delivered: {_summary(attempts)}"
