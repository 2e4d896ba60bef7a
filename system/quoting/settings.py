"""The one typed place for quoting's own configuration (environment prefix ``DRILL_QUOTING_``).

What every service shares (replica, run dir, DB path, broker credentials) is
:class:`system.platform.settings.ServiceSettings` (``DRILL_*``). The retailers file is
``DRILL_QUOTING_RETAILERS``, else the drill-wide ``DRILL_RETAILERS``, else ``<run dir>/retailers.json``.

Example:
    >>> QuotingSettings(retailers_file=None).retailers_path(Path("/run"))
    PosixPath('/run/retailers.json')
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

import rundir


class QuotingSettings(BaseSettings):
    """Settings of one quoting replica."""

    model_config = SettingsConfigDict(env_prefix="DRILL_QUOTING_", extra="ignore", populate_by_name=True)

    quote_deadline_s: float = Field(
        default=3.0,
        gt=0,
        description="How long a round waits for the couriers' answers (couriers in an outage never answer).",
    )
    booking_deadline_s: float = Field(
        default=1800.0,
        gt=0,
        description="An order's own deadline when its retailer gives none sooner (the end of its pickup "
        "window): until then a silent courier is asked again and a round whose options ran out for "
        "transient reasons (quotes expired during an outage, couriers that never answered) is quoted again; "
        "then no_courier. 30 minutes: a retailer that gives no window wants a courier within half an hour.",
    )
    quote_wait_max_s: float = Field(
        default=24.0,
        gt=0,
        description="The longest one ask of a round with silent couriers waits (the doubling stops there).",
    )
    courier_down_after_s: float = Field(
        default=30.0,
        gt=0,
        description="A courier is unreachable when another courier has answered an ask made this long "
        "after its oldest unanswered ask (measured between asks, so a broker outage that silences everyone, "
        "then returns the queued answers in any order, makes nobody unreachable). A silent unreachable "
        "courier counts as a refusal; a "
        "silent reachable one is asked again, and keeps an order without options from ending no_courier.",
    )
    max_asked: int = Field(
        default=6,
        ge=1,
        description="Most couriers asked per order (the retailer's priority fleet always, then by priority rank).",
    )
    sweep_every_s: float = Field(
        default=0.2, gt=0, description="Period of the sweep that decides rounds whose deadline passed."
    )
    sweep_batch: int = Field(default=200, ge=1, description="Most rounds one sweep transaction decides.")
    retailers_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("DRILL_QUOTING_RETAILERS", "DRILL_RETAILERS", "retailers_file"),
        description="retailers.json with each retailer's marketplace rules (default <run dir>/retailers.json).",
    )
    retailers_reload_s: float = Field(
        default=1.0, gt=0, description="How often the retailers file's mtime is checked for a reload."
    )

    def retailers_path(self, run_dir: Path) -> Path:
        """The retailers file of a run."""
        return self.retailers_file if self.retailers_file is not None else run_dir / rundir.RETAILERS_FALLBACK

    def ask_wait_s(self, attempt: int) -> float:
        """How long ask number ``attempt`` (1 = the first) of a round waits for answers: silence from a
        courier is a transport problem until the order's deadline (couriers reconnecting after a broker
        outage, requests expired in a backlog, couriers cut off by a partition), so each ask waits twice
        as long as the one before, up to :attr:`quote_wait_max_s`.

        >>> s = QuotingSettings(quote_deadline_s=3.0, quote_wait_max_s=24.0)
        >>> [s.ask_wait_s(k) for k in (1, 2, 3, 4, 5)]
        [3.0, 6.0, 12.0, 24.0, 24.0]
        """
        wait: float = self.quote_deadline_s * 2.0 ** (max(attempt, 1) - 1)
        return min(wait, max(self.quote_deadline_s, self.quote_wait_max_s))
