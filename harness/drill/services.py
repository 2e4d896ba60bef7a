"""The run's own services spec: the scenario's spec with free ports, replica overrides and env.

The drill never runs ``system/services.toml`` as it is: its HTTP ports (``{port:8080+replica}``) may be
taken, the scenario overrides replica counts, gives every service some env and one service a "broken"
switch. :func:`build_services` rewrites the spec (pure: ports come from the ``free_base`` callable) and
renders it in the supervisor's TOML format, written to ``<run>/services.toml`` for the supervisor and
for whoever reads the run afterwards. Secrets never go into it (they travel in the environment).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rig.supervisor import ServiceSpec

PORT = re.compile(r"\{port:(\d+)\+replica\}")
READY_KINDS = ("marker", "http", "running")
#: Ports reserved per service beyond its replicas, so a ``drill system scale`` up still finds free ones.
HEADROOM = 2


@dataclass(frozen=True)
class RunServices:
    """The rewritten services and how to tell that each is ready."""

    specs: list[ServiceSpec]
    #: service -> marker | http | running
    ready: dict[str, str]
    #: service -> the HTTP port of each replica (services with a ``{port:...}`` in their env)
    http_ports: dict[str, list[int]] = field(default_factory=dict)
    #: service -> the name of its ready markers (the spec name: the supervisor sets DRILL_READY_FILE)
    marker_names: dict[str, str] = field(default_factory=dict)

    def replicas(self) -> dict[str, int]:
        """Replicas per service."""
        return {s.name: s.replicas for s in self.specs}

    def to_toml(self) -> str:
        """The supervisor's spec format (rig/supervisor.py)."""
        out = ["# Written by the drill runner for this run (harness/drill/services.py); do not edit.", ""]
        for s in self.specs:
            out.append("[[service]]")
            out.append(f"name = {_str(s.name)}")
            out.append(f"argv = [{', '.join(_str(a) for a in s.argv)}]")
            out.append(f"replicas = {s.replicas}")
            if s.env:
                out.append("env = { " + ", ".join(f"{_key(k)} = {_str(v)}" for k, v in s.env.items()) + " }")
            out.append("")
        return "\n".join(out)


def _str(s: str) -> str:
    # JSON's string escapes are a subset of TOML's basic strings.
    return json.dumps(s, ensure_ascii=True)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _str(k)


def default_ready(spec: ServiceSpec) -> str:
    """``http`` for a service with a port, ``marker`` for every other (the platform runtime and the
    intake relay write the marker the supervisor names in ``DRILL_READY_FILE``)."""
    if any(PORT.search(v) for v in spec.env.values()):
        return "http"
    return "marker"


def build_services(
    specs: list[ServiceSpec],
    *,
    replicas: Mapping[str, int],
    env: Mapping[str, str],
    broken: Mapping[str, Mapping[str, str]],
    ready: Mapping[str, str],
    free_base: Callable[[int], int],
) -> RunServices:
    """Rewrite ``specs``: every ``{port:BASE+replica}`` gets a free base (``free_base(count)`` returns the
    first of ``count`` free consecutive ports), ``replicas`` override the counts, ``env`` goes to every
    service (over the spec's own), ``broken[service]`` to that service only (over everything)."""
    bases: dict[str, int] = {}
    out: list[ServiceSpec] = []
    kinds: dict[str, str] = {}
    http: dict[str, list[int]] = {}
    markers: dict[str, str] = {}
    for s in specs:
        n = replicas.get(s.name, s.replicas)
        new_env: dict[str, str] = {}
        for key, value in {**s.env, **env, **broken.get(s.name, {})}.items():
            for old in PORT.findall(value):
                if old not in bases:
                    bases[old] = free_base(max(n, 1) + HEADROOM)
            new_env[key] = PORT.sub(lambda m: f"{{port:{bases[m.group(1)]}+replica}}", value)
        spec = ServiceSpec(s.name, list(s.argv), n, new_env)
        out.append(spec)
        kinds[s.name] = ready.get(s.name) or default_ready(spec)
        ports = [int(b) for b in PORT.findall(" ".join(spec.env.values()))]
        if ports:
            http[s.name] = [ports[0] + i for i in range(n)]
        elif kinds[s.name] == "http":
            raise ValueError(f"service {s.name!r}: ready = 'http' needs a {{port:BASE+replica}} in its env")
        markers[s.name] = s.name  # the supervisor's DRILL_READY_FILE: ready/<spec name>.<replica>
    return RunServices(out, kinds, http, markers)
