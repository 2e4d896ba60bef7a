"""A small client of the RabbitMQ management HTTP API (the parts the rig and chaos need)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class NodeHealth:
    name: str
    running: bool
    mem_alarm: bool
    disk_free_alarm: bool
    partitions: list[str]
    #: the node's RabbitMQ version (its ``rabbit`` application), None when the node did not say
    version: str | None = None


class ManagementClient:
    """Talks to one node's management listener, with short timeouts (a paused node never answers)."""

    def __init__(self, base_url: str, user: str, password: str, timeout: float = 3.0) -> None:
        import httpx  # here, not at the top: the CLI's --help must not pay for it

        self.base_url = base_url.rstrip("/")
        self._client: httpx.Client = httpx.Client(auth=(user, password), timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ManagementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str) -> Any:
        resp = self._client.get(f"{self.base_url}/api/{path}")
        resp.raise_for_status()
        return resp.json()

    def nodes(self) -> list[NodeHealth]:
        return [
            NodeHealth(
                name=n["name"],
                running=bool(n.get("running")),
                mem_alarm=bool(n.get("mem_alarm")),
                disk_free_alarm=bool(n.get("disk_free_alarm")),
                partitions=list(n.get("partitions") or []),
                version=_rabbit_version(n),
            )
            for n in self.get("nodes")
        ]

    def quorum_leaders(self) -> dict[str, list[str]]:
        """Node name -> ``vhost/queue`` of the quorum queues it leads."""
        out: dict[str, list[str]] = {}
        for q in self.get("queues?columns=name,vhost,type,leader,node"):
            if q.get("type") == "quorum":
                leader = q.get("leader") or q.get("node") or "?"
                out.setdefault(leader, []).append(f"{q['vhost']}/{q['name']}")
        return out

    def put(self, path: str, body: dict[str, Any]) -> None:
        resp = self._client.put(f"{self.base_url}/api/{path}", json=body)
        resp.raise_for_status()

    def delete(self, path: str) -> None:
        resp = self._client.delete(f"{self.base_url}/api/{path}")
        if resp.status_code != 404:
            resp.raise_for_status()

    def queue(self, name: str, vhost: str = "/") -> Any:
        return self.get(f"queues/{quote(vhost, safe='')}/{quote(name, safe='')}")


def _rabbit_version(node: dict[str, Any]) -> str | None:
    """The version of the ``rabbit`` application among a node's ``applications`` (3.10 and 4.0 alike)."""
    for app in node.get("applications") or []:
        if isinstance(app, dict) and app.get("name") == "rabbit":
            return str(app.get("version"))
    return None
