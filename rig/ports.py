"""Free TCP ports on this machine: for the rig's nodes, the services' HTTP listeners, the simulator's
receiver.

A port is free when a bind succeeds now; nothing reserves it, so a caller binds soon after asking.
"""

from __future__ import annotations

import socket


class NoFreePorts(Exception):
    """No run of consecutive free ports was found."""


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound now (a live listener makes it taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # With SO_REUSEADDR a TIME_WAIT left by our previous run does not count as taken;
        # a live listener still does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_port_base(count: int) -> int:
    """The first of ``count`` consecutive free ports on 127.0.0.1."""
    for _ in range(400):
        base = free_port()
        if base + count < 65000 and all(port_free("127.0.0.1", base + i) for i in range(count)):
            return base
    raise NoFreePorts(f"no {count} free consecutive ports on 127.0.0.1")
