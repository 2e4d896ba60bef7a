"""Simulated time versus wall time.

Two modes (see :class:`simulator.config.ClockConfig`):

* ``rate``: simulated time is wall time; the offered rate is a plain orders/s figure.
* ``compressed``: simulated time runs ``compression`` times faster (144 = a day in 10 minutes), so the
  daily curve sweeps by in minutes and a 30-minute delivery is played in 12.5 s.

Scenario events (steps, bursts, outages) are in wall seconds since the start of the run ("run time");
time of day, order time windows and driver journeys are in simulated time.

Example:
    >>> c = SimClock(compression=144.0, start_hour=11.0, epoch=0.0)
    >>> c.hour_of_day(600.0)  # 10 wall minutes = 24 simulated hours later: 11:00 again
    11.0
"""

from __future__ import annotations

import datetime as dt

from simulator.config import ClockConfig


class SimClock:
    """Converts run time (wall seconds since the start) to simulated time.

    ``epoch`` is the unix time the simulated clock shows at run time 0 (by default the wall time at the
    start of the run, so time windows sent to the platform are in its near future).
    """

    def __init__(self, compression: float = 1.0, start_hour: float = 0.0, epoch: float = 0.0) -> None:
        self.compression = compression
        self.start_hour = start_hour
        self.epoch = epoch

    @classmethod
    def from_config(cls, cfg: ClockConfig, epoch: float) -> SimClock:
        """The clock of a scenario, starting at ``epoch``."""
        return cls(cfg.compression, cfg.start_hour, epoch)

    def sim_offset(self, run_s: float) -> float:
        """Simulated seconds elapsed at run time ``run_s``."""
        return run_s * self.compression

    def run_offset(self, sim_s: float) -> float:
        """Run (wall) seconds at which ``sim_s`` simulated seconds have elapsed."""
        return sim_s / self.compression

    def hour_of_day(self, run_s: float) -> float:
        """The simulated hour of day (0 ≤ h < 24) at run time ``run_s``."""
        return (self.start_hour + self.sim_offset(run_s) / 3600.0) % 24.0

    def sim_unix(self, sim_s: float) -> float:
        """The unix time shown by the simulated clock after ``sim_s`` simulated seconds."""
        return self.epoch + sim_s

    def iso(self, sim_s: float) -> str:
        """ISO-8601 UTC timestamp (second precision) of the simulated instant ``sim_s``."""
        t = dt.datetime.fromtimestamp(int(self.epoch + sim_s), tz=dt.UTC)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
