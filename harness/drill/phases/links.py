"""Phase "links" (only when the experiment has link faults): a Toxiproxy proxy per node; the services'
secrets file points at the proxies, so a link fault cuts services off their broker."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import rundir
from harness.drill.run import DrillError, DrillRun
from rig import procs
from rig.cluster import LocalCluster

if TYPE_CHECKING:
    from chaos.links import LinkProxies


def _proxies() -> type[LinkProxies]:
    from chaos.links import LinkProxies

    return LinkProxies


def start_links(run: DrillRun, *, proxies: Any = None) -> None:
    """Reuse the rig's link proxies or start them (recorded in pids.json), then write the services'
    secrets (``secrets/platform-services.json``, mode 0600) with the proxies as the nodes.
    ``proxies``: the :class:`chaos.links.LinkProxies` class (a fake in tests)."""
    proxies = proxies or _proxies()
    # The proxies stand in front of the nodes' own addresses: a local rig's processes.
    if not isinstance(run.cluster, LocalCluster):
        raise DrillError("link faults need the local provider (the proxies stand in front of its nodes)")
    links = proxies.attach(run.cluster.spec.run_dir)
    if links is None:
        with procs.interrupts_deferred():
            links = proxies.start(run.cluster)
        run.links = links
        run.pids["links"] = links.state.pid
        run.save_pids()
    else:
        run.say(f"reusing the link proxies already running for {run.cluster.spec.run_dir}")
    assert run.secrets is not None
    doc = json.loads(run.secrets.read_text())
    doc["nodes"] = [listen for _, listen in sorted(links.state.proxies.items())]
    path = run.run_dir / rundir.SERVICES_SECRETS
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=1)
    run.secrets = path
    run.say(f"services connect through {', '.join(doc['nodes'])} (secrets {path})")
