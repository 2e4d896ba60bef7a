"""Which RabbitMQ a rig runs, and everything that differs between the versions it can run.

The broker is a setting of the rig (``ClusterSpec.broker``, ``--broker``, a scenario's
``[cluster] broker``). Each version comes from Debian's own package: the host's when the host is the
Debian release that ships it, else a Debian root built once with debootstrap and cached under
``.drill/brokers/<codename>/`` (:mod:`rig.cluster._roots`), whose nodes run chrooted
(:mod:`rig.cluster._launch`) on the same addresses and ports as host nodes.

============  ==========  =======  =========  ==============================================================
``broker``    RabbitMQ    Erlang   Debian     served from
============  ==========  =======  =========  ==============================================================
``system``    the host's  host's   the host   ``/usr/lib/rabbitmq/bin`` (3.10.8 on Debian 12, 4.0.5 on 13)
``3.10``      3.10.8      25       bookworm   the host on Debian 12, else a bookworm root
``4.0``       4.0.5       27       trixie     the host on Debian 13, else a trixie root
============  ==========  =======  =========  ==============================================================

What differs between them, and where the difference is handled (docs/BROKERS.md lists each with the test
that covers it):

- Quorum queues get a default ``x-delivery-limit`` of 20 in 4.x (3.x: unlimited), and a message past it
  with no dead-letter exchange is dropped. A parking lot has no dead-letter exchange, and every
  ``drill parked list`` returns what it looked at (a redelivery): on 4.x a parked message would vanish
  after 20 looks. The platform's topology therefore states a limit for every quorum queue
  (``system/messaging/topology.py``: work queues 20, every other queue
  ``UNLIMITED_DELIVERY_LIMIT``). 4.x reads -1 as "no limit"; 3.10 accepts -1 but drops the message at
  its first return (measured), and has no limit without the argument: the declaring code renders the arguments for the version the broker announces in its AMQP
  handshake (``system/messaging/broker.py``: the platform imports nothing from the rig, so that one rule
  lives there; :data:`BROKERS` records the same facts for the rig's tests).
- The CLI must be the server's own version (its Erlang distribution and commands): every CLI call of the
  rig runs in the node's root (:meth:`Broker.cli`).
- Everything else the rig uses was checked on both: boot-time ``classic_config`` discovery, the
  ``rabbitmq.conf`` keys it writes, readiness (AMQP handshake, management port, ``cluster_status``'s
  ``running_nodes``), ``rabbitmq-upgrade await_online_quorum_plus_one``, ``set_vm_memory_high_watermark
  absolute``, and the management API fields the drill reads (``overview.rabbitmq_version``,
  ``nodes[].running/mem_alarm/disk_free_alarm/partitions``, ``queues[].leader``).

Example::

    >>> BROKERS["4.0"].codename
    'trixie'
    >>> resolve("4.0", host_codename="bookworm").rooted
    True
    >>> resolve("3.10", host_codename="bookworm").rooted
    False
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The host's own package: whatever ``apt-get install rabbitmq-server`` gave this machine.
SYSTEM = "system"
#: Where Debian's package puts the real scripts (the ones in /usr/sbin switch user and HOME).
DEBIAN_BIN = Path("/usr/lib/rabbitmq/bin")
#: The mirror debootstrap fetches from when the setting names none.
DEFAULT_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class BrokerVersion:
    """One RabbitMQ line the rig can run, and the Debian release whose package ships it."""

    name: str  # what --broker takes: "3.10", "4.0"
    codename: str  # the Debian release whose rabbitmq-server package is this line
    #: The quorum-queue delivery limit a queue gets when it states none (None: unlimited).
    default_delivery_limit: int | None
    #: Boot-time peer discovery (classic_config): how often, and how far apart (ms), a booting node asks
    #: its peers again. 3.10: once, 100 ms — its first node would otherwise retry 10 x 500 ms against
    #: peers still booting (13-19 s to form instead of ~8). 4.0 elects a seed node (the first listed) and
    #: the others join it, but give up and boot standalone when the seed's database is not ready yet
    #: ("could not discover and join another node; proceeding as a standalone node": measured here in 2
    #: of 8 starts with 3.10's values): they must keep asking for a while.
    discovery_retry_limit: int
    discovery_retry_interval_ms: int
    #: Whether ``x-delivery-limit: -1`` means "no limit" (4.x). 3.10 accepts -1 and drops the message at
    #: its first return: :func:`system.messaging.broker.for_broker` leaves the argument out there.
    accepts_unlimited: bool


#: Every version ``--broker`` accepts besides ``system``.
BROKERS: dict[str, BrokerVersion] = {
    "3.10": BrokerVersion(
        "3.10",
        "bookworm",
        default_delivery_limit=None,
        discovery_retry_limit=1,
        discovery_retry_interval_ms=100,
        accepts_unlimited=False,
    ),
    "4.0": BrokerVersion(
        "4.0",
        "trixie",
        default_delivery_limit=20,
        discovery_retry_limit=120,
        discovery_retry_interval_ms=250,
        accepts_unlimited=True,
    ),
}

#: What the setting accepts, for help texts and validation.
CHOICES = (SYSTEM, *BROKERS)


@dataclass(frozen=True)
class Broker:
    """A resolved broker setting: where its scripts are and, for a rooted version, the Debian root.

    ``root`` None: the host's package (``bin_dir`` as is). Otherwise the scripts are ``bin_dir`` inside
    ``root`` and every node and CLI call runs chrooted there.
    """

    setting: str
    codename: str | None  # None: the host's, whatever it is
    root: Path | None = None
    bin_dir: Path = DEBIAN_BIN

    @property
    def rooted(self) -> bool:
        return self.root is not None


def validate(setting: str) -> str:
    """The setting, checked: ``system``, ``3.10`` or ``4.0`` (``4`` and ``3`` are not guessed)."""
    if setting not in CHOICES:
        raise ValueError(f"unknown broker {setting!r}: use one of {', '.join(CHOICES)}")
    return setting


def host_codename(os_release: Path = Path("/etc/os-release")) -> str:
    """This machine's Debian codename (``bookworm``), '' when it does not say."""
    try:
        text = os_release.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip().strip('"')
    return ""


def resolve(
    setting: str,
    *,
    host_codename: str,
    brokers_dir: Path = Path(".drill/brokers"),
    bin_dir: Path = DEBIAN_BIN,
) -> Broker:
    """Where ``setting`` is served from on a host of ``host_codename``: the host's package when the host
    is the Debian release that ships that version (or the setting is ``system``), else the root
    ``brokers_dir/<codename>`` (built on first use by :func:`rig.cluster._roots.ensure_root`)."""
    validate(setting)
    if setting == SYSTEM:
        return Broker(SYSTEM, None, None, bin_dir)
    version = BROKERS[setting]
    if version.codename == host_codename:
        return Broker(setting, version.codename, None, bin_dir)
    return Broker(setting, version.codename, brokers_dir / version.codename, DEBIAN_BIN)


#: What a line the table does not know gets (a host whose package is 3.13 or 4.1): the newer behaviour.
NEWEST = BROKERS["4.0"]


def installed_version(server_dir: Path) -> str | None:
    """The version of the RabbitMQ whose scripts are in ``server_dir`` (as the host sees it), from the
    release directory Debian's package installs beside them (``../lib/rabbitmq_server-4.0.5``)."""
    found = sorted((server_dir.parent / "lib").glob("rabbitmq_server-*"))
    return found[-1].name.removeprefix("rabbitmq_server-") if found else None


def line_of(installed: str | None) -> BrokerVersion:
    """The table's row for an installed version; :data:`NEWEST` for one it does not list or cannot read."""
    return (version_of(installed) if installed else None) or NEWEST


def version_of(reported: str) -> BrokerVersion | None:
    """The line a broker's own version string belongs to (``4.0.5`` → 4.0), None for one we do not know."""
    parts = reported.strip().split(".")
    return BROKERS.get(".".join(parts[:2])) if len(parts) >= 2 else None


def debootstrap_command(codename: str, target: Path, mirror: str = DEFAULT_MIRROR) -> list[str]:
    """The command that builds a root holding Debian ``codename``'s rabbitmq-server (minbase: ~370 MB)."""
    return [
        "debootstrap",
        "--variant=minbase",
        "--include=rabbitmq-server",
        codename,
        str(target),
        mirror,
    ]
