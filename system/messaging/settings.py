"""The one typed place for messaging configuration (environment prefix ``DRILL_MSG_``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class MessagingSettings(BaseSettings):
    """Settings of the messaging core; every field can be overridden with ``DRILL_MSG_<FIELD>``.

    List fields accept either JSON (``'["a","b"]'``) or a comma-separated string (``a,b``).
    """

    model_config = SettingsConfigDict(env_prefix="DRILL_MSG_", extra="ignore")

    amqp_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["amqp://guest:guest@127.0.0.1:5672/"],
        description="Every node of the cluster; clients connect to the first that answers and fail over.",
    )
    topology: str = Field(
        default="system.platform.topology:platform_topology",
        description="'module:function' returning the platform's Topology (used by the CLI).",
    )
    random_start_node: bool = Field(
        default=True, description="Start at a random node of amqp_urls (False: in order, for tests)."
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Per-URL connection attempt timeout.")
    heartbeat_s: int = Field(
        default=10, ge=0, description="AMQP heartbeat: detects a dead node in ~2 intervals."
    )
    reconnect_initial_s: float = Field(
        default=0.1, gt=0, description="First back-off after a lost connection."
    )
    reconnect_max_s: float = Field(
        default=3.0, gt=0, description="Cap of the exponential reconnect back-off."
    )

    confirm_window: int = Field(
        default=256, ge=1, description="Most unconfirmed publishes in flight per publisher."
    )
    publish_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Deadline for one publish+confirm; past it the outcome is unknown: republish.",
    )

    relay_batch: int = Field(default=512, ge=1, description="Outbox rows read per query.")
    relay_idle_poll_s: float = Field(
        default=0.05, gt=0, description="Outbox poll period when nothing signalled, while rows flow."
    )
    relay_quiet_poll_s: float = Field(
        default=0.5,
        gt=0,
        description="Outbox poll period once no row has been found for relay_quiet_after_s: an idle "
        "platform's relays polled 20 times a second each for nothing. Rows committed by this process wake "
        "the relay at once; only rows of another process (intake's HTTP replicas, a replica without the "
        "lease) wait up to this long, and only the first after a quiet spell.",
    )
    relay_quiet_after_s: float = Field(
        default=2.0,
        ge=0,
        description="Seconds without a pending row before the relay polls at relay_quiet_poll_s.",
    )
    relay_retry_backoff_s: float = Field(
        default=1.0, gt=0, description="Delay before a returned row is retried."
    )

    prefetch: int = Field(
        default=200, ge=1, description="Unacked deliveries the broker may push to a consumer."
    )
    consumer_batch: int = Field(default=64, ge=1, description="Deliveries handled in one SQLite transaction.")
    stall_check_s: float = Field(
        default=5.0, gt=0, description="Idle consumer checks the queue this often; ready messages mean stuck."
    )
    retry_delays_ms: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [1_000, 5_000, 25_000],
        description="Backoff tiers: one TTL queue per delay; a failed message waits in the next tier.",
    )
    max_attempts: int = Field(default=4, ge=1, description="Handler attempts before a message is parked.")
    delivery_limit: int = Field(
        default=20,
        ge=1,
        description="x-delivery-limit: redeliveries (crashes) before the broker parks a message.",
    )

    # Test-only switch: the relay stops (sleeps forever) once it has published this many rows and
    # before it records them as sent, so a test can SIGKILL it between commit and confirm.
    test_halt_after_publish: int | None = Field(
        default=None, description="TEST ONLY, never set in production."
    )
    test_halt_marker: str | None = Field(default=None, description="TEST ONLY: file touched when halted.")

    @field_validator("amqp_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("retry_delays_ms", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        return _split_list(value)


def _split_list(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value
