"""Drill scenario files: one TOML file says what a drill runs — cluster, services, traffic, chaos, SLOs.

Example (every table is optional; durations are seconds or strings like ``"90s"``, ``"2m"``, ``"1h"``)::

    name = "demo"                        # lowercase letters, digits, dashes: part of the run dir name
    description = "Steady traffic through leader kills and a full outage."
    duration = "50s"                     # how long traffic is offered (the simulator's --duration)
    drain_deadline = "60s"               # after the traffic: wait at most this for queues/outboxes to empty

    [cluster]
    nodes = 3                            # local provider: how many nodes to start
    provider = "local"                   # local (start one, or reuse a running rig) | external
    broker = "system"                    # local: system (the host's package) | 3.10 | 4.0 (--broker overrides)
    vhost = "drill"                      # the platform's vhost
    # amqp_urls = ["amqp://admin:pw@10.0.0.1:5672/"]   # external: one per node (admin credentials)
    # management_urls = ["http://10.0.0.1:15672"]      # external: one per node

    [system]
    spec = "system/services.toml"        # the services spec (rig/supervisor.py's format)
    replicas = { quoting = 3 }           # overrides per service
    env = { DRILL_MSG_RECONNECT_MAX_S = "1.0" }         # given to every service
    ready = { "intake-relay" = "marker" }               # marker | http | running (defaults: see below)
    ready_timeout = "90s"

    [traffic]
    scenario = "steady-fast"             # scenarios/traffic/NAME.toml, or a path
    rate = 10.0                          # orders/s (default: the traffic scenario's)
    seed = 7
    linger = "90s"                       # after the last order: couriers stay up until idle, at most this

    [traffic.locust]                     # optional: Locust load beside the simulator (loadtests/)
    shape = "doubles"                    # steady | step | doubles | spike
    users = 20
    spawn_rate = 10.0
    workers = 0

    [chaos]
    experiment = "demo"                  # scenarios/chaos/NAME.toml, a path, or "none"
    start = "5s"                         # after the traffic starts

    [slo]                                # reports/slo.py's objectives; written to <run>/slo.toml
    availability = 0.99
    accepted_to_booked_p99_s = 90.0

    [[broken]]                           # a deliberately broken service: env given to that service only
    service = "notifications"
    env = { DRILL_NOTIFICATIONS_TEST_ACK_BEFORE_COMMIT = "1" }
    why = "acks before its commit: the audit must catch the lost notifications"

Readiness per service (``[system] ready``): ``http`` = ``GET /readyz`` answers 200 on each replica's port
(services whose env has a ``{port:BASE+replica}``), ``running`` = the supervisor shows the replica
running (for a process that writes no marker), ``marker`` = the replica wrote its PID to the file the
supervisor named in ``DRILL_READY_FILE`` (``<run>/ready/<spec name>.<replica>``: every service on
``system/platform/runtime.py`` and the intake relay; the default).

A broken file raises :class:`DrillScenarioError` naming the file, the line and the field.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from chaos.toml_lines import line_of
from rig.cluster.versions import validate as validate_broker

if TYPE_CHECKING:
    from chaos.experiment import Experiment
    from reports.slo import SloConfig
    from rig.supervisor import ServiceSpec
    from simulator.config import Scenario

ROOT = Path(os.environ.get("DRILL_ROOT", Path(__file__).resolve().parents[2]))
SCENARIOS = "scenarios"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DrillScenarioError(Exception):
    """A drill scenario that cannot be run: the message names the file, the line and the field."""


def parse_duration(value: Any) -> Any:
    """``90`` / ``90.5`` / ``"90s"`` / ``"2m"`` / ``"1h"`` / ``"500ms"`` → seconds (other types pass on
    to pydantic, which names them).

    Example:
        >>> parse_duration("2m"), parse_duration(7), parse_duration("500ms")
        (120.0, 7.0, 0.5)
    """
    if isinstance(value, bool):
        return value  # pydantic rejects it as "a valid number" below
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"not a duration: {value!r} (use seconds or e.g. '90s', '2m', '1h')")
        return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, allow_inf_nan=False)]
EnvValue = str | int | float | bool


def _env_text(value: EnvValue) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _check_env(env: dict[str, EnvValue]) -> dict[str, str]:
    for key in env:
        if not _ENV_NAME.match(key):
            raise ValueError(f"{key!r} is not an environment variable name")
    return {k: _env_text(v) for k, v in env.items()}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSection(_Strict):
    """Where the brokers come from."""

    nodes: int = Field(default=3, ge=1, le=9, description="Local provider: nodes to start.")
    provider: Literal["local", "external"] = "local"
    broker: str = Field(
        default="system",
        description="Local provider: system (the host's package), 3.10 or 4.0 (rig/cluster/versions.py).",
    )
    vhost: str = Field(default="drill", min_length=1, description="The platform's vhost.")
    amqp_urls: list[str] = Field(default_factory=list, description="External: one AMQP URL per node.")
    management_urls: list[str] = Field(default_factory=list, description="External: one per node.")

    @field_validator("broker")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        return validate_broker(value)

    @model_validator(mode="after")
    def _urls(self) -> ClusterSection:
        if self.provider == "external":
            if not self.amqp_urls or len(self.amqp_urls) != len(self.management_urls):
                raise ValueError(
                    "provider external needs amqp_urls and management_urls, one of each per node"
                )
        elif self.amqp_urls or self.management_urls:
            raise ValueError("amqp_urls / management_urls are for provider = 'external' only")
        if self.provider == "external" and self.broker != "system":
            raise ValueError("broker is for provider = 'local' only (an external cluster runs what it runs)")
        return self


class SystemSection(_Strict):
    """The platform's services."""

    spec: str = Field(default="system/services.toml", description="Services spec (supervisor format).")
    replicas: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict, description="Given to every service.")
    ready: dict[str, Literal["marker", "http", "running"]] = Field(default_factory=dict)
    ready_timeout: PositiveSeconds = 90.0

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        return _check_env(v) if isinstance(v, dict) else v


class LocustSection(_Strict):
    """Locust load beside the simulator (loadtests/intake.py)."""

    shape: str = Field(default="steady", description="steady | step | doubles | spike")
    users: int = Field(default=20, ge=1, le=10_000)
    spawn_rate: float = Field(default=10.0, gt=0)
    workers: int = Field(default=0, ge=0, le=64)

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: str) -> str:
        from loadtests.profiles import PROFILES  # Locust-free

        if v not in PROFILES:
            raise ValueError(f"unknown shape {v!r}; choose one of {', '.join(sorted(PROFILES))}")
        return v


class TrafficSection(_Strict):
    """The simulator (retailers, couriers, customers) and optional Locust load."""

    scenario: str = Field(default="steady-fast", min_length=1)
    rate: float | None = Field(default=None, gt=0, description="Orders/s (default: the scenario's).")
    seed: int = Field(default=1, ge=0)
    linger: Seconds = Field(default=120.0, description="Couriers stay up after the last order, at most.")
    locust: LocustSection | None = None


class ChaosSection(_Strict):
    """The chaos experiment run in parallel with the traffic."""

    experiment: str | None = Field(default=None, description="scenarios/chaos/NAME.toml, a path, or none")
    start: Seconds = Field(default=0.0, description="Seconds after the traffic starts.")

    @field_validator("experiment")
    @classmethod
    def _none(cls, v: str | None) -> str | None:
        return None if v is None or v.strip().lower() in ("", "none") else v


class BrokenSwitch(_Strict):
    """A deliberately broken service: ``env`` is given to that service only."""

    service: str = Field(min_length=1)
    env: dict[str, str] = Field(min_length=1)
    why: str = ""

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        return _check_env(v) if isinstance(v, dict) else v


class DrillScenario(_Strict):
    """One drill scenario file."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=60)
    description: str = ""
    duration: PositiveSeconds
    drain_deadline: PositiveSeconds = 120.0
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    system: SystemSection = Field(default_factory=SystemSection)
    traffic: TrafficSection = Field(default_factory=TrafficSection)
    chaos: ChaosSection = Field(default_factory=ChaosSection)
    #: reports/slo.py's objectives, checked key by key in :func:`parse` (so an error names its line)
    slo: dict[str, float | bool] = Field(default_factory=dict)
    broken: list[BrokenSwitch] = Field(default_factory=list)


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario with every file it names resolved and loaded."""

    path: Path
    text: str
    model: DrillScenario
    traffic_path: Path
    traffic: Scenario
    experiment_path: Path | None
    experiment: Experiment | None
    spec_path: Path
    services: list[ServiceSpec]
    slo: SloConfig

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.model.name

    def replicas(self) -> dict[str, int]:
        """Replicas per service after the scenario's overrides."""
        return {s.name: self.model.system.replicas.get(s.name, s.replicas) for s in self.services}

    def uses_link_faults(self) -> bool:
        """Whether the experiment can draw a client↔broker link fault (then services go through proxies)."""
        if self.experiment is None:
            return False
        from chaos.experiment import fault_kinds

        return any(k.startswith("link_") for k in fault_kinds(self.experiment))


def with_broker(sc: LoadedScenario, broker: str | None) -> LoadedScenario:
    """``sc`` with its ``[cluster] broker`` replaced by ``broker`` (``--broker``); as it is for None."""
    if broker is None:
        return sc
    cluster = ClusterSection.model_validate({**sc.model.cluster.model_dump(), "broker": broker})
    return dataclasses.replace(sc, model=sc.model.model_copy(update={"cluster": cluster}))


def resolve_scenario_path(name_or_path: str, root: Path = ROOT) -> Path:
    """``demo`` → ``scenarios/demo.toml``; an existing path as it is. Raises naming what was looked for."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = root / SCENARIOS / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in (root / SCENARIOS).glob("*.toml"))
    raise DrillScenarioError(f"{name_or_path}: no such file, and no scenario of that name (known: {known})")


def load(name_or_path: str | Path, root: Path = ROOT) -> LoadedScenario:
    """Read, validate and resolve a drill scenario (a name in ``scenarios/`` or a path)."""
    path = resolve_scenario_path(str(name_or_path), root)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DrillScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse(text, path, root)


def parse(text: str, path: Path, root: Path = ROOT) -> LoadedScenario:
    """Validate ``text`` (the file at ``path``: relative references are tried beside it, then at ``root``)."""
    name = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DrillScenarioError(f"{name}: not valid TOML: {exc}") from exc
    try:
        model = DrillScenario.model_validate(data)
    except ValidationError as exc:
        raise DrillScenarioError(_validation_message(exc, text, name)) from exc

    def fail(loc: tuple[str | int, ...], msg: str) -> DrillScenarioError:
        line = line_of(text, loc)
        where = f"line {line}: " if line else ""
        return DrillScenarioError(f"{name}: {where}{'.'.join(str(p) for p in loc)}: {msg}")

    from chaos.experiment import ExperimentError, fault_kinds
    from chaos.experiment import load as load_experiment
    from chaos.faults import unsupported
    from reports.slo import SloConfig
    from rig.supervisor import SupervisorError, load_spec
    from simulator.config import ScenarioError, load_scenario

    for key, value in model.slo.items():
        try:
            SloConfig.from_mapping({key: value})
        except ValueError as exc:
            raise fail(("slo", key), str(exc)) from exc

    base = path.resolve().parent
    traffic_path = _reference(model.traffic.scenario, base, root, root / SCENARIOS / "traffic")
    if traffic_path is None:
        raise fail(("traffic", "scenario"), _missing(model.traffic.scenario, root / SCENARIOS / "traffic"))
    try:
        traffic = load_scenario(traffic_path)
    except ScenarioError as exc:
        raise fail(("traffic", "scenario"), str(exc)) from exc

    experiment_path = experiment = None
    if model.chaos.experiment is not None:
        experiment_path = _reference(model.chaos.experiment, base, root, root / SCENARIOS / "chaos")
        if experiment_path is None:
            raise fail(("chaos", "experiment"), _missing(model.chaos.experiment, root / SCENARIOS / "chaos"))
        try:
            experiment = load_experiment(experiment_path)
        except ExperimentError as exc:
            raise fail(("chaos", "experiment"), str(exc)) from exc
        # Refused here, so the dry run's plan says so and a run stops before the rig is even started.
        refused = unsupported(fault_kinds(experiment), model.cluster.provider)
        if refused:
            raise fail(("chaos", "experiment"), f"{experiment_path}: " + "; ".join(refused))

    spec_path = _reference(model.system.spec, base, root, None)
    if spec_path is None:
        raise fail(
            ("system", "spec"),
            f"no such file {model.system.spec!r} (tried beside the scenario and in {root})",
        )
    try:
        services = load_spec(spec_path)
    except SupervisorError as exc:
        raise fail(("system", "spec"), str(exc)) from exc
    names = [s.name for s in services]
    if not names:
        raise fail(("system", "spec"), f"{spec_path} defines no [[service]]")
    for table in ("replicas", "ready"):
        for svc in getattr(model.system, table):
            if svc not in names:
                raise fail(("system", table, svc), f"no service {svc!r} in {spec_path} (services: {names})")
    for i, sw in enumerate(model.broken):
        if sw.service not in names:
            raise fail(
                ("broken", i, "service"), f"no service {sw.service!r} in {spec_path} (services: {names})"
            )
    return LoadedScenario(
        path=path,
        text=text,
        model=model,
        traffic_path=traffic_path,
        traffic=traffic,
        experiment_path=experiment_path,
        experiment=experiment,
        spec_path=spec_path,
        services=services,
        slo=SloConfig.from_mapping(model.slo),
    )


def _reference(ref: str, base: Path, root: Path, named_dir: Path | None) -> Path | None:
    """A file a scenario names: a bare name in ``named_dir``, else a path beside the scenario or at root."""
    if named_dir is not None and "/" not in ref and not ref.endswith(".toml"):
        candidate = named_dir / f"{ref}.toml"
        return candidate if candidate.is_file() else None
    p = Path(ref)
    for candidate in (p,) if p.is_absolute() else (base / p, root / p):
        if candidate.is_file():
            return candidate
    return None


def _missing(ref: str, named_dir: Path) -> str:
    known = sorted(p.stem for p in named_dir.glob("*.toml"))
    return f"no such file or name {ref!r} (names in {named_dir}: {', '.join(known) or 'none'})"


def _validation_message(exc: ValidationError, text: str, name: str) -> str:
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    field = ".".join(str(p) for p in loc) or "(top level)"
    line = line_of(text, loc)
    where = f"line {line}: " if line else ""
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "missing (required)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{name}: {where}{field}: {msg}{more}"
