"""Where a client command (a bench) finds the brokers, the way every other command finds the rig.

``DRILL_MSG_AMQP_URLS`` wins when it is set (a cluster of the user's own, or a test's); otherwise the
rig's state file (``.drill/cluster/state.json``, or ``--run-dir``), which ``./drill cluster up`` writes:
the local rig's nodes with its administrator's credentials, or an external cluster's URLs as given.
With neither, :class:`NoBrokerFound` says in one line what to run or set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rig.cluster import state as cluster_state
from rig.cluster._errors import ClusterNotRunning
from rig.cluster._local import LocalCluster
from rig.cluster._spec import ClusterSpec

#: The messaging core's setting for its brokers (``system.messaging.settings``), as an env var.
AMQP_URLS_ENV = "DRILL_MSG_AMQP_URLS"
#: What to set when no rig runs, shown in the error.
_ENV_EXAMPLE = f"{AMQP_URLS_ENV}=amqp://USER:PASSWORD@HOST:5672/ (comma-separated, one per node)"


class NoBrokerFound(ClusterNotRunning):
    """No ``DRILL_MSG_AMQP_URLS`` and no running rig: the message says what to run or set."""


@dataclass(frozen=True)
class BrokerUrls:
    """AMQP URLs for a client, and where they came from (said in the bench's output)."""

    urls: list[str]
    source: str


def broker_urls(run_dir: Path | None = None) -> BrokerUrls:
    """The brokers a bench should use: ``DRILL_MSG_AMQP_URLS``, else the rig recorded in ``run_dir``
    (default: the rig's own, ``ClusterSpec().run_dir``).

    Raises :class:`NoBrokerFound` when neither is there, or the recorded local rig's processes are gone.
    """
    if os.environ.get(AMQP_URLS_ENV, "").strip():
        # Parsed by the messaging core's own settings (JSON or comma-separated), as its clients will.
        from system.messaging.settings import MessagingSettings

        return BrokerUrls(MessagingSettings().amqp_urls, AMQP_URLS_ENV)
    spec = ClusterSpec(run_dir=run_dir.resolve()) if run_dir is not None else ClusterSpec()
    st = cluster_state.load(spec.run_dir)
    if st is None:
        raise NoBrokerFound(
            f"no running rig (no state file in {spec.run_dir}) and {AMQP_URLS_ENV} is not set: "
            f"run `./drill cluster up` first, or set {_ENV_EXAMPLE}"
        )
    if st.provider == "external":
        return BrokerUrls(list(st.amqp_urls_external), f"the external cluster recorded in {spec.run_dir}")
    cluster = LocalCluster.attach(spec)
    if not cluster.is_running():
        raise NoBrokerFound(
            f"the rig recorded in {spec.run_dir} is not running (its processes are gone): "
            f"run `./drill cluster up` first, or set {_ENV_EXAMPLE}"
        )
    return BrokerUrls(cluster.amqp_urls, f"the rig in {spec.run_dir}")
