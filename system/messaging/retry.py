"""Which retry tier a failed message goes to, or whether it is parked: pure decisions."""

from __future__ import annotations

from dataclasses import dataclass

from .topology import RetryTier


@dataclass(frozen=True)
class Retry:
    """Send the message to ``tier``'s delay queue; it comes back after the tier's delay."""

    tier: RetryTier
    failures: int
    error: str = ""


@dataclass(frozen=True)
class Park:
    """Give up: the message goes to the parking lot with ``reason``."""

    reason: str
    failures: int


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff through ``tiers``; after ``max_attempts`` handler failures, park.

    Failure ``k`` (1-based) waits in tier ``k-1``; past the last tier the longest one repeats, so a
    policy with more attempts than tiers still backs off at the slowest step.
    """

    tiers: tuple[RetryTier, ...]
    max_attempts: int

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.max_attempts > 1 and not self.tiers:
            raise ValueError("retrying needs at least one retry tier")

    def after_failure(self, previous_failures: int, error: str) -> Retry | Park:
        """The next step for a message that failed ``previous_failures`` times before and failed again."""
        failures = max(previous_failures, 0) + 1
        if failures >= self.max_attempts:
            return Park(reason=f"handler failed {failures} times: {error}", failures=failures)
        ordered = tuple(sorted(self.tiers))
        return Retry(tier=ordered[min(failures, len(ordered)) - 1], failures=failures, error=error)
