"""Steady-state probes: each answers (ok, observed value, message) and never raises.

``http_p99_below`` measures the p99 of ``samples`` sequential GETs itself, so an experiment can hold
any HTTP service to a latency tolerance without a metrics stack.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx

from chaos.experiment import ProbeSpec
from rig.cluster import Cluster, ManagementClient, amqp_queue_depths


@dataclass(frozen=True)
class ProbeResult:
    probe: str
    ok: bool
    value: float | None
    message: str


def run_probe(spec: ProbeSpec, cluster: Cluster | None) -> ProbeResult:
    if cluster is None and spec.probe in ("nodes_up", "no_alarms", "queue_depth_below"):
        return ProbeResult(spec.probe, False, None, "this run has no cluster to probe")
    try:
        return _PROBES[spec.probe](spec, cluster)  # type: ignore[arg-type]  # None excluded above
    except Exception as exc:  # a probe that cannot look reports a deviation, never crashes the runner
        return ProbeResult(spec.probe, False, None, f"probe failed: {type(exc).__name__}: {exc}")


def _nodes_up(spec: ProbeSpec, cluster: Cluster) -> ProbeResult:
    up = sum(s.state == "up" for s in cluster.status())
    want = spec.min if spec.min is not None else len(cluster.node_indices)
    return ProbeResult("nodes_up", up >= want, up, f"{up} node(s) up, tolerance >= {want}")


def _no_alarms(spec: ProbeSpec, cluster: Cluster) -> ProbeResult:
    alarms = [
        f"{s.index}:{'mem' if s.mem_alarm else 'disk'}"
        for s in cluster.status()
        if s.mem_alarm or s.disk_free_alarm
    ]
    return ProbeResult("no_alarms", not alarms, len(alarms), f"alarms: {', '.join(alarms) or 'none'}")


def _queue_depth(spec: ProbeSpec, cluster: Cluster) -> ProbeResult:
    """Names from the management API; depths from the queues themselves (the API's counts lag)."""
    pattern = re.compile(spec.queue_pattern)
    for n in cluster.node_indices:
        try:
            with ManagementClient(cluster.management_url(n), *cluster.admin) as mc:
                queues = mc.get("queues?columns=name,vhost")
        except Exception:
            continue
        names = [(q["vhost"], q["name"]) for q in queues if pattern.search(q["name"])]
        depths = amqp_queue_depths(cluster.amqp_urls, names)
        if depths is None:
            return ProbeResult("queue_depth_below", False, None, "no node answered the depth query")
        worst = max(depths.items(), key=lambda kv: kv[1], default=("-", 0))
        limit = spec.max or 0
        return ProbeResult(
            "queue_depth_below",
            worst[1] < limit,
            worst[1],
            f"deepest {worst[0]} = {worst[1]}, tolerance < {limit:g}",
        )
    return ProbeResult("queue_depth_below", False, None, "no node's management API answered")


def _http_ok(spec: ProbeSpec, cluster: Cluster) -> ProbeResult:
    assert spec.url
    r = httpx.get(spec.url, timeout=5.0)
    return ProbeResult("http_ok", r.is_success, r.status_code, f"GET {spec.url} -> {r.status_code}")


def _http_p99(spec: ProbeSpec, cluster: Cluster) -> ProbeResult:
    assert spec.url
    took: list[float] = []
    errors = 0
    with httpx.Client(timeout=5.0) as client:
        for _ in range(spec.samples):
            t0 = time.perf_counter()
            try:
                if not client.get(spec.url).is_success:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    p99 = took[min(len(took) - 1, int(0.99 * len(took)))]
    limit = spec.max or 0
    return ProbeResult(
        "http_p99_below",
        p99 < limit and errors == 0,
        round(p99, 2),
        f"p99 {p99:.1f} ms over {spec.samples} GETs ({errors} errors), tolerance < {limit:g} ms",
    )


_PROBES = {
    "nodes_up": _nodes_up,
    "no_alarms": _no_alarms,
    "queue_depth_below": _queue_depth,
    "http_ok": _http_ok,
    "http_p99_below": _http_p99,
}
