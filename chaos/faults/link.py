"""Client ↔ broker link faults, driven through the Toxiproxy REST API with toxiproxy-python.

Target: a node number (its proxy ``rabbitN``) or ``all``. Toxics take ``stream`` (upstream =
client → broker, downstream = broker → client; default downstream), ``toxicity`` (0..1) and their
own attributes as params, e.g. ``LinkLatency("2", latency=300, jitter=50)``.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from chaos.faults.base import Fault, FaultError, local
from chaos.links import LinkProxies
from rig.cluster import Cluster


def _links(cluster: Cluster | None) -> LinkProxies:
    lc = local(cluster, "link faults")
    links = LinkProxies.attach(lc.spec.run_dir)
    if links is None:
        raise FaultError("no link proxies run for this cluster: start them with `drill chaos links up`")
    return links


def _proxies(links: LinkProxies, target: str) -> list[str]:
    if target in ("", "all"):
        return sorted(links.state.proxies)
    try:
        return [links.proxy_name(int(target.removeprefix("node:")))]
    except (KeyError, ValueError) as exc:
        raise FaultError(f"bad link target {target!r}: use a node number or all ({exc})") from exc


def _named(cluster: Cluster | None, names: list[str], required: bool) -> list[Any]:
    """The toxiproxy-python Proxy objects for ``names``, from one ``GET /proxies``.

    ``required``: a proxy missing is an error (applying); otherwise it is skipped (undoing is idempotent).
    """
    by_name = _links(cluster).client().proxies()
    missing = [n for n in names if n not in by_name]
    if required and missing:
        raise FaultError(f"proxy {', '.join(missing)} vanished")
    return [by_name[n] for n in names if n in by_name]


class LinkDown(Fault):
    """Link down: the node's proxy is disabled (connections closed, new ones refused). Undo: enable."""

    kind = "link_down"

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        return {"proxies": _proxies(_links(cluster), self.target)}

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        for proxy in _named(cluster, undo["proxies"], required=True):
            proxy.disable()
        return {"disabled": undo["proxies"]}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        for proxy in _named(cluster, undo["proxies"], required=False):
            proxy.enable()
        return {"enabled": undo["proxies"]}


class _LinkToxic(Fault):
    toxic: ClassVar[str]
    defaults: ClassVar[dict[str, int]]

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        params = dict(self.params)
        stream = str(params.pop("stream", "downstream"))
        if stream not in ("upstream", "downstream"):
            raise FaultError(f"stream must be upstream or downstream, not {stream!r}")
        toxicity = float(params.pop("toxicity", 1.0))
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise FaultError(
                f"{self.kind}: unknown attribute(s) {sorted(unknown)}; known: {sorted(self.defaults)}"
            )
        attributes = {**self.defaults, **{k: int(v) for k, v in params.items()}}
        return {
            "proxies": _proxies(_links(cluster), self.target),
            "toxic_name": f"drill-{self.toxic}-{uuid.uuid4().hex[:8]}",
            "type": self.toxic,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        for proxy in _named(cluster, undo["proxies"], required=True):
            proxy.add_toxic(
                name=undo["toxic_name"],
                type=undo["type"],
                stream=undo["stream"],
                toxicity=undo["toxicity"],
                attributes=undo["attributes"],
            )
        return {"toxic": undo["toxic_name"], "on": undo["proxies"], "attributes": undo["attributes"]}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        removed = []
        for proxy in _named(cluster, undo["proxies"], required=False):
            if undo["toxic_name"] in proxy.toxics():
                proxy.destroy_toxic(undo["toxic_name"])
                removed.append(proxy.name)
        return {"removed_from": removed}


class LinkLatency(_LinkToxic):
    """Latency (+ jitter) on the link, in ms."""

    kind = "link_latency"
    toxic = "latency"
    defaults: ClassVar[dict[str, int]] = {"latency": 200, "jitter": 0}


class LinkBandwidth(_LinkToxic):
    """Bandwidth cap on the link, in KB/s."""

    kind = "link_bandwidth"
    toxic = "bandwidth"
    defaults: ClassVar[dict[str, int]] = {"rate": 100}


class LinkTimeout(_LinkToxic):
    """The link stops passing data; connections close after ``timeout`` ms (0: held open)."""

    kind = "link_timeout"
    toxic = "timeout"
    defaults: ClassVar[dict[str, int]] = {"timeout": 0}


class LinkResetPeer(_LinkToxic):
    """Connections are reset (RST) after ``timeout`` ms."""

    kind = "link_reset_peer"
    toxic = "reset_peer"
    defaults: ClassVar[dict[str, int]] = {"timeout": 0}


class LinkSlicer(_LinkToxic):
    """Data sliced into small packets (average_size, size_variation bytes; delay µs between)."""

    kind = "link_slicer"
    toxic = "slicer"
    defaults: ClassVar[dict[str, int]] = {"average_size": 16, "size_variation": 8, "delay": 1000}


class LinkLimitData(_LinkToxic):
    """Connections closed after ``bytes`` bytes."""

    kind = "link_limit_data"
    toxic = "limit_data"
    defaults: ClassVar[dict[str, int]] = {"bytes": 1024}


class LinkSlowClose(_LinkToxic):
    """The close of a connection is delayed by ``delay`` ms."""

    kind = "link_slow_close"
    toxic = "slow_close"
    defaults: ClassVar[dict[str, int]] = {"delay": 1000}
