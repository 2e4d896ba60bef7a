"""RabbitMQ nodes in containers through testcontainers, when a Docker engine answers.

On machines without one (this project's CI among them) :func:`docker_available` says why in one line
and :class:`ContainerCluster` raises :class:`ProviderUnavailable` with that reason, so tests skip
cleanly instead of hanging or crashing.
"""

from __future__ import annotations

from typing import Any

from rig.cluster._errors import ProviderUnavailable, UnknownNode
from rig.cluster.abc import Cluster, NodeStatus

IMAGE = "rabbitmq:3.13-management"


def docker_available() -> tuple[bool, str]:
    """(True, version) when a Docker engine answers, else (False, the reason)."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - testcontainers depends on docker
        return False, f"the docker Python package is missing ({exc})"
    try:
        client = docker.from_env(timeout=3)
        version = client.version().get("Version", "?")
        client.close()
    except Exception as exc:
        return False, f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]})"
    return True, str(version)


class ContainerCluster(Cluster):
    """A single-node RabbitMQ in a container (multi-node clustering in containers is left to later work)."""

    provider = "testcontainers"
    owned = True

    def __init__(self, image: str = IMAGE) -> None:
        self.image = image
        self._container: Any = None

    def start(self) -> None:
        ok, why = docker_available()
        if not ok:
            raise ProviderUnavailable(f"testcontainers provider unavailable: {why}")
        from testcontainers.core.container import DockerContainer

        self._container = DockerContainer(self.image).with_exposed_ports(5672, 15672)
        self._container.start()

    def _need(self) -> Any:
        if self._container is None:
            raise ProviderUnavailable("the container is not started")
        return self._container

    @property
    def amqp_urls(self) -> list[str]:
        c = self._need()
        return [f"amqp://guest:guest@{c.get_container_host_ip()}:{c.get_exposed_port(5672)}/"]

    def management_url(self, node: int) -> str:
        if node != 1:
            raise UnknownNode("the container provider runs one node")
        c = self._need()
        return f"http://{c.get_container_host_ip()}:{c.get_exposed_port(15672)}"

    @property
    def admin(self) -> tuple[str, str]:
        return ("guest", "guest")

    @property
    def node_indices(self) -> list[int]:
        return [1]

    def stop(self) -> None:
        if self._container is not None:
            self._container.stop()
            self._container = None

    def status(self) -> list[NodeStatus]:
        up = self._container is not None
        return [
            NodeStatus(
                1,
                "rabbit@container",
                "up" if up else "down",
                None,
                self.amqp_urls[0] if up else "",
                self.management_url(1) if up else "",
            )
        ]

    def kill(self, node: int) -> None:
        self._need().get_wrapped_container().kill(signal="SIGKILL")

    def stop_node(self, node: int) -> None:
        self._need().get_wrapped_container().stop()

    def restart(self, node: int) -> None:
        self._need().get_wrapped_container().restart()

    def pause(self, node: int) -> None:
        self._need().get_wrapped_container().pause()

    def resume(self, node: int) -> None:
        self._need().get_wrapped_container().unpause()
