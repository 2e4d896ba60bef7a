"""The broker rig: real RabbitMQ clusters the drill starts, observes, breaks and mends.

Providers behind one interface (:class:`Cluster`): :class:`LocalCluster` (plain processes on loopback,
the default), :class:`ExternalCluster` (URLs of a cluster someone else runs), and
:class:`ContainerCluster` (testcontainers, when a Docker engine answers).
"""

from rig.cluster._boot import BootRetry, boot_crash_reason
from rig.cluster._containers import ContainerCluster, docker_available
from rig.cluster._depth import amqp_queue_depths
from rig.cluster._errors import (
    BootCrashLoop,
    ClusterAlreadyRunning,
    ClusterError,
    ClusterNotRunning,
    ExternalClusterRefused,
    NodeStartTimeout,
    PortInUse,
    ProviderUnavailable,
    RabbitMQNotInstalled,
    RootUnavailable,
    RunDirUnusable,
    UnknownNode,
)
from rig.cluster._external import ExternalCluster
from rig.cluster._local import LocalCluster, MendResult, amqp_handshake
from rig.cluster._management import ManagementClient
from rig.cluster._spec import ClusterSpec
from rig.cluster.abc import Cluster, NodeStatus
from rig.cluster.clients import AMQP_URLS_ENV, BrokerUrls, NoBrokerFound, broker_urls

__all__ = [
    "AMQP_URLS_ENV",
    "BootCrashLoop",
    "BootRetry",
    "BrokerUrls",
    "Cluster",
    "ClusterAlreadyRunning",
    "ClusterError",
    "ClusterNotRunning",
    "ClusterSpec",
    "ContainerCluster",
    "ExternalCluster",
    "ExternalClusterRefused",
    "LocalCluster",
    "ManagementClient",
    "MendResult",
    "NoBrokerFound",
    "NodeStartTimeout",
    "NodeStatus",
    "PortInUse",
    "ProviderUnavailable",
    "RabbitMQNotInstalled",
    "RootUnavailable",
    "RunDirUnusable",
    "UnknownNode",
    "amqp_handshake",
    "amqp_queue_depths",
    "boot_crash_reason",
    "broker_urls",
    "docker_available",
]
