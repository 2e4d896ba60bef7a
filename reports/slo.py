"""Service-level objectives: a small typed config (``RUN/slo.toml``, optional) and one named check each.

Every field is an objective; ``false`` in the TOML switches that check off (TOML has no null). Unknown
keys are an error (a typo must not silently drop an objective). Example, with the defaults::

    availability = 0.999                # request-based intake availability, at least (a fraction)
    time_availability = 0.99            # share of 1-second windows meeting the window criteria
    window_error_rate = 0.01            # a window is good when its error rate is below this...
    window_p99_ms = 500.0               # ...and its p99 intake latency is below this
    intake_p99_ms = 500.0               # p99 intake latency over the run, below
    accepted_to_booked_p99_s = 60.0     # p99 accepted -> courier booked, below
    accepted_to_delivered_p99_s = 3600.0  # p99 accepted -> delivered (includes the courier's travel)
    failover_s = 30.0                   # every fault: applied -> first success, at most
    drain_s = false                     # every fault: heal -> queues back to baseline, at most (off)

Objectives relative to the same run's fault-free baseline (off by default; the demo uses them), so that
a latency objective means the same on a quiet and on a busy machine — a machine twice as slow makes the
baseline and the faults twice as slow alike::

    baseline_p99_ms = 1000.0            # p99 of the requests sent outside every fault (and its settle
                                        # time) below this: a sanity ceiling a healthy platform is far under
    fault_p99_ratio = 10.0              # every fault: p99 of the requests sent while it held and during
                                        # the settle time after it ≤ max(floor, ratio × baseline p99)
    fault_p99_floor_ms = 2000.0         # parameters of the two above (never off): three broker nodes
                                        # booting at once starve a 2-core machine for seconds
    fault_settle_s = 10.0
    window_p99_ratio = 10.0             # a 1-s window is good when its p99 < max(window_p99_ms, ratio ×
                                        # baseline p99) (parameter of time_availability; off: absolute)

The baseline needs :data:`MIN_BASELINE_REQUESTS` fault-free requests; with fewer, the relative checks are
``skipped`` with the reason (a drill whose faults start at once has no baseline: start them later).

Each objective becomes the check ``slo[<field>]`` (one JUnit test case, :mod:`reports.slo_checks`); an objective whose evidence is
absent (no latency in the ledger, no chaos journal, no queue samples) is ``skipped``, never ``passed``.
A chaos journal with no fault in it *is* evidence: ``failover_s`` / ``drain_s`` then pass (vacuously).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

import rundir

SLO_FILE: Final = str(rundir.SLO)
#: Orders that got a courier, as a share of those accepted, that a phase of a run (or a bench step) must
#: keep relative to the best phase's (the first step's): below it the platform accepted orders it could
#: not serve in time — "no courier" is terminal, not lost, but it did not keep up. Used by
#: reports.saturation and ``drill bench platform``.
BOOKED_SHARE_KEPT: Final = 0.8
SLO_PREFIX: Final = "slo"

#: Fields that are fractions in [0, 1] (a common mistake is writing 99.9 for 99.9 %).
_FRACTIONS: Final = frozenset({"availability", "time_availability", "window_error_rate"})
#: Fields that parameterise a check rather than being one (they cannot be switched off).
_PARAMETERS: Final = frozenset({"window_error_rate", "window_p99_ms", "fault_p99_floor_ms", "fault_settle_s"})
#: Fault-free requests the relative objectives need for a baseline p99 that means something.
MIN_BASELINE_REQUESTS: Final = 50


@dataclass(frozen=True)
class SloConfig:
    """The objectives of one run (``None`` = that check is off)."""

    availability: float | None = 0.999
    time_availability: float | None = 0.99
    window_error_rate: float = 0.01
    window_p99_ms: float = 500.0
    intake_p99_ms: float | None = 500.0
    accepted_to_booked_p99_s: float | None = 60.0
    accepted_to_delivered_p99_s: float | None = 3600.0
    failover_s: float | None = 30.0
    drain_s: float | None = None
    baseline_p99_ms: float | None = None
    fault_p99_ratio: float | None = None
    fault_p99_floor_ms: float = 2000.0
    fault_settle_s: float = 10.0
    window_p99_ratio: float | None = None

    def fault_p99_limit(self, baseline_p99: float | None) -> float | None:
        """The p99 every fault must keep: ``max(floor, ratio × baseline p99)`` (None: not measured/off)."""
        if self.fault_p99_ratio is None or baseline_p99 is None:
            return None
        return max(self.fault_p99_floor_ms, self.fault_p99_ratio * baseline_p99)

    def window_p99_limit(self, baseline_p99: float | None) -> float:
        """The p99 a good 1-s window stays under: absolute, or relative to the baseline when asked."""
        if self.window_p99_ratio is None or baseline_p99 is None:
            return self.window_p99_ms
        return max(self.window_p99_ms, self.window_p99_ratio * baseline_p99)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> SloConfig:
        """Validate and build from a parsed TOML table; raises ``ValueError`` with the offending key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown SLO key(s) {unknown}; known: {sorted(known)}")
        # Any: the per-field types (float vs float | None) were enforced above, field by field.
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if value is False and name not in _PARAMETERS:
                values[name] = None
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number (or false to switch it off), not {value!r}")
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
            if name in _FRACTIONS and value > 1:
                raise ValueError(f"{name} is a fraction (e.g. 0.999), not a percentage: got {value}")
            values[name] = float(value)
        return replace(cls(), **values)

    def to_dict(self) -> dict[str, float | None]:
        """The ``slo`` section of report.json (``null`` = off)."""
        return asdict(self)


def load_slo(run_dir: Path) -> SloConfig:
    """``RUN/slo.toml`` if present, else the defaults; raises ``ValueError`` on a bad file."""
    path = run_dir / SLO_FILE
    if not path.is_file():
        return SloConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return SloConfig.from_mapping(raw)
