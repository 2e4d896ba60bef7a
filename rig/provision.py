"""Provisioning the platform on a cluster: its vhost, one RabbitMQ user per service, the topology.

Least privilege (issue 4 §9): every service connects as ``drill-<service>``, whose permissions are the
regexes :meth:`Topology.permissions` renders: configure and read only its own queues, write only the
exchanges it publishes to (plus the retry machinery). The default ``guest`` user is never used; the rig's
administrator declares the exchanges and every queue once, here, so a service only re-declares its own.

Passwords are random, written only to the secrets file (``<run dir>/secrets/platform.json``, mode 0600,
never logged), and kept across re-provisioning so services already running keep working.

Uses the management HTTP API (fast, and the same for every provider) rather than ``rabbitmqctl``
(an Erlang VM boot per call).

Example::

    secrets = provision_platform(cluster, Path(".drill/system"))
    # then start the services with DRILL_PLATFORM_SECRETS=<secrets>
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets as _secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import rundir
from rig.cluster import ManagementClient
from rig.cluster.abc import Cluster

USER_PREFIX = "drill-"


class ProvisionError(Exception):
    """The broker refused a provisioning step; the message names it."""


@dataclass(frozen=True)
class Provisioned:
    """Where the secrets are and what was set up."""

    secrets_path: Path
    vhost: str
    users: dict[str, str]  # service -> user name
    queues: int


def secrets_path(run_dir: Path) -> Path:
    """The platform secrets file of a run."""
    return run_dir / rundir.PLATFORM_SECRETS


def _nodes(cluster: Cluster) -> list[str]:
    out = []
    for url in cluster.amqp_urls:
        parts = urlsplit(url)
        out.append(f"{parts.hostname}:{parts.port or 5672}")
    return out


def admin_urls(cluster: Cluster, vhost: str) -> list[str]:
    """The administrator's URLs into ``vhost`` (tests, audits, drains)."""
    return [url.rstrip("/") + "/" + quote(vhost, safe="") for url in cluster.amqp_urls]


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def provision_platform(
    cluster: Cluster,
    run_dir: Path,
    *,
    vhost: str = "drill",
    topology: Any = None,
    declare: bool = True,
) -> Provisioned:
    """Create ``vhost``, the users and their permissions, declare ``topology`` (default: the platform's)
    and write the secrets file. Idempotent: run it again and nothing changes but missing pieces."""
    from system.platform.topology import platform_topology

    topo = topology if topology is not None else platform_topology(vhost)
    path = secrets_path(run_dir)
    old = _load(path)
    old_users: dict[str, Any] = old.get("users", {}) if old.get("vhost") == vhost else {}
    admin_user, admin_password = cluster.admin
    v = quote(vhost, safe="")
    users: dict[str, dict[str, str]] = {}
    mgmt = _first_answering(cluster, admin_user, admin_password)
    try:
        mgmt.put(f"vhosts/{v}", {})
        mgmt.put(
            f"permissions/{v}/{quote(admin_user, safe='')}", {"configure": ".*", "write": ".*", "read": ".*"}
        )
        for service in topo.services:
            name = USER_PREFIX + service.name
            password = old_users.get(service.name, {}).get("password") or _secrets.token_urlsafe(24)
            perms = topo.permissions(service.name)
            mgmt.put(f"users/{quote(name, safe='')}", {"password": password, "tags": ""})
            mgmt.put(
                f"permissions/{v}/{quote(name, safe='')}",
                {"configure": perms.configure, "write": perms.write, "read": perms.read},
            )
            users[service.name] = {"username": name, "password": password}
    except Exception as exc:
        raise ProvisionError(f"provisioning vhost {vhost!r} failed: {exc}") from exc
    finally:
        mgmt.close()
    queues = asyncio.run(_declare(admin_urls(cluster, vhost), topo)) if declare else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"vhost": vhost, "nodes": _nodes(cluster), "users": users}, fh, indent=1)
    os.replace(tmp, path)
    return Provisioned(path, vhost, {k: u["username"] for k, u in users.items()}, queues)


def unprovision(cluster: Cluster, vhost: str) -> None:
    """Delete ``vhost`` (its queues go with it) and the platform's users (tests)."""
    from system.platform.topology import COURIERS, SERVICES

    admin_user, admin_password = cluster.admin
    mgmt = _first_answering(cluster, admin_user, admin_password)
    try:
        mgmt.delete(f"vhosts/{quote(vhost, safe='')}")
        for name in (*SERVICES, COURIERS):
            mgmt.delete(f"users/{quote(USER_PREFIX + name, safe='')}")
    finally:
        mgmt.close()


def _first_answering(cluster: Cluster, user: str, password: str) -> ManagementClient:
    errors = []
    for node in cluster.node_indices:
        client = ManagementClient(cluster.management_url(node), user, password, timeout=10.0)
        try:
            client.get("overview")
            return client
        except Exception as exc:  # a node down or paused: try the next
            errors.append(f"node {node}: {exc}")
            client.close()
    raise ProvisionError("no management API answered: " + "; ".join(errors))


async def _declare(urls: list[str], topology: Any) -> int:
    """Declare through every node that answers, queues spread over them (balanced quorum leaders)."""
    import aio_pika

    from system.messaging.declare import declare_topology_spread

    connections = []
    errors = []
    for url in urls:
        try:
            connections.append(await aio_pika.connect(url, timeout=10))
        except Exception as exc:  # a node down: declare through the others
            errors.append(repr(exc))
    if not connections:
        raise ProvisionError("no node answered to declare the topology: " + "; ".join(errors))
    try:
        async with asyncio.timeout(180):
            return await declare_topology_spread(connections, topology)
    finally:
        for c in connections:
            await c.close()
