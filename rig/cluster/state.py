"""The state file: what a running rig is made of, so other processes (chaos, tests, a later
``drill cluster down`` after a crash) can find and target it.

It is written before each process is spawned and updated right after, so a crash at any point
leaves a file that names every PID the rig may have started.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
SCHEMA = 1


@dataclass
class NodeState:
    index: int
    name: str
    host: str
    amqp_port: int
    mgmt_port: int
    prometheus_port: int
    dist_port: int
    wrapper_pid: int | None = None  # the rabbitmq-server shell script; session leader of its group
    beam_pid: int | None = None  # the Erlang VM: what a SIGKILL must hit
    paused: bool = False


@dataclass
class ClusterState:
    provider: str
    run_dir: str
    cluster_name: str
    admin_user: str
    admin_password: str
    vhost: str = "/"
    epmd_pid: int | None = None
    epmd_port: int | None = None
    nodes: list[NodeState] = field(default_factory=list)
    # external clusters: URLs given by the user
    amqp_urls_external: list[str] = field(default_factory=list)
    management_urls_external: list[str] = field(default_factory=list)
    started_at: float | None = None
    # the layout, so a later process can rebuild the spec from the state file alone
    port_base: int | None = None
    address_block: int | None = None
    #: the broker setting it was started with, and the Debian root its nodes run in (None: the host's)
    broker: str = "system"
    broker_root: str | None = None
    schema: int = SCHEMA

    def node(self, index: int) -> NodeState:
        for n in self.nodes:
            if n.index == index:
                return n
        raise KeyError(index)

    def owned_pids(self) -> list[int]:
        pids = [self.epmd_pid] + [p for n in self.nodes for p in (n.wrapper_pid, n.beam_pid)]
        return [p for p in pids if p]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterState:
        nodes = [NodeState(**n) for n in data.pop("nodes", [])]
        return cls(nodes=nodes, **data)


def state_path(run_dir: Path) -> Path:
    return run_dir / STATE_FILE


def load(run_dir: Path) -> ClusterState | None:
    path = state_path(run_dir)
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return ClusterState.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        from rig.cluster._errors import ClusterError

        raise ClusterError(
            f"the state file {path} is unreadable ({exc}); the processes it named must be stopped by hand "
            "before it is deleted"
        ) from exc


def save(run_dir: Path, state: ClusterState) -> None:
    """Atomic write, mode 600: the file carries the admin password."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".state.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(state.to_json())
    os.chmod(tmp, 0o600)
    os.replace(tmp, state_path(run_dir))


def remove(run_dir: Path) -> None:
    state_path(run_dir).unlink(missing_ok=True)
