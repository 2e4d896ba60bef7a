"""Client ↔ broker links through Toxiproxy: one proxy per broker node, in front of its AMQP port.

Services of a drill that asks for link faults connect to :attr:`LinkProxies.amqp_urls` instead of the
nodes. The proxies are served by a real ``toxiproxy-server`` when one is on PATH or given by URL,
else by the project's own Toxiproxy-compatible server (:mod:`chaos.toxiproxy`), in a process of its
own whose PID goes into ``links.json`` beside the rig's state, so ``drill chaos heal`` and
``drill chaos links down`` can find and stop it after a crash.

Example::

    links = LinkProxies.start(cluster)           # proxies rabbit1..N on 127.0.0.1:<free ports>
    links.amqp_urls                              # hand these to the services
    links.client().get_proxy("rabbit2").disable()   # toxiproxy-python: node 2's link is down
    links.stop()
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rig import procs
from rig.cluster import LocalCluster

if TYPE_CHECKING:
    from toxiproxy import Toxiproxy

# The proxy server (aiohttp) and the client (requests) are imported where used: the CLI that mounts
# these commands must answer --help fast.

STATE = "links.json"


@dataclass
class LinkState:
    api_url: str
    kind: str  # subprocess | toxiproxy-server | external
    pid: int | None
    proxies: dict[str, str]  # proxy name -> listen host:port
    user: str
    password: str


class LinkProxies:
    def __init__(self, run_dir: Path, state: LinkState) -> None:
        self.run_dir = run_dir
        self.state = state

    @classmethod
    def start(cls, cluster: LocalCluster, api_url: str | None = None) -> LinkProxies:
        """Start (or reuse, with ``api_url``) a Toxiproxy API and create one proxy per node."""
        run_dir = cluster.spec.run_dir
        if (run_dir / STATE).exists():
            raise RuntimeError(f"link proxies already run for {run_dir}; `drill chaos links down` first")

        from chaos.toxiproxy import launch

        handle = launch(url=api_url or os.environ.get("DRILL_TOXIPROXY_URL"))
        pid = handle.process.pid if handle.process is not None else None
        user, password = cluster.admin
        state = LinkState(handle.url, handle.kind, pid, {}, user, password)
        links = cls(run_dir, state)
        links._save()  # the PID first: a crash from here on is still healable
        tp = links.client()
        for n in cluster.state.nodes:
            proxy = tp.create(
                upstream=f"{n.host}:{n.amqp_port}", name=f"rabbit{n.index}", listen="127.0.0.1:0"
            )
            state.proxies[proxy.name] = proxy.listen
        links._save()
        if handle.process is not None:
            # The server outlives this Python object: the state file is its owner from now on.
            handle.process = None
        return links

    @classmethod
    def attach(cls, run_dir: Path) -> LinkProxies | None:
        try:
            data = json.loads((run_dir / STATE).read_text())
        except FileNotFoundError:
            return None
        return cls(run_dir, LinkState(**data))

    def _save(self) -> None:
        path = self.run_dir / STATE
        path.write_text(json.dumps(asdict(self.state), indent=2))
        path.chmod(0o600)

    def client(self) -> Toxiproxy:
        from toxiproxy import Toxiproxy

        tp = Toxiproxy()
        host, port = self.state.api_url.split("://", 1)[1].rsplit(":", 1)
        tp.update_api_consumer(host.strip("[]"), int(port))
        return tp

    @property
    def amqp_urls(self) -> list[str]:
        return [
            f"amqp://{self.state.user}:{self.state.password}@{listen}/"
            for _, listen in sorted(self.state.proxies.items())
        ]

    def proxy_name(self, node: int) -> str:
        name = f"rabbit{node}"
        if name not in self.state.proxies:
            raise KeyError(f"no link proxy for node {node} (have {sorted(self.state.proxies)})")
        return name

    def reset(self) -> bool:
        """Every proxy enabled, every toxic removed (Toxiproxy's POST /reset)."""

        from chaos.toxiproxy import api_alive

        if not api_alive(self.state.api_url):
            return False
        return bool(self.client().reset())

    def stop(self) -> None:
        """Delete our proxies and stop the server if we started it (by its recorded PID only)."""

        from chaos.toxiproxy import api_alive

        if api_alive(self.state.api_url):
            tp = self.client()
            for name in self.state.proxies:
                proxy = tp.get_proxy(name)
                if proxy is not None:
                    proxy.destroy()
        if self.state.pid and self.state.kind != "external":
            procs.send(self.state.pid, signal.SIGTERM)
            if not procs.wait_gone([self.state.pid], timeout=10):
                procs.send(self.state.pid, signal.SIGKILL)
                procs.wait_gone([self.state.pid], timeout=5)
        (self.run_dir / STATE).unlink(missing_ok=True)

    def describe(self) -> dict[str, Any]:
        return {"api": self.state.api_url, "kind": self.state.kind, "proxies": self.state.proxies}
