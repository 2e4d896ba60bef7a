"""Scenario files: the traffic a run plays, as data (TOML), validated into typed models.

A scenario names the clock, the arrival process, the world (retailers, couriers), the webhook
misbehaviour and the customers. Every table is optional except ``[arrivals]``; unknown keys, wrong
types and out-of-range values are errors that name the file and the field::

    name = "doubles"
    description = "One new client doubles the load at t=60 s"
    duration_s = 120.0

    [clock]
    mode = "rate"            # "rate": orders/s at wall time; "compressed": a simulated day runs faster
    compression = 1.0        # simulated seconds per wall second (must be 1 in rate mode)
    start_hour = 11.0        # simulated time of day at the start of the run

    [arrivals]
    rate = 20.0              # base offered rate, orders per *wall* second, at curve multiplier 1
    curve = "flat"           # "flat" or "daily" (lunch and dinner peaks, quiet night)
    steps = [{ at = 60.0, factor = 2.0, new_client = "bigco" }]      # from t=60 s the rate is ×2
    bursts = [{ at = 30.0, duration = 10.0, factor = 4.0 }]          # ×4 for 10 s

    [[outages]]
    courier = "dashly"
    at = 30.0
    duration = 60.0

Times (``at``, ``duration``) are wall seconds since the start of the run; the daily curve follows the
*simulated* time of day, which advances ``compression`` times faster than the wall clock.

Example:
    >>> s = Scenario.model_validate({"name": "x", "arrivals": {"rate": 5.0}})
    >>> s.arrivals.rate, s.clock.mode
    (5.0, 'rate')
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Channel = Literal["rest", "shopify", "epos"]
Vehicle = Literal["bike", "cargobike", "motorbike", "car", "van"]
Dialect = Literal["uber", "doordash", "stuart"]
ParcelSize = Literal["S", "M", "L", "XL"]

Share = Annotated[float, Field(ge=0.0, le=1.0)]
NonNeg = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]


class _Model(BaseModel):
    # strict: a TOML string "5" is not a number; forbid: a typo in a key is an error, not a silent default.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ClockConfig(_Model):
    """How simulated time relates to wall time.

    Example: a day of traffic in 10 minutes is ``{mode = "compressed", compression = 144.0}``.
    """

    mode: Literal["rate", "compressed"] = "rate"
    compression: Positive = 1.0
    start_hour: Annotated[float, Field(ge=0.0, lt=24.0)] = 0.0

    @model_validator(mode="after")
    def _rate_is_uncompressed(self) -> ClockConfig:
        if self.mode == "rate" and self.compression != 1.0:
            raise ValueError("compression must be 1.0 in rate mode (use mode = 'compressed')")
        return self


class Step(_Model):
    """From ``at`` on the offered rate is multiplied by ``factor`` (the latest step passed wins).

    With ``new_client`` the extra share of orders (``1 - 1/factor``) comes from a new retailer of that
    name: "one new client doubles the load".
    """

    at: NonNeg
    factor: Positive
    new_client: str | None = None


class Burst(_Model):
    """During ``[at, at + duration)`` the offered rate is multiplied by ``factor`` (e.g. a flash sale)."""

    at: NonNeg
    duration: Positive
    factor: Positive


class ArrivalsConfig(_Model):
    """The order arrival process: a Poisson process whose rate follows the curve, steps and bursts.

    ``random_bursts_per_hour`` adds unscheduled bursts (Poisson in wall time, seeded) of
    ``random_burst_factor`` lasting ``random_burst_duration_s``.
    """

    rate: Positive
    curve: Literal["flat", "daily"] = "flat"
    steps: list[Step] = Field(default_factory=list)
    bursts: list[Burst] = Field(default_factory=list)
    random_bursts_per_hour: NonNeg = 0.0
    random_burst_factor: Positive = 3.0
    random_burst_duration_s: Positive = 20.0


class ChannelMix(_Model):
    """Relative share of retailers on each intake channel."""

    rest: NonNeg = 0.5
    shopify: NonNeg = 0.3
    epos: NonNeg = 0.2

    @model_validator(mode="after")
    def _some_channel(self) -> ChannelMix:
        if self.rest + self.shopify + self.epos <= 0:
            raise ValueError("at least one channel share must be positive")
        return self


class WorldConfig(_Model):
    """The retailers and the city."""

    retailers: Annotated[int, Field(ge=1, le=10_000)] = 8
    channel_mix: ChannelMix = Field(default_factory=ChannelMix)
    city_radius_km: Annotated[float, Field(gt=0.0, le=100.0)] = 20.0
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "GBP"


class WebhookConfig(_Model):
    """How the webhook providers (Shopify, ePOS) misbehave, on purpose, like the real ones."""

    duplicate_share: Share = 0.05
    duplicate_delay_s: NonNeg = 0.5
    update_share: Share = 0.2
    out_of_order_share: Share = 0.02


class CustomerConfig(_Model):
    """Customers: the share who cancel, and when (simulated seconds after the order)."""

    cancel_share: Share = 0.02
    cancel_after_min_s: NonNeg = 60.0
    cancel_after_max_s: NonNeg = 600.0

    @model_validator(mode="after")
    def _ordered(self) -> CustomerConfig:
        if self.cancel_after_max_s < self.cancel_after_min_s:
            raise ValueError("cancel_after_max_s must be >= cancel_after_min_s")
        return self


class SenderConfig(_Model):
    """The HTTP sender: concurrency, per-request timeout, retries of unknown outcomes, and how a shed
    answer (``503`` + ``Retry-After``: intake's admission control) is honoured.

    A retry reuses the same ``Idempotency-Key`` / webhook id, like a real client would. A shed request
    is sent again after ``Retry-After`` (plus up to ``shed_jitter`` of it, so retailers shed together do
    not come back together; at most ``shed_max_wait_s``), like a webhook provider would, until it is
    answered otherwise, or ``shed_max_attempts`` sends were shed, or the next send would leave more than
    ``shed_give_up_s`` after the first: then it is given up, and the ledger says so.
    """

    concurrency: Annotated[int, Field(ge=1, le=10_000)] = 64
    timeout_s: Positive = 5.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 1
    retry_backoff_s: NonNeg = 0.5
    max_backlog: Annotated[int, Field(ge=1)] = 20_000
    honour_retry_after: bool = True
    shed_max_attempts: Annotated[int, Field(ge=1, le=1_000)] = 12
    shed_give_up_s: Positive = 60.0
    shed_max_wait_s: Positive = 30.0
    shed_jitter: Share = 0.25


class CourierConfig(_Model):
    """A courier company of the marketplace.

    Price = (``base_minor`` + ``per_km_minor[vehicle]`` × road km) × surge, rounded to 5 minor units.
    Surge ``surge_factor`` applies at the lunch and dinner peaks of simulated time.

    Example::

        [[couriers]]
        name = "pedalo"
        dialect = "stuart"
        vehicles = ["bike", "cargobike"]
        base_minor = 300
        per_km_minor = { bike = 110, cargobike = 140 }
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{1,30}$")]
    dialect: Dialect
    vehicles: Annotated[list[Vehicle], Field(min_length=1)]
    base_minor: Annotated[int, Field(ge=0)]
    per_km_minor: dict[Vehicle, Annotated[int, Field(ge=0)]]
    surge_factor: Annotated[float, Field(ge=1.0)] = 1.2
    quote_latency_ms: Positive = 150.0
    acceptance: Share = 0.95
    capacity: Annotated[int, Field(ge=1)] = 200
    fail_share: Share = 0.03
    return_share: Share = 0.5
    priority: bool = False
    speed_factor: Positive = 1.0

    @model_validator(mode="after")
    def _priced(self) -> CourierConfig:
        missing = [v for v in self.vehicles if v not in self.per_km_minor]
        if missing:
            raise ValueError(f"per_km_minor has no price for vehicle(s) {missing}")
        return self


class OutageConfig(_Model):
    """A courier stops answering (quotes and bookings) during ``[at, at + duration)`` wall seconds."""

    courier: str
    at: NonNeg
    duration: Positive


def default_couriers() -> list[CourierConfig]:
    """The default marketplace: four companies, one per dialect plus a van fleet."""
    return [
        CourierConfig(
            name="zoomly", dialect="uber", vehicles=["bike", "motorbike", "car"], base_minor=399,
            per_km_minor={"bike": 95, "motorbike": 120, "car": 160}, quote_latency_ms=120.0,
            acceptance=0.93, capacity=400, priority=True,
        ),
        CourierConfig(
            name="dashly", dialect="doordash", vehicles=["bike", "car"], base_minor=349,
            per_km_minor={"bike": 105, "car": 150}, quote_latency_ms=200.0, acceptance=0.9, capacity=300,
        ),
        CourierConfig(
            name="pedalo", dialect="stuart", vehicles=["bike", "cargobike", "motorbike"], base_minor=320,
            per_km_minor={"bike": 110, "cargobike": 140, "motorbike": 125}, quote_latency_ms=90.0,
            acceptance=0.95, capacity=250,
        ),
        CourierConfig(
            name="vanguard", dialect="stuart", vehicles=["car", "van"], base_minor=650,
            per_km_minor={"car": 170, "van": 210}, quote_latency_ms=350.0, acceptance=0.97,
            capacity=120, surge_factor=1.0,
        ),
    ]  # fmt: skip


class Scenario(_Model):
    """A whole scenario file. Only ``[arrivals]`` is required."""

    name: str = "unnamed"
    description: str = ""
    duration_s: Positive = 60.0
    clock: ClockConfig = Field(default_factory=ClockConfig)
    arrivals: ArrivalsConfig
    world: WorldConfig = Field(default_factory=WorldConfig)
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig)
    customers: CustomerConfig = Field(default_factory=CustomerConfig)
    sender: SenderConfig = Field(default_factory=SenderConfig)
    couriers: Annotated[list[CourierConfig], Field(min_length=1)] = Field(default_factory=default_couriers)
    outages: list[OutageConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        names = [c.name for c in self.couriers]
        if len(set(names)) != len(names):
            raise ValueError(f"courier names must be unique, got {names}")
        for o in self.outages:
            if o.courier not in names:
                raise ValueError(f"outage names unknown courier {o.courier!r} (known: {names})")
        return self

    def with_rate(self, rate: float) -> Scenario:
        """A copy with the base offered rate replaced (the ``--rate`` override)."""
        if rate <= 0:
            raise ValueError("rate must be > 0")
        return self.model_copy(update={"arrivals": self.arrivals.model_copy(update={"rate": rate})})


class ScenarioError(Exception):
    """A scenario file that cannot be used; ``str()`` names the file and every bad field."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {field}: {msg}" if field else f"{source}: {msg}" for field, msg in problems]
        super().__init__("invalid scenario\n  " + "\n  ".join(lines))


def _format_errors(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg} (got {err['input']!r})"
        problems.append((field, msg))
    return problems


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and validate TOML text; ``source`` is the name used in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, [("", f"not valid TOML: {exc}")]) from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, _format_errors(exc)) from None


def scenarios_dir() -> Path:
    """The folder of the bundled traffic scenarios (``scenarios/traffic`` at the repository root)."""
    return Path(__file__).resolve().parent.parent / "scenarios" / "traffic"


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by path, or by name from :func:`scenarios_dir` (``steady`` → ``steady.toml``)."""
    path = Path(name_or_path)
    if not path.exists():
        candidate = scenarios_dir() / f"{name_or_path}.toml"
        if not candidate.exists():
            known = sorted(p.stem for p in scenarios_dir().glob("*.toml"))
            raise ScenarioError(str(name_or_path), [("", f"no such file or scenario (known: {known})")])
        path = candidate
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), [("", f"cannot read: {exc}")]) from None
    return parse_scenario(text, str(path))
