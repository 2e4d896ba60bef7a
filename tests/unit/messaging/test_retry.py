"""Retry tier choice: exponential steps, then the parking lot."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from system.messaging.retry import Park, Retry, RetryPolicy
from system.messaging.topology import RetryTier

tiers = st.lists(st.integers(1, 10**6), min_size=1, max_size=5, unique=True).map(
    lambda ds: tuple(RetryTier(d) for d in ds)
)


def test_default_shape() -> None:
    policy = RetryPolicy((RetryTier(1000), RetryTier(5000), RetryTier(25000)), max_attempts=4)
    steps = [policy.after_failure(n, "boom") for n in range(4)]
    assert [s.tier.delay_ms for s in steps[:3] if isinstance(s, Retry)] == [1000, 5000, 25000]
    assert isinstance(steps[3], Park) and steps[3].failures == 4 and "boom" in steps[3].reason


@given(tiers, st.integers(1, 10), st.integers(-3, 20))
def test_parks_exactly_when_attempts_are_used_up(
    ts: tuple[RetryTier, ...], max_attempts: int, prev: int
) -> None:
    step = RetryPolicy(ts, max_attempts).after_failure(prev, "e")
    assert step.failures == max(prev, 0) + 1
    assert isinstance(step, Park) == (step.failures >= max_attempts)
    if isinstance(step, Retry):
        assert step.tier in ts


@given(tiers, st.integers(2, 12))
def test_backoff_never_shrinks_and_reaches_the_longest_tier(
    ts: tuple[RetryTier, ...], max_attempts: int
) -> None:
    policy = RetryPolicy(ts, max_attempts)
    delays = []
    for prev in range(max_attempts - 1):
        step = policy.after_failure(prev, "e")
        assert isinstance(step, Retry)
        delays.append(step.tier.delay_ms)
    assert delays == sorted(delays)
    assert delays[0] == min(t.delay_ms for t in ts)
    if max_attempts - 1 >= len(ts):
        assert delays[-1] == max(t.delay_ms for t in ts)


def test_invalid_policies() -> None:
    with pytest.raises(ValueError):
        RetryPolicy((), max_attempts=3)
    with pytest.raises(ValueError):
        RetryPolicy((RetryTier(1),), max_attempts=0)
    assert isinstance(RetryPolicy((), max_attempts=1).after_failure(0, "e"), Park)
