"""How a node's server and the CLI calls made on it are started: on the host, or inside a Debian root.

A rooted node runs as::

    unshare --mount --propagation private -- sh -c '<mount proc, bind the run dir> && exec chroot ROOT CMD'

- ``unshare --mount`` gives the node a mount namespace of its own: the ``proc`` mount and the bind mount
  of the rig's run directory (node data, logs, config, the cookie's HOME) exist only there and vanish
  with the last process in it (the VM, its port helpers). Nothing is ever mounted on the host, so a
  SIGKILL of the VM, a crashed CLI or a Ctrl-C leaves nothing to unmount.
- The run directory is bound at the same path inside the root: every path the rig writes into the
  node's environment and config is valid on both sides.
- ``exec`` all the way down (unshare → sh → chroot → rabbitmq-server): the PID the rig spawned is the
  server script's, and the Erlang VM is its child named ``beam.smp``, found as on the host. The network
  is the host's (no network namespace): addresses, ports, epmd and the iptables partitions are the same.
- The CLI (``rabbitmqctl``, ``rabbitmq-diagnostics``, ``rabbitmq-upgrade``, ``rabbitmq-queues``) runs the
  same way from the same root: it must be the server's own version.

Example::

    >>> Launch(None, Path("/usr/lib/rabbitmq/bin"), Path("/run")).command("rabbitmqctl", "status")
    ['/usr/lib/rabbitmq/bin/rabbitmqctl', 'status']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The script run by ``sh -c`` in the node's own mount namespace; its arguments follow it.
_ROOTED = (
    "root=$1; dir=$2; shift 2; "
    'mount -t proc proc "$root/proc" && '
    'mount --bind "$dir" "$root$dir" && '
    'exec chroot "$root" "$@"'
)


@dataclass(frozen=True)
class Launch:
    """Where a rig's RabbitMQ programs run from. ``root`` None: the host's ``bin_dir``."""

    root: Path | None
    bin_dir: Path
    #: The host directory every node and CLI call needs (the rig's run dir), bound inside the root.
    run_dir: Path

    def command(self, tool: str, *args: str) -> list[str]:
        """argv of ``tool`` (``rabbitmq-server``, ``rabbitmqctl`` ...) with ``args``."""
        program = [str(self.bin_dir / tool), *args]
        if self.root is None:
            return program
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            _ROOTED,
            "drill-broker",  # $0 of the script
            str(self.root),
            str(self.run_dir),
            *program,
        ]

    def prepare(self) -> None:
        """The mount point of the run directory inside the root (a directory of the root, empty)."""
        if self.root is not None:
            (self.root / str(self.run_dir).lstrip("/")).mkdir(parents=True, exist_ok=True)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """The environment for a program: a root has no locale but C.UTF-8 (the Elixir CLI warns on
        latin1), and none of the host's Python virtualenv."""
        if self.root is None:
            return base
        env = dict(base)
        env["LANG"] = env["LC_ALL"] = "C.UTF-8"
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return env

    def server_binary(self) -> Path:
        """Where ``rabbitmq-server`` is, as the host sees it (for the preflight check)."""
        if self.root is None:
            return self.bin_dir / "rabbitmq-server"
        return self.root / str(self.bin_dir).lstrip("/") / "rabbitmq-server"
