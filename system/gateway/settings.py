"""The gateway's own configuration (environment prefix ``DRILL_GATEWAY_``); the broker and the run
directory come from :class:`~system.platform.settings.ServiceSettings` (``DRILL_*``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from system.domain.common import Dialect
from system.platform.topology import DIALECTS


class GatewaySettings(BaseSettings):
    """Settings of one gateway replica."""

    model_config = SettingsConfigDict(env_prefix="DRILL_GATEWAY_", extra="ignore")

    dialects: Annotated[tuple[Dialect, ...], NoDecode] = Field(
        default=DIALECTS,
        min_length=1,
        description="The dialect adapters this replica runs (comma separated, e.g. ``uber,stuart``): each "
        "consumes its queue ``gateway.<dialect>``. Default: all three.",
    )

    @field_validator("dialects", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
