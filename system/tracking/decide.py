"""Tracking's decisions, pure: what an event or a location ping does to a tracked delivery.

:func:`system.domain.lifecycle.transition` is the state machine; this module adds what only tracking
knows — which courier job was booked — and turns every outcome into one of four instructions for the
handler:

* :class:`Apply` — store the new track and announce the new state (only the new one: on a forward skip
  the skipped states never happened for us);
* :class:`Reject` — record it in ``rejected`` and go on (illegal, out of order, terminal, foreign job);
* :class:`RetryLater` — raise, so the message goes through the retry tiers and comes back: a courier
  status before our booking record, anything about a delivery whose ``order.created`` has not arrived;
* :class:`Ignore` — benign (a duplicate event, an older location ping).

Example:
    >>> d = TrackedDelivery(id="dlv_1", order_reference="s42-0000001", state=State.BOOKED,
    ...     courier="zoomly", courier_job_id="zoomly-job-1")
    >>> decide(d, Event.IN_TRANSIT, seq=5, job="zoomly-job-1", courier_status=True)
    Apply(track=Track(state=<State.IN_TRANSIT: 'in_transit'>, seq=5), previous=<State.BOOKED: 'booked'>)
    >>> decide(d, Event.PICKED_UP, seq=4, job="zoomly-job-2", courier_status=True).reason
    'foreign_job'
    >>> type(decide(None, Event.QUOTED)).__name__
    'RetryLater'
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from system.domain.common import LatLon
from system.domain.lifecycle import Accepted, Event, Reason, State, Track, transition
from system.platform.contracts import Contact, Driver, StateChanged, state_message_id

#: The rejection reason of a courier status about a job other than the one booked (e.g. a job accepted
#: late, after dispatch had given up on it and cancelled it).
FOREIGN_JOB: Final = "foreign_job"

_BEFORE_BOOKING: Final = frozenset({State.REQUESTED, State.QUOTED})


@dataclass(frozen=True, slots=True)
class TrackedDelivery:
    """What tracking keeps about one delivery (one row of ``deliveries``)."""

    id: str
    order_reference: str
    state: State = State.REQUESTED
    seq: int = 0
    retailer_id: str | None = None
    courier: str | None = None
    courier_job_id: str | None = None
    driver: Driver | None = None
    eta: datetime | None = None
    recipient: Contact = field(default_factory=Contact)
    store_name: str | None = None
    location: LatLon | None = None
    location_seq: int | None = None

    @property
    def track(self) -> Track:
        """The lifecycle position, for :func:`transition`."""
        return Track(self.state, self.seq)


@dataclass(frozen=True, slots=True)
class Apply:
    """Store ``track`` and announce its state (``previous``: the state it leaves)."""

    track: Track
    previous: State


@dataclass(frozen=True, slots=True)
class Reject:
    """Record in ``rejected``: ``reason`` is a :class:`~system.domain.lifecycle.Reason` value or
    :data:`FOREIGN_JOB`."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Not applicable yet; the message comes back through the retry tiers."""

    detail: str


@dataclass(frozen=True, slots=True)
class Ignore:
    """Nothing to do (benign)."""

    detail: str


@dataclass(frozen=True, slots=True)
class MovePosition:
    """Keep this ping as the delivery's latest position."""


Decision = Apply | Reject | RetryLater | Ignore


def _job_problem(current: TrackedDelivery, job: str | None) -> Reject | RetryLater | None:
    """Whether a courier message about ``job`` may touch ``current`` (None: it may)."""
    if current.courier_job_id is None:
        if current.state in _BEFORE_BOOKING:
            # The booking answer is probably still in flight: it names the job to trust.
            return RetryLater(f"courier message for job {job!r} before the booking ({current.state})")
        return Reject(FOREIGN_JOB, f"job {job!r} but no job is booked ({current.state})")
    if job != current.courier_job_id:
        return Reject(FOREIGN_JOB, f"job {job!r} is not the booked job {current.courier_job_id!r}")
    return None


def decide(
    current: TrackedDelivery | None,
    event: Event,
    *,
    seq: int | None = None,
    job: str | None = None,
    courier_status: bool = False,
) -> Decision:
    """What ``event`` does to ``current``.

    ``courier_status``: the event is a courier's status (from the gateway, with the job's ``seq``);
    it applies only if ``job`` is the booked job.

    Example:
        >>> d = TrackedDelivery(id="dlv_1", order_reference="r", state=State.PICKED_UP, seq=4,
        ...     courier_job_id="j1")
        >>> decide(d, Event.CANCELLED)
        Reject(reason='illegal', detail='too late to cancel: picked_up')
        >>> decide(d, Event.PICKED_UP, seq=4, job="j1", courier_status=True)
        Ignore(detail='already picked_up')
    """
    if current is None:
        return RetryLater(f"{event} for a delivery not created yet")
    if courier_status:
        problem = _job_problem(current, job)
        if problem is not None:
            return problem
    outcome = transition(current.track, event, seq)
    if isinstance(outcome, Accepted):
        return Apply(outcome.track, current.state)
    if outcome.retry_later:
        return RetryLater(outcome.detail)
    if outcome.reason is Reason.DUPLICATE:
        return Ignore(outcome.detail)
    return Reject(outcome.reason.value, outcome.detail)


def decide_location(
    current: TrackedDelivery | None, *, job: str, seq: int
) -> MovePosition | Reject | RetryLater | Ignore:
    """What a driver location ping of ``job`` with ``seq`` does: pings are ordered among themselves
    (a status never hides behind a ping: :func:`transition` keeps its own ``seq``).

    Example:
        >>> d = TrackedDelivery(id="dlv_1", order_reference="r", state=State.IN_TRANSIT, seq=5,
        ...     courier_job_id="j1", location_seq=7)
        >>> decide_location(d, job="j1", seq=6)
        Ignore(detail='ping seq 6 is not after the latest position seq 7')
        >>> decide_location(d, job="j1", seq=8)
        MovePosition()
    """
    if current is None:
        return RetryLater("location for a delivery not created yet")
    problem = _job_problem(current, job)
    if problem is not None:
        return problem
    if current.location_seq is not None and seq <= current.location_seq:
        return Ignore(f"ping seq {seq} is not after the latest position seq {current.location_seq}")
    return MovePosition()


def advance(
    current: TrackedDelivery,
    track: Track,
    *,
    courier: str | None = None,
    courier_job_id: str | None = None,
    driver: Driver | None = None,
    eta: datetime | None = None,
) -> TrackedDelivery:
    """``current`` moved to ``track``, with whatever the event told about courier, job, driver and ETA
    (what it did not tell is kept)."""
    return replace(
        current,
        state=track.state,
        seq=track.seq,
        courier=courier or current.courier,
        courier_job_id=courier_job_id or current.courier_job_id,
        driver=driver or current.driver,
        eta=eta or current.eta,
    )


def state_changed(
    d: TrackedDelivery, previous: State | None, at: datetime, reason: str | None = None
) -> StateChanged:
    """The announcement of ``d``'s (new) state, with what notifications need; its id is
    :func:`~system.platform.contracts.state_message_id` (a state is entered once)."""
    return StateChanged(
        message_id=state_message_id(d.id, d.state),
        delivery_id=d.id,
        order_reference=d.order_reference,
        retailer_id=d.retailer_id,
        state=d.state,
        previous=previous,
        at=at,
        courier=d.courier,
        courier_job_id=d.courier_job_id,
        driver=d.driver,
        eta=d.eta,
        recipient=d.recipient,
        store_name=d.store_name,
        reason=reason,
    )
