"""The one typed place for dispatch's own configuration (environment prefix ``DRILL_DISPATCH_``).

What every service shares (replica, run dir, DB path, broker credentials) is
:class:`system.platform.settings.ServiceSettings` (``DRILL_*``).

Example:
    >>> DispatchSettings(booking_timeout_s=2).booking_timeout_s
    2.0
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DispatchSettings(BaseSettings):
    """Settings of one dispatch replica."""

    model_config = SettingsConfigDict(env_prefix="DRILL_DISPATCH_", extra="ignore", populate_by_name=True)

    booking_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long the first booking request to a courier waits for its answer (from the "
        "broker's confirm); each further ask waits twice as long as the one before.",
    )
    booking_asks: int = Field(
        default=2,
        ge=1,
        description="Booking requests to the same courier (same quote) before the next option is tried when "
        "it stays silent: 10 + 20 s by default. Answers that late come only from broker faults, and "
        "moving on then can leave an order with two couriers once the first courier's acceptance arrives.",
    )
    sweep_every_s: float = Field(
        default=0.2, gt=0, description="Period of the sweep that acts on passed booking deadlines."
    )
    sweep_batch: int = Field(default=200, ge=1, description="Most attempts one sweep transaction acts on.")
    test_give_up_on_expired_quote: bool = Field(
        default=False,
        description="TEST ONLY: a deliberately broken release for the drill to catch "
        "(scenarios/broken-dispatch.toml): a booking rejected quote_expired ends the order without a courier "
        "instead of quoting again. Abandoned orders must fail the drill.",
    )
