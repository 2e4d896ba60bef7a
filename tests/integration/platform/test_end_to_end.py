"""End to end: orders through the three intake channels reach a terminal state with real couriers'
answers (the simulator's), every state change notified exactly once, while one replica of every
service and the leader node of the busiest queue are SIGKILLed mid-run.

(A run without kills proved nothing this one does not, and cost 2.5 min of CI: removed. The drill's own
tests and ``./drill demo`` run the platform without faults for the first seconds too.)

The verdict is the audit's (reports/): orders_terminal (every accepted order reached a terminal state
that the customer was told about), one_booking (no order booked twice), one_notification (no
notification twice for the same state change and recipient), and Jepsen's lost/unexpected counts.
"""

from __future__ import annotations

from typing import Any

import pytest

from reports.checks import ONE_BOOKING, ONE_NOTIFICATION, ORDERS_TERMINAL
from rig.cluster import LocalCluster
from rig.cluster._management import ManagementClient

from .conftest import PlatformVhost
from .e2e import audit, check, running_platform, simulate

pytestmark = pytest.mark.timeout(900)

SCENARIO = "steady-quick"  # simulated time 60x: a delivery takes about 30 s of wall time
SEED = 11
# 500 orders: 10 orders/s for 50 s (about 60 platform messages per order: well within this machine's
# brokers, which share two cores with the platform's 13 processes and the simulator).
RATE = 10.0
DURATION_S = 50.0
FAST = {"DRILL_DISPATCH_BOOKING_TIMEOUT_S": "10.0"}


def _verdict(run_dir: Any) -> dict[str, dict[str, int]]:
    report = audit(run_dir)
    counts = {name: check(report, name) for name in (ORDERS_TERMINAL, ONE_BOOKING, ONE_NOTIFICATION)}
    orders = report.flows["orders"]
    assert len(orders.lost) == 0 and len(orders.unexpected) == 0, (orders.lost, orders.unexpected)
    return counts


def _busiest_queue(cluster: LocalCluster, vhost: str) -> str:
    """The platform queue that has taken the most messages so far (management API message stats)."""
    user, password = cluster.admin
    with ManagementClient(cluster.management_url(cluster.node_indices[0]), user, password, timeout=10) as mc:
        queues = mc.get(f"queues/{vhost}?columns=name,message_stats.publish")
    queues = [q for q in queues if not q["name"].startswith("courier.")]
    return max(queues, key=lambda q: (q.get("message_stats") or {}).get("publish", 0))["name"]


def test_kills_mid_run_lose_no_order_and_duplicate_no_booking_or_notification(
    platform_vhost: PlatformVhost, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = platform_vhost.cluster
    if not isinstance(cluster, LocalCluster):
        pytest.skip("needs the local provider to kill broker nodes")
    done: list[str] = []
    with running_platform(
        platform_vhost, monkeypatch, seed=SEED + 1, scenario=SCENARIO, env=FAST
    ) as platform:

        def chaos(elapsed: float) -> None:
            if elapsed >= 12 and "services" not in done:
                done.append("services")
                for service in platform.replicas:
                    platform.kill(service, 0)
            if elapsed >= 22 and "leader" not in done:
                done.append("leader")
                queue = _busiest_queue(cluster, platform_vhost.vhost)
                node = cluster.queue_leader(queue, platform_vhost.vhost)
                cluster.kill(node)
                done.append(f"{queue}@{node}")
            if elapsed >= 35 and "restart" not in done:
                done.append("restart")
                node = int(done[2].rsplit("@", 1)[1])
                cluster.restart(node)

        result = simulate(
            platform, seed=SEED + 1, scenario=SCENARIO, duration_s=DURATION_S, rate=RATE, during=chaos
        )
        print(result.stdout.strip().splitlines()[-2], done)
        restarts = {r["service"]: r["restarts"] for r in platform.handle.replicas() if r["index"] == 0}
    assert "restart" in done
    assert all(n >= 1 for n in restarts.values()), restarts
    counts = _verdict(platform_vhost.run_dir)
    print(counts)
    assert counts[ORDERS_TERMINAL]["terminal"] == counts[ORDERS_TERMINAL]["accepted"] >= 450
    assert counts[ONE_BOOKING]["orders_booked"] >= 0.8 * counts[ORDERS_TERMINAL]["accepted"]
