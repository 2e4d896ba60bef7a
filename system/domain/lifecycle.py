"""The canonical delivery lifecycle: states, events and the one function that moves between them.

Main path ``requested → quoted → booked → courier_assigned → picked_up → in_transit → delivered``;
side exits ``failed``, ``cancelled``, ``returned``. :func:`transition` never raises and never mutates:
it answers :class:`Accepted` (the new :class:`Track`) or :class:`Rejected` (why), and the caller
stores the first and records the second.

Rules (the choices, and why):

* **Platform events** move the start of the path: ``QUOTED`` (requested → quoted: at least one suitable
  quote), ``BOOKED`` (quoted → booked: a courier accepted the booking), ``NO_COURIER`` (requested or
  quoted → failed: no suitable quote, or every booking attempt was refused). ``BOOKED`` arriving while
  still ``requested`` overtook its ``QUOTED`` (another publisher, another route): rejected with
  ``retry_later`` set, like a courier event before the booking.
* **Courier events** (statuses from the courier gateway; every event passed with a ``seq`` counts as
  one, including the courier's ``pending`` and its cancel confirmation) are legal only once the
  delivery is ``booked``: only then do we know which courier job to trust (the caller checks the
  status's ``courier_job_id`` against the booking before calling). One arriving earlier is rejected
  as ``illegal`` with ``retry_later`` set (the booking answer is probably still in flight).
* **Forward skips** along ``booked → courier_assigned → picked_up → in_transit → delivered`` are legal
  (e.g. ``courier_assigned → in_transit``): queues redeliver out of order, and refusing the newer event
  would leave the delivery stuck behind a late one. The late one then arrives with a lower ``seq`` and
  is rejected as ``out_of_order``: the state never goes backwards.
* **Cancel** (retailer/customer request, or the courier's own cancelled status) is legal only before
  the parcel is collected: from requested, quoted, booked, courier_assigned. After ``picked_up`` it is
  ``illegal`` (the REST API answers 409 "too late").
* **Failed** (customer absent) is legal from ``courier_assigned``, ``picked_up`` and ``in_transit``
  (``courier_assigned`` is allowed because a failure reported while the pickup status is still in
  flight must not be lost). **Returned** (back to the store) is legal from ``failed``, ``picked_up``
  and ``in_transit``: a job ends delivered, failed, or failed then returned (docs/intake-api.md §3.5).
* **Terminal** states are ``delivered``, ``cancelled`` and ``returned``: nothing leaves them.
  ``failed`` is final except for ``returned``.
* **seq**: courier statuses carry the job's ``seq`` (shared with location pings, so it has gaps). An
  event whose ``seq`` is not above the last applied *status* seq is ``out_of_order``. Location pings
  are not lifecycle events: the tracker orders them separately, so a ping never hides a late status.
* An event whose target is the current state is a ``duplicate`` (a republished message, the courier's
  ``pending`` after our own ``booked``, the courier's ``cancelled`` after ours): benign, nothing changes.

Example:
    >>> t = Track()
    >>> r = transition(t, Event.QUOTED)
    >>> isinstance(r, Accepted), r.track.state if isinstance(r, Accepted) else None
    (True, <State.QUOTED: 'quoted'>)
    >>> transition(Track(state=State.PICKED_UP, seq=5), Event.CANCELLED).reason
    <Reason.ILLEGAL: 'illegal'>
    >>> transition(Track(state=State.IN_TRANSIT, seq=9), Event.PICKED_UP, seq=6).reason
    <Reason.OUT_OF_ORDER: 'out_of_order'>
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class State(StrEnum):
    """Canonical delivery states (the values are what goes on the wire and in the database)."""

    REQUESTED = "requested"
    QUOTED = "quoted"
    BOOKED = "booked"
    COURIER_ASSIGNED = "courier_assigned"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETURNED = "returned"


class Event(StrEnum):
    """What can happen to a delivery. Platform events: QUOTED, BOOKED, NO_COURIER, CANCELLED (a
    cancel request); courier events: BOOKED (the dialect's "pending"), COURIER_ASSIGNED … RETURNED,
    CANCELLED (the courier confirms)."""

    QUOTED = "quoted"
    BOOKED = "booked"
    NO_COURIER = "no_courier"
    COURIER_ASSIGNED = "courier_assigned"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    FAILED = "failed"
    RETURNED = "returned"
    CANCELLED = "cancelled"


class Reason(StrEnum):
    """Why an event was not applied."""

    ILLEGAL = "illegal"
    OUT_OF_ORDER = "out_of_order"
    DUPLICATE = "duplicate"
    TERMINAL = "terminal"


#: The main path, in order (its index is the "progress" that never decreases).
MAIN_PATH: Final[tuple[State, ...]] = (
    State.REQUESTED,
    State.QUOTED,
    State.BOOKED,
    State.COURIER_ASSIGNED,
    State.PICKED_UP,
    State.IN_TRANSIT,
    State.DELIVERED,
)
TERMINAL: Final[frozenset[State]] = frozenset({State.DELIVERED, State.CANCELLED, State.RETURNED})
#: States from which a cancellation is still possible (the parcel is not collected yet).
CANCELLABLE: Final[frozenset[State]] = frozenset(
    {State.REQUESTED, State.QUOTED, State.BOOKED, State.COURIER_ASSIGNED}
)

#: Each event's target state.
TARGET: Final[dict[Event, State]] = {
    Event.QUOTED: State.QUOTED,
    Event.BOOKED: State.BOOKED,
    Event.NO_COURIER: State.FAILED,
    Event.COURIER_ASSIGNED: State.COURIER_ASSIGNED,
    Event.PICKED_UP: State.PICKED_UP,
    Event.IN_TRANSIT: State.IN_TRANSIT,
    Event.DELIVERED: State.DELIVERED,
    Event.FAILED: State.FAILED,
    Event.RETURNED: State.RETURNED,
    Event.CANCELLED: State.CANCELLED,
}

_AFTER_BOOKING: Final = (State.BOOKED, State.COURIER_ASSIGNED, State.PICKED_UP, State.IN_TRANSIT)

#: Legal sources of each event (see the module docstring for why).
LEGAL_FROM: Final[dict[Event, frozenset[State]]] = {
    Event.QUOTED: frozenset({State.REQUESTED}),
    Event.BOOKED: frozenset({State.QUOTED}),
    Event.NO_COURIER: frozenset({State.REQUESTED, State.QUOTED}),
    # Forward skips along the courier part of the main path: any earlier state from booked on.
    Event.COURIER_ASSIGNED: frozenset(_AFTER_BOOKING[:1]),
    Event.PICKED_UP: frozenset(_AFTER_BOOKING[:2]),
    Event.IN_TRANSIT: frozenset(_AFTER_BOOKING[:3]),
    Event.DELIVERED: frozenset(_AFTER_BOOKING[:4]),
    Event.FAILED: frozenset({State.COURIER_ASSIGNED, State.PICKED_UP, State.IN_TRANSIT}),
    Event.RETURNED: frozenset({State.FAILED, State.PICKED_UP, State.IN_TRANSIT}),
    Event.CANCELLED: CANCELLABLE,
}

#: Events only a courier reports (they need a booking first).
COURIER_EVENTS: Final[frozenset[Event]] = frozenset(
    {
        Event.COURIER_ASSIGNED,
        Event.PICKED_UP,
        Event.IN_TRANSIT,
        Event.DELIVERED,
        Event.FAILED,
        Event.RETURNED,
    }
)


@dataclass(frozen=True, slots=True)
class Track:
    """Where a delivery is: its state and the highest courier status ``seq`` applied (0: none yet)."""

    state: State = State.REQUESTED
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Accepted:
    """The event applies: store ``track``."""

    track: Track

    @property
    def state(self) -> State:
        """The new state."""
        return self.track.state


@dataclass(frozen=True, slots=True)
class Rejected:
    """The event does not apply. ``detail`` says why in words; ``retry_later`` marks a courier event
    that arrived before our booking was recorded (worth one redelivery, not a bug)."""

    reason: Reason
    current: State
    event: Event
    detail: str
    retry_later: bool = False

    @property
    def is_error(self) -> bool:
        """False for a duplicate (harmless, nothing to record as an anomaly)."""
        return self.reason is not Reason.DUPLICATE


Outcome = Accepted | Rejected


def is_terminal(state: State) -> bool:
    """Whether nothing can follow ``state``.

    Example:
        >>> is_terminal(State.DELIVERED), is_terminal(State.FAILED)
        (True, False)
    """
    return state in TERMINAL


def can_cancel(state: State) -> bool:
    """Whether a cancel request is still possible (else the REST API answers 409 "too late")."""
    return state in CANCELLABLE


def progress(state: State) -> int:
    """How far along ``state`` is; every legal transition strictly increases it (never backwards).

    The main path counts 0 (requested) … 5 (in_transit); ``failed`` is 6 (only ``returned`` follows);
    the terminal states ``delivered``, ``cancelled`` and ``returned`` are all 7.

    Example:
        >>> [progress(s) for s in (State.REQUESTED, State.IN_TRANSIT, State.FAILED, State.CANCELLED)]
        [0, 5, 6, 7]
    """
    if state in MAIN_PATH and state is not State.DELIVERED:
        return MAIN_PATH.index(state)
    if state is State.FAILED:
        return len(MAIN_PATH) - 1
    return len(MAIN_PATH)


def transition(current: Track | State, event: Event, seq: int | None = None) -> Outcome:
    """Apply ``event`` (with the courier's ``seq`` when it has one) to ``current``.

    Checks, in order: duplicate (target is the current state), terminal, out of order (``seq`` not
    above the last applied), legal source; anything else is illegal (a backwards move without a seq is
    a stale platform event: out of order).

    Example:
        >>> transition(Track(State.BOOKED, 0), Event.BOOKED, seq=1).reason
        <Reason.DUPLICATE: 'duplicate'>
        >>> transition(Track(State.DELIVERED, 7), Event.FAILED, seq=8).reason
        <Reason.TERMINAL: 'terminal'>
        >>> transition(Track(State.COURIER_ASSIGNED, 2), Event.IN_TRANSIT, seq=9).track
        Track(state=<State.IN_TRANSIT: 'in_transit'>, seq=9)
    """
    track = current if isinstance(current, Track) else Track(current)
    state = track.state
    target = TARGET[event]

    def reject(reason: Reason, detail: str, retry_later: bool = False) -> Rejected:
        return Rejected(reason, state, event, detail, retry_later)

    if target is state:
        return reject(Reason.DUPLICATE, f"already {state}")
    if state in TERMINAL:
        return reject(Reason.TERMINAL, f"{state} is terminal; {event} ignored")
    if seq is not None and seq <= track.seq:
        return reject(Reason.OUT_OF_ORDER, f"seq {seq} is not after the last applied seq {track.seq}")
    # A seq marks a courier status (platform events have none): even the courier's "pending" (BOOKED)
    # or its cancel confirmation must wait for our booking record, which names the job to trust.
    if (event in COURIER_EVENTS or seq is not None) and state in (State.REQUESTED, State.QUOTED):
        return reject(Reason.ILLEGAL, f"courier event {event} before the booking ({state})", True)
    # Quoting's "quoted" and dispatch's "booked" (which follows it) reach tracking by different routes:
    # a booked that overtook its quoted waits for it (seen in the soak drill: the delivery stuck at quoted).
    if event is Event.BOOKED and state is State.REQUESTED:
        return reject(Reason.ILLEGAL, "booked before quoted: the quoted event is still on its way", True)
    if state in LEGAL_FROM[event]:
        return Accepted(Track(target, track.seq if seq is None else seq))
    if seq is None and progress(target) < progress(state):
        return reject(Reason.OUT_OF_ORDER, f"{event} is behind {state}")
    if event is Event.CANCELLED:
        return reject(Reason.ILLEGAL, f"too late to cancel: {state}")
    return reject(Reason.ILLEGAL, f"{state} → {target} is not a legal transition")


def replay(
    events: Iterable[tuple[Event, int | None]], start: Track | None = None
) -> tuple[Track, list[Rejected]]:
    """Apply ``events`` in order from ``start``: the final track and what was rejected (tests, audits).

    Example:
        >>> track, rejected = replay([(Event.QUOTED, None), (Event.BOOKED, None), (Event.PICKED_UP, 3),
        ...                           (Event.COURIER_ASSIGNED, 2)])
        >>> track.state, [r.reason.value for r in rejected]
        (<State.PICKED_UP: 'picked_up'>, ['out_of_order'])
    """
    track = start or Track()
    rejected: list[Rejected] = []
    for event, seq in events:
        out = transition(track, event, seq)
        if isinstance(out, Accepted):
            track = out.track
        else:
            rejected.append(out)
    return track, rejected
