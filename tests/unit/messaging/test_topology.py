"""Topology as code: expansion into RabbitMQ queues, validation, rendering, permissions."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from system.messaging.topology import (
    Binding,
    Exchange,
    QueueRole,
    RetryTier,
    Service,
    Topology,
    WorkQueue,
    exponential_tiers,
)
from system.platform.topology import platform_topology


def small() -> Topology:
    return Topology(
        exchanges=(Exchange("orders"), Exchange("quotes")),
        services=(
            Service(
                "a",
                consumes=(WorkQueue("a.orders", (Binding("orders", "order.*"),)),),
                publishes_to=("quotes",),
            ),
            Service("b", consumes=(WorkQueue("b.quotes", (Binding("quotes", "#"),), delivery_limit=5),)),
        ),
    )


def test_work_queue_is_quorum_with_limit_and_safe_dead_lettering_to_its_parking_lot() -> None:
    queues = {q.name: q for q in small().declared_queues()}
    work = queues["b.quotes"]
    assert work.role is QueueRole.WORK
    assert work.arguments == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 5,
        "x-dead-letter-exchange": "drill.parked",
        "x-dead-letter-routing-key": "b.quotes",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert Binding("quotes", "#") in work.bindings and Binding("drill.requeue", "b.quotes") in work.bindings
    parked = queues["b.quotes.parked"]
    assert parked.arguments["x-queue-type"] == "quorum"
    assert parked.bindings == (Binding("drill.parked", "b.quotes"),)


def test_retry_tiers_are_ttl_queues_dead_lettering_back_to_the_work_queue_only() -> None:
    retries = [q for q in small().declared_queues("a") if q.role is QueueRole.RETRY]
    assert [q.name for q in retries] == ["a.orders.retry.1s", "a.orders.retry.5s", "a.orders.retry.25s"]
    for q, ttl in zip(retries, (1000, 5000, 25000), strict=True):
        assert q.arguments["x-message-ttl"] == ttl
        assert q.arguments["x-dead-letter-exchange"] == "drill.requeue"
        assert q.arguments["x-dead-letter-routing-key"] == "a.orders"
        assert q.arguments["x-dead-letter-strategy"] == "at-least-once"
        assert q.arguments["x-queue-type"] == "quorum"
        assert q.bindings == (Binding("drill.retry", q.name),)


def test_every_declared_queue_is_quorum() -> None:
    assert all(q.arguments["x-queue-type"] == "quorum" for q in platform_topology().declared_queues())


def test_validation_rejects_unknown_exchanges_and_duplicate_queues() -> None:
    with pytest.raises(ValueError, match="unknown exchange 'nope'"):
        Topology(services=(Service("a", consumes=(WorkQueue("q", (Binding("nope", "#"),)),)),))
    with pytest.raises(ValueError, match="publishes to unknown exchange"):
        Topology(services=(Service("a", publishes_to=("nope",)),))
    q = WorkQueue("q", ())
    with pytest.raises(ValueError, match="declared twice"):
        Topology(services=(Service("a", consumes=(q,)), Service("b", consumes=(q,))))


def test_describe_ends_with_the_count_of_queues() -> None:
    topo = platform_topology()
    last = topo.describe().splitlines()[-1]
    assert last == f"{len(topo.declared_queues())} queues, {len(topo.all_exchanges())} exchanges"
    plain = [q for q in topo.declared_queues() if q.role is QueueRole.PLAIN]
    assert len(topo.declared_queues()) == 5 * len(list(topo.work_queues())) + len(plain)


def test_platform_has_more_than_100_quorum_queues_one_request_queue_per_courier() -> None:
    from system.domain.marketplace import load_marketplace

    topo = platform_topology()
    queues = topo.declared_queues()
    assert len(queues) > 100
    assert all(q.arguments["x-queue-type"] == "quorum" for q in queues)
    names = {q.name for q in queues}
    assert {f"courier.{c.id}.requests" for c in load_marketplace().couriers} <= names
    # The contract queues carry exactly the contract's arguments, so either side may declare first.
    assert all(dict(q.arguments) == {"x-queue-type": "quorum"} for q in queues if q.role is QueueRole.PLAIN)


def test_exponential_tiers_and_suffixes() -> None:
    assert exponential_tiers(250, 4, 4) == (
        RetryTier(250),
        RetryTier(1000),
        RetryTier(4000),
        RetryTier(16000),
    )
    assert [t.suffix for t in (RetryTier(250), RetryTier(1000), RetryTier(120_000))] == ["250ms", "1s", "2m"]


def test_permissions_cover_own_queues_only() -> None:
    topo = platform_topology()
    for svc in topo.services:
        perms = topo.permissions(svc.name)
        own = {q.name for q in topo.declared_queues(svc.name)}
        for q in topo.declared_queues():
            assert bool(re.fullmatch(perms.configure, q.name)) == (q.name in own), (svc.name, q.name)
            assert bool(re.fullmatch(perms.read, q.name)) == (q.name in own)
        for ex in svc.publishes_to:
            assert re.fullmatch(perms.write, ex)
        for ex in {e.name for e in topo.exchanges} - set(svc.publishes_to):
            assert not re.fullmatch(perms.write, ex)
        # queue.bind needs read on the bound exchange
        for q in topo.declared_queues(svc.name):
            for b in q.bindings:
                assert re.fullmatch(perms.read, b.exchange)
    # notifications publishes to no exchange of the platform (its sends go to the HTTP provider)
    assert not any(re.fullmatch(topo.permissions("notifications").write, e.name) for e in topo.exchanges)
    assert not re.fullmatch(topo.permissions("couriers").configure, "orders")
    assert re.fullmatch(topo.permissions("couriers").configure, "courier.events")
    assert Topology(services=(Service("x"),)).permissions("x").configure == "^$"


names = st.text(alphabet="abcdefghij.-_*+?()[]", min_size=1, max_size=12)


@given(st.lists(names, min_size=2, max_size=6, unique=True))
def test_permission_regexes_escape_any_queue_name(queue_names: list[str]) -> None:
    topo = Topology(
        exchanges=(Exchange("ex"),),
        services=tuple(
            Service(f"s{i}", consumes=(WorkQueue(n, (Binding("ex", "#"),)),))
            for i, n in enumerate(queue_names)
        ),
    )
    for i, n in enumerate(queue_names):
        perms = topo.permissions(f"s{i}")
        for q in topo.declared_queues():
            assert bool(re.fullmatch(perms.configure, q.name)) == (q.work_queue == n)
