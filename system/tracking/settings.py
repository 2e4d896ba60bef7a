"""Tracking's own configuration (environment prefix ``DRILL_TRACKING_``); the broker and the run
directory come from :class:`~system.platform.settings.ServiceSettings` (``DRILL_*``)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from system.platform.topology import DEFAULT_SHARDS


class TrackingSettings(BaseSettings):
    """Settings of one tracking replica."""

    model_config = SettingsConfigDict(env_prefix="DRILL_TRACKING_", extra="ignore")

    shards: int = Field(
        default=DEFAULT_SHARDS,
        ge=1,
        description="Shard queues (tracking.shard.0..N-1) every replica consumes; single active consumer "
        "makes one replica active per shard. Must equal the platform topology's DEFAULT_SHARDS.",
    )

    @field_validator("shards")
    @classmethod
    def _agrees_with_topology(cls, value: int) -> int:
        # The lifecycle exchange hashes over every shard queue provisioning bound: consuming fewer would
        # strand deliveries on shards nobody reads; more would be queues nobody else provisioned.
        if value != DEFAULT_SHARDS:
            raise ValueError(
                f"{value} shards disagrees with the platform topology's {DEFAULT_SHARDS} "
                "(system/platform/topology.py DEFAULT_SHARDS)"
            )
        return value
