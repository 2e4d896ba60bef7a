"""Two intake replicas keep accepting orders while every broker node is down; nothing accepted is lost."""

from __future__ import annotations

import time

import pytest

from rig.cluster import Cluster, LocalCluster

from .conftest import IntakeSystem, World, drain_ids, send_all, wait_ready

pytestmark = pytest.mark.integration


async def test_full_broker_outage_loses_no_accepted_order(
    cluster: Cluster,
    local_cluster: LocalCluster,
    intake_system: IntakeSystem,
    world: World,
    orders_queue: str,
) -> None:
    t0 = time.monotonic()
    await wait_ready(intake_system, [0, 1])
    before, during = world.orders[:300], world.orders[300:400]

    answered = await send_all(intake_system, world, before)
    statuses = [a.http_status for _, answers in answered for a in answers]
    assert all(s in (200, 202) for s in statuses), sorted(set(map(str, statuses)))
    accepted = {a.delivery_id for _, answers in answered for a in answers if a.delivery_id}
    channels = {o.channel for o, _ in answered}
    assert channels == {"rest", "shopify", "epos"}

    local_cluster.stop_nodes([1, 2, 3])
    t_down = time.monotonic()
    answered = await send_all(intake_system, world, during)
    firsts = [answers[0].http_status for _, answers in answered]
    # Every order sent while no broker runs is durably accepted: 202 (and committed, checked below).
    assert firsts == [202] * len(during), sorted(set(map(str, firsts)))
    during_ids = {a.delivery_id for _, answers in answered for a in answers if a.delivery_id}
    assert len(during_ids) == len(during)
    committed = intake_system.delivery_ids()
    assert during_ids <= committed
    pending_in_outage = intake_system.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
    assert pending_in_outage >= len(during), "orders sent during the outage cannot have been published"
    accepted |= during_ids

    local_cluster.start_nodes([1, 2, 3])
    t_up = time.monotonic()
    down_s = t_up - t_down
    seen = await drain_ids(cluster, orders_queue, accepted, within=60)
    lost = accepted - set(seen)
    unexpected = set(seen) - committed
    duplicates = sum(n - 1 for n in seen.values())
    print(
        f"\n[intake outage] accepted={len(accepted)} during_outage={len(during_ids)} (all nodes down {down_s:.1f} s,"
        f" pending then {pending_in_outage}) consumed_unique={len(seen)} lost={len(lost)}"
        f" unexpected={len(unexpected)} duplicates={duplicates} backlog_drained_in={time.monotonic() - t_up:.1f} s"
        f" total={time.monotonic() - t0:.1f} s"
    )
    assert not lost, f"lost {len(lost)} accepted orders, e.g. {sorted(lost)[:5]}"
    assert not unexpected
    assert intake_system.scalar("SELECT COUNT(*) FROM deliveries") == len(accepted)
