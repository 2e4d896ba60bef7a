"""Errors raised by the broker rig.

Every error says what went wrong and how to fix it, in one line a user can act on::

    ClusterError
    ├── RabbitMQNotInstalled      the Debian package is missing
    ├── RootUnavailable           the Debian root of a broker version could not be built
    ├── RunDirUnusable            the run directory cannot be created or written
    ├── PortInUse                 a port the rig needs is taken by another process
    ├── ClusterAlreadyRunning     a live cluster already owns this run directory
    ├── ClusterNotRunning         no state file, or none of its processes alive
    ├── NodeStartTimeout          a node did not become healthy in time (carries its log tail)
    │   └── BootCrashLoop         its VM kept dying during start-up until the time was spent
    ├── UnknownNode               a node number outside 1..N
    ├── ProviderUnavailable       e.g. testcontainers without a Docker engine
    └── ExternalClusterRefused    a destructive action against a cluster we did not start
"""

from __future__ import annotations


class ClusterError(Exception):
    """Base class of every rig error."""


class RabbitMQNotInstalled(ClusterError):
    pass


class RootUnavailable(ClusterError):
    """The Debian root of a broker version could not be built (no debootstrap, no network, no root)."""


class RunDirUnusable(ClusterError):
    pass


class PortInUse(ClusterError):
    pass


class ClusterAlreadyRunning(ClusterError):
    pass


class ClusterNotRunning(ClusterError):
    pass


class NodeStartTimeout(ClusterError):
    pass


class BootCrashLoop(NodeStartTimeout):
    """A node's VM died during start-up at every try until the time allowed was spent (its peers were
    stable meanwhile, or the time was short): the node itself is broken (data, configuration)."""

    def __init__(self, message: str, node: int, reason: str) -> None:
        super().__init__(message)
        self.node = node
        self.reason = reason


class UnknownNode(ClusterError):
    pass


class ProviderUnavailable(ClusterError):
    pass


class ExternalClusterRefused(ClusterError):
    pass
