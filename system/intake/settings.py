"""The one typed place for intake configuration (environment prefix ``DRILL_INTAKE_``).

Every field can be overridden with ``DRILL_INTAKE_<FIELD>``. A few come from the supervisor's or the
drill's own variables when the intake-specific one is unset:

* the run directory: ``DRILL_INTAKE_RUN_DIR``, else ``DRILL_RUN_DIR`` (set by the supervisor);
* the retailers file: ``DRILL_INTAKE_RETAILERS``, else ``DRILL_RETAILERS``, else ``<run dir>/retailers.json``;
* the HTTP port: ``DRILL_INTAKE_PORT``, else ``DRILL_HTTP_PORT``;
* the platform secrets file: ``DRILL_INTAKE_PLATFORM_SECRETS``, else ``DRILL_PLATFORM_SECRETS``, else
  ``<run dir>/secrets/platform.json``;
* the replica index: ``DRILL_INTAKE_REPLICA``, else ``DRILL_REPLICA`` (set by the supervisor).

Broker settings (URLs, timeouts, confirm window) are the messaging core's :class:`MessagingSettings`
(``DRILL_MSG_*``). :func:`messaging_settings` takes the URLs from the platform secrets file when there
is one (the ``intake`` user, see :mod:`system.platform.settings`), else from ``DRILL_MSG_AMQP_URLS`` or
the drill-wide ``DRILL_AMQP_URLS``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

import rundir
from system.messaging.settings import MessagingSettings
from system.platform.settings import ServiceSettings, messaging_settings_for
from system.platform.topology import (
    DISPATCH_ANSWERS,
    DISPATCH_ORDERS,
    DISPATCH_QUOTES,
    INTAKE,
    QUOTING_ANSWERS,
    QUOTING_ORDERS,
)

from .decide import Limits

#: The work queues a new order flows through until a courier is booked: their ready messages are the
#: lag admission control watches (``DRILL_INTAKE_ADMISSION_QUEUES``).
ADMISSION_QUEUES = (QUOTING_ORDERS, QUOTING_ANSWERS, DISPATCH_QUOTES, DISPATCH_ORDERS, DISPATCH_ANSWERS)


class IntakeSettings(BaseSettings):
    """Settings of one intake process (HTTP replica or relay)."""

    model_config = SettingsConfigDict(env_prefix="DRILL_INTAKE_", extra="ignore", populate_by_name=True)

    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("DRILL_INTAKE_PORT", "DRILL_HTTP_PORT", "port"),
        description="HTTP port (the supervisor gives each replica its own).",
    )
    run_dir: Path = Field(
        default=Path("."),
        validation_alias=AliasChoices("DRILL_INTAKE_RUN_DIR", "DRILL_RUN_DIR", "run_dir"),
        description="Where the run keeps its files; the intake DB and the default retailers file live here.",
    )
    db_path: Path | None = Field(
        default=None,
        description="The intake SQLite file shared by every replica (default <run dir>/intake.db).",
    )
    retailers_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("DRILL_INTAKE_RETAILERS", "DRILL_RETAILERS", "retailers_file"),
        description="retailers.json with API keys and webhook secrets (default <run dir>/retailers.json).",
    )
    retailers_reload_s: float = Field(
        default=1.0, gt=0, description="How often the retailers file's mtime is checked for a reload."
    )
    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest request body accepted (413 above it)."
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="FULL",
        description="FULL fsyncs every commit: a 202 survives a power loss, not only a process kill.",
    )
    log_level: str = Field(default="INFO", description="Root log level.")
    declare_platform_topology: bool = Field(
        default=True,
        description="Relay: declare the whole platform topology at start, so order.created is routable "
        "before the quoting service ever ran (False: only the orders exchange).",
    )
    relay_stats_every_s: float = Field(
        default=10.0, gt=0, description="Relay: period of its progress log line (pending rows, published)."
    )
    shutdown_grace_s: float = Field(
        default=5.0, gt=0, description="Relay: how long SIGTERM waits for publishes in flight."
    )
    platform_secrets: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "DRILL_INTAKE_PLATFORM_SECRETS", "DRILL_PLATFORM_SECRETS", "platform_secrets"
        ),
        description="Relay: the platform secrets file (default <run dir>/secrets/platform.json). When it "
        "exists the relay connects as the intake user and declares only intake's own queues.",
    )
    replica: int = Field(
        default=0,
        ge=0,
        validation_alias=AliasChoices("DRILL_INTAKE_REPLICA", "DRILL_REPLICA", "replica"),
        description="Replica index given by the supervisor (names the relay's ready marker).",
    )
    ready_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("DRILL_INTAKE_READY_FILE", "DRILL_READY_FILE", "ready_file"),
        description="This process's ready marker (the supervisor names one per replica). The HTTP "
        "replica writes it once it listens; the relay once it publishes and consumes.",
    )
    mirror_states: bool = Field(
        default=True,
        description="Relay: consume tracking's state changes (queue intake.deliveries) into intake.db, so "
        "GET /v1/deliveries/{id} and the cancel endpoint see what tracking decided. Needs the platform "
        "topology (secrets file, or declare_platform_topology).",
    )

    # -- admission control (system/intake/decide.py; the README's "Admission control") ------------------
    admission_enabled: bool = Field(
        default=True,
        description="Shed new orders (503 + Retry-After) while the platform lags; False: accept every order.",
    )
    admission_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(ADMISSION_QUEUES),
        min_length=1,
        description="Relay: the work queues whose ready messages are summed into the lag (comma separated).",
    )
    admission_depth_high: int = Field(
        default=200, ge=1, description="Start shedding when the watched queues hold this many ready messages."
    )
    admission_depth_low: int = Field(
        default=50, ge=0, description="Admit again once they hold no more than this many (hysteresis)."
    )
    admission_outbox_age_high_s: float = Field(
        default=30.0,
        gt=0,
        description="Start shedding when the oldest order not yet published waited this long (the "
        "broker answering: during an outage intake keeps accepting).",
    )
    admission_outbox_age_low_s: float = Field(
        default=5.0, ge=0, description="Admit again once the oldest unpublished order is no older than this."
    )
    admission_unbooked_high: int = Field(
        default=300,
        ge=1,
        description="Start shedding when this many accepted orders wait for a courier (needs mirror_states).",
    )
    admission_unbooked_low: int = Field(
        default=150, ge=0, description="Admit again once no more than this many wait for a courier."
    )
    admission_retry_after_s: int = Field(
        default=2, ge=1, le=3600, description="The Retry-After (seconds) of a shed answer."
    )
    admission_sample_s: float = Field(
        default=1.0, gt=0, description="How often the relay samples the lag and each replica reads it."
    )
    admission_stale_s: float = Field(
        default=5.0,
        gt=0,
        description="A lag sample older than this is unknown: intake admits (fails open).",
    )
    admission_probe_timeout_s: float = Field(
        default=2.0, gt=0, description="Relay: deadline of one round of passive declares."
    )

    test_answer_delay_s: float = Field(
        default=0.0,
        ge=0,
        description="TEST ONLY: a deliberately slow release for the drill to catch "
        "(scenarios/slow-intake.toml): every order answer (REST, Shopify, ePOS) waits this long first. The "
        "latency objectives must fail it, on any machine.",
    )

    @field_validator("admission_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _marks_ordered(self) -> Self:
        if self.admission_depth_low > self.admission_depth_high:
            raise ValueError("admission_depth_low must not exceed admission_depth_high")
        if self.admission_outbox_age_low_s > self.admission_outbox_age_high_s:
            raise ValueError("admission_outbox_age_low_s must not exceed admission_outbox_age_high_s")
        if self.admission_unbooked_low > self.admission_unbooked_high:
            raise ValueError("admission_unbooked_low must not exceed admission_unbooked_high")
        return self

    @property
    def admission_limits(self) -> Limits:
        """The admission thresholds for :func:`system.intake.decide.admission`."""
        return Limits(
            enabled=self.admission_enabled,
            depth_high=self.admission_depth_high,
            depth_low=self.admission_depth_low,
            outbox_age_high_s=self.admission_outbox_age_high_s,
            outbox_age_low_s=self.admission_outbox_age_low_s,
            unbooked_high=self.admission_unbooked_high,
            unbooked_low=self.admission_unbooked_low,
            stale_after_s=self.admission_stale_s,
            retry_after_s=self.admission_retry_after_s,
        )

    @property
    def database(self) -> Path:
        """The intake DB file."""
        return self.db_path if self.db_path is not None else self.run_dir / "intake.db"

    @property
    def retailers_path(self) -> Path:
        """The retailers file."""
        return (
            self.retailers_file
            if self.retailers_file is not None
            else self.run_dir / rundir.RETAILERS_FALLBACK
        )

    @property
    def secrets_path(self) -> Path:
        """Where the platform secrets file is looked for."""
        if self.platform_secrets is not None:
            return self.platform_secrets
        return self.run_dir / rundir.PLATFORM_SECRETS

    @property
    def uses_platform_secrets(self) -> bool:
        """Whether the relay runs as the platform's least-privilege ``intake`` user (a secrets file exists)."""
        return self.secrets_path.exists()

    @property
    def ready_marker(self) -> Path:
        """Touched once ready (see ``ready_file``), holding the PID; removed at exit. Without a
        supervisor: the relay's ``<run dir>/ready/intake.<replica>``."""
        if self.ready_file is not None:
            return self.ready_file
        return self.run_dir / rundir.ready_marker(INTAKE, self.replica)


def messaging_settings(settings: IntakeSettings | None = None) -> MessagingSettings:
    """The messaging core's settings: the ``intake`` user's URLs from the platform secrets file when it
    exists; else ``DRILL_AMQP_URLS`` (comma separated, set by the drill) when ``DRILL_MSG_AMQP_URLS`` is
    not set."""
    s = settings if settings is not None else IntakeSettings()
    if s.uses_platform_secrets:
        return messaging_settings_for(
            ServiceSettings(service=INTAKE, run_dir=s.run_dir, platform_secrets=s.secrets_path)
        )
    if "DRILL_MSG_AMQP_URLS" not in os.environ and os.environ.get("DRILL_AMQP_URLS"):
        return MessagingSettings(amqp_urls=os.environ["DRILL_AMQP_URLS"])  # type: ignore[arg-type]
    return MessagingSettings()
