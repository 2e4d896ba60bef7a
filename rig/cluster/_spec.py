"""The rig's configuration: one typed place, overridable by ``DRILL_CLUSTER_*`` env vars and CLI flags.

Example::

    spec = ClusterSpec(nodes=3, port_base=5800, address_block=2, run_dir=Path("/tmp/c"))
    spec.node(1).amqp_port       # 5801
    spec.node(1).host            # '127.0.2.1'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rig.cluster import versions


def default_run_dir() -> Path:
    root = Path(os.environ.get("DRILL_ROOT", Path.cwd()))
    return root / ".drill" / "cluster"


def default_brokers_dir() -> Path:
    root = Path(os.environ.get("DRILL_ROOT", Path.cwd()))
    return root / ".drill" / "brokers"


@dataclass(frozen=True)
class NodeSpec:
    """Where one node lives: its own loopback address, ports and directories."""

    index: int
    host: str
    name: str
    amqp_port: int
    dist_port: int
    mgmt_port: int
    prometheus_port: int
    dir: Path

    @property
    def amqp_address(self) -> tuple[str, int]:
        return (self.host, self.amqp_port)


class ClusterSpec(BaseSettings):
    """A local cluster's layout.

    Each node N gets the loopback address ``127.0.<address_block>.N`` (so partitions between nodes can be
    cut with iptables by address) and the ports ``port_base + N`` (AMQP), ``+10000`` (management),
    ``+10050`` (prometheus), ``+20000`` (Erlang distribution). The cluster's own epmd listens on
    ``port_base - 1300``, so two rigs with different ``port_base`` never share an epmd.
    """

    model_config = SettingsConfigDict(env_prefix="DRILL_CLUSTER_")

    nodes: int = Field(default=3, ge=1, le=9)
    run_dir: Path = Field(default_factory=default_run_dir)
    port_base: int = Field(default=5700, ge=2000, le=40000)
    address_block: int = Field(default=1, ge=1, le=254)
    cluster_name: str = "drill"
    memory_watermark: str = "1GiB"
    disk_free_limit: str = "50MB"
    net_ticktime: int = 10
    start_timeout: float = 90.0
    rabbitmq_bin: Path = Path(os.environ.get("DRILL_RABBITMQ_BIN", str(versions.DEBIAN_BIN)))
    #: Which RabbitMQ: ``system`` (the host's package), ``3.10`` or ``4.0`` (rig/cluster/versions.py).
    broker: str = versions.SYSTEM
    #: Where Debian roots of versions the host lacks are built and cached (``<dir>/<codename>``).
    brokers_dir: Path = Field(default_factory=default_brokers_dir)
    #: The Debian mirror debootstrap fetches a root from.
    debian_mirror: str = versions.DEFAULT_MIRROR

    @field_validator("broker")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        return versions.validate(value)

    @property
    def epmd_port(self) -> int:
        return self.port_base - 1300

    def host(self, index: int) -> str:
        return f"127.0.{self.address_block}.{index}"

    def node(self, index: int) -> NodeSpec:
        host = self.host(index)
        return NodeSpec(
            index=index,
            host=host,
            name=f"rabbit{index}@{host}",
            amqp_port=self.port_base + index,
            dist_port=self.port_base + 20000 + index,
            mgmt_port=self.port_base + 10000 + index,
            prometheus_port=self.port_base + 10050 + index,
            dir=self.run_dir / f"n{index}",
        )

    def all_nodes(self) -> list[NodeSpec]:
        return [self.node(i) for i in range(1, self.nodes + 1)]
