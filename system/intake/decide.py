"""The pure part of intake: admission control — take a new order now, or shed it with ``Retry-After``.

Intake accepts an order into its own outbox whatever the platform downstream is doing; an order it
cannot serve in time is an order the platform later abandons. So, when the platform lags, intake
answers a *new* order ``503`` with ``Retry-After`` instead (a duplicate of an accepted order is not new
work: it still gets its stored answer). The lag has two figures, both sampled about once a second by
the intake relay (:mod:`system.intake.admission`) and written into ``intake.db``:

* ``depth``: ready messages summed over the platform's work queues that new orders flow through
  (``quoting.orders`` … ``dispatch.answers``), by passive ``queue.declare`` — the count each queue gives
  itself. Ready messages only: each consumer's prefetch window (``DRILL_MSG_PREFETCH``) is not in it, so
  the count grows once the consumers are saturated;
* ``outbox_age_s``: the age of the oldest outbox row the relay has not yet published once (its backlog);
* ``unbooked``: the orders intake accepted that have no courier yet (``requested`` or ``quoted`` in its
  mirror of tracking's states). This is the lag that matters most: the consumers' prefetch windows hold
  hundreds of messages unacknowledged, so the ready counts stay near zero while quoting and dispatch
  fall minutes behind (a double-load run shed nothing on depth alone, and its orders waited 113 s, p99,
  for a courier). By Little's law the unbooked count over the booking rate is the wait for a courier.

**Fail open.** When the lag is unknown — no sample yet, a sample older than ``stale_after_s`` (the relay
is down or stuck), or the broker did not answer the sampler (``depth`` is ``None``) — intake admits: it
accepts into its outbox and the relay publishes later, the no-loss design that keeps intake answering
through a full broker outage. The outbox age counts only beside a known depth for the same reason: a
broker outage makes the outbox old, and that is not the overload admission control is for; so does the
unbooked count (orders pile up unbooked while the brokers are down).

**Hysteresis.** Shedding starts when a figure reaches its high mark and stops only once every figure is
below its low mark, so admission does not flap around one threshold.

Example:
    >>> limits = Limits(depth_high=200, depth_low=50)
    >>> lag = Lag(sampled_at=100.0, depth=250, deepest="quoting.answers", outbox_age_s=0.2)
    >>> d = admission(lag, limits, shedding=False, now=100.5)
    >>> d.shed, d.reason, d.retry_after_s
    (True, 'queue_depth', 2)
    >>> admission(Lag(100.0, 120, "quoting.orders", 0.0), limits, shedding=True, now=100.5).shed
    True
    >>> admission(Lag(100.0, 40, "quoting.orders", 0.0), limits, shedding=True, now=100.5).reason
    'ok'
    >>> admission(Lag(100.0, None, None, 90.0), limits, shedding=True, now=100.5).reason
    'lag_unknown'
    >>> admission(Lag(100.0, 0, None, 0.0, unbooked=320), limits, shedding=False, now=100.5).detail
    '320 accepted orders wait for a courier; mark 300'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Reasons of an admit (intake logs them when the state changes) and of a shed (the 503's ``reason``,
#: the ledger's ``order_shed`` record and the report's "why").
OK: Final = "ok"
DISABLED: Final = "disabled"
LAG_UNKNOWN: Final = "lag_unknown"
LAG_STALE: Final = "lag_stale"
QUEUE_DEPTH: Final = "queue_depth"
OUTBOX_AGE: Final = "outbox_age"
UNBOOKED: Final = "unbooked"


@dataclass(frozen=True, slots=True)
class Lag:
    """One sample of the platform's lag (written by the relay, read by every HTTP replica).

    ``sampled_at``: unix time of the sample. ``depth``: ready messages over the watched queues (None:
    the broker did not answer). ``deepest``: the queue holding most of them. ``outbox_age_s``: age of
    the oldest outbox row not yet published (0 when there is none). ``unbooked``: accepted orders with
    no courier yet (None: not measured, intake does not mirror tracking's states).
    """

    sampled_at: float
    depth: int | None
    deepest: str | None
    outbox_age_s: float
    unbooked: int | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """The admission thresholds (from :class:`system.intake.settings.IntakeSettings`)."""

    enabled: bool = True
    depth_high: int = 200
    depth_low: int = 50
    outbox_age_high_s: float = 30.0
    outbox_age_low_s: float = 5.0
    unbooked_high: int = 300
    unbooked_low: int = 150
    stale_after_s: float = 5.0
    retry_after_s: int = 2


@dataclass(frozen=True, slots=True)
class Decision:
    """Admit (``shed`` False) or shed with ``Retry-After: retry_after_s``; ``reason`` is a short code
    (the constants above), ``detail`` the figures behind it in words."""

    shed: bool
    reason: str
    detail: str = ""
    retry_after_s: int = 0


def admission(lag: Lag | None, limits: Limits, *, shedding: bool, now: float) -> Decision:
    """Admit or shed new orders, given the latest ``lag`` sample and whether intake sheds already.

    Pure: the caller keeps ``shedding`` (the previous decision's ``shed``) for the hysteresis.
    """
    if not limits.enabled:
        return Decision(False, DISABLED)
    if lag is None:
        return Decision(False, LAG_UNKNOWN, "no lag sample yet")
    age = now - lag.sampled_at
    if age > limits.stale_after_s:
        return Decision(False, LAG_STALE, f"the latest lag sample is {age:.1f} s old")
    if lag.depth is None:
        return Decision(False, LAG_UNKNOWN, "the broker did not answer the lag sampler")
    depth_mark = limits.depth_low if shedding else limits.depth_high
    age_mark = limits.outbox_age_low_s if shedding else limits.outbox_age_high_s
    # While shedding, any figure still above its low mark keeps intake shedding; otherwise a figure
    # must reach its high mark to start.
    over_depth = lag.depth > depth_mark if shedding else lag.depth >= depth_mark
    over_age = lag.outbox_age_s > age_mark if shedding else lag.outbox_age_s >= age_mark
    unbooked_mark = limits.unbooked_low if shedding else limits.unbooked_high
    over_unbooked = lag.unbooked is not None and (
        lag.unbooked > unbooked_mark if shedding else lag.unbooked >= unbooked_mark
    )
    if over_depth:
        where = f" (most in {lag.deepest})" if lag.deepest else ""
        detail = f"{lag.depth} messages wait in the platform's work queues{where}; mark {depth_mark}"
        return Decision(True, QUEUE_DEPTH, detail, limits.retry_after_s)
    if over_unbooked:
        detail = f"{lag.unbooked} accepted orders wait for a courier; mark {unbooked_mark}"
        return Decision(True, UNBOOKED, detail, limits.retry_after_s)
    if over_age:
        detail = f"the oldest unpublished order waited {lag.outbox_age_s:.1f} s; mark {age_mark:g} s"
        return Decision(True, OUTBOX_AGE, detail, limits.retry_after_s)
    return Decision(False, OK)


def retry_after_header(seconds: float) -> str:
    """The ``Retry-After`` value (RFC 9110 delay-seconds: a non-negative integer), at least 1.

    Example:
        >>> retry_after_header(2), retry_after_header(0.2), retry_after_header(2.5)
        ('2', '1', '3')
    """
    whole = int(seconds)
    return str(max(1, whole + (1 if seconds > whole else 0)))
