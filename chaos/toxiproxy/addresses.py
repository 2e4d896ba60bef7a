"""Parsing ``host:port`` strings and the safety rule: loopback only.

The proxy runs on shared machines during chaos drills; a typo in a drill must never make it listen on
a public interface or relay traffic to a host outside the rig. So every ``listen`` and ``upstream``
address is checked against :class:`AddressPolicy` before it is used (400 when refused), and the
address a connection actually reached is checked again after connecting (``localhost`` is resolved
by the system, which could be configured to answer something else).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from chaos.toxiproxy.errors import ADDRESS_NOT_ALLOWED, ApiError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)

# Names accepted without a DNS lookup; the connected peer address is still verified afterwards.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True)
class HostPort:
    """A parsed ``host:port``; ``host`` has no IPv6 brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_host_port(self.host, self.port)


def format_host_port(host: str, port: int) -> str:
    """``127.0.0.1:80`` or ``[::1]:80`` (Go's ``net.JoinHostPort`` form, as Toxiproxy prints it)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host_port(value: str, what: str) -> HostPort:
    """Split ``host:port`` / ``[v6]:port``; raise a 400 :class:`ApiError` naming ``what`` if malformed."""
    bad = ApiError(f"invalid {what} address {value!r}: expected host:port", 400)
    if value.startswith("["):
        close = value.find("]")
        if close < 0 or value[close + 1 : close + 2] != ":":
            raise bad
        host, port_text = value[1:close], value[close + 2 :]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or ":" in host:
            raise bad
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise bad
    return HostPort(host, int(port_text))


@dataclass(frozen=True)
class AddressPolicy:
    """Which hosts the proxy may listen on and connect to.

    Defaults to loopback only. ``extra_networks`` is the hook for the project's own network
    namespaces (veth addresses of the rig) should a drill need them later; nothing else is allowed.
    """

    extra_networks: tuple[IPNetwork, ...] = field(default=())

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return LOOPBACK_NETWORKS + self.extra_networks

    def ip_allowed(self, host: str) -> bool:
        """True if ``host`` is an IP literal inside an allowed network."""
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)

    def host_allowed(self, host: str) -> bool:
        return host.lower() in LOOPBACK_NAMES or self.ip_allowed(host)

    def check(self, value: str, what: str) -> HostPort:
        """Parse ``value`` and refuse it (400) unless its host is allowed."""
        hp = parse_host_port(value, what)
        if not self.host_allowed(hp.host):
            allowed = ", ".join(str(n) for n in self.networks)
            raise ADDRESS_NOT_ALLOWED.with_detail(
                f"{what} {value!r} is not a loopback address; this proxy only listens on and connects "
                f"to {allowed} or 'localhost'"
            )
        return hp
