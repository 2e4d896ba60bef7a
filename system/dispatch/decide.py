"""The pure part of dispatch: a job's state and what each event does to it (new state + effects).

A *job* is one delivery's booking: the ranked options quoting sent (``DeliveryQuoted``), the booking
*attempts* made from them (one courier each, in order), and where it ended. Every event is a function
``(job, event) → Decision(new job, effects)``; the store persists the job and turns the effects into
outbox messages in the same transaction, so a re-run computes and writes the same thing.

Rules, and why:

* **Book option 0, then the next on a rejection or a timeout** (:func:`~system.domain.quoting.next_option`:
  a courier that refused or timed out gets no second attempt in that round). Options whose quote expired
  are skipped.
* **Options run out: refused, or quote again.** When every option was refused for good (the courier
  declined: no driver, no capacity — anything but :data:`TRANSIENT_REJECTIONS`) → ``no_courier``
  ("every booking refused"): the world said no. When any failed for a transient reason — a quote that
  expired while the brokers were down, a courier's ``unknown_quote``, a courier that never answered —
  and the order's deadline (``book_by``) has not passed → ``requoting``: a ``RequoteRequested`` asks
  quoting for round ``n + 1`` (couriers that refused for good are not asked again), whose options are
  booked the same way. An order is never given up because the platform was slow; past its deadline it
  ends ``no_courier`` ("the order's deadline passed").
* **A silent courier is asked again before we move on**: up to ``max_asks`` asks per attempt, ask ``k``
  waiting :func:`ask_wait_s` (``timeout_s * 2**(k-1)``), request id ``bk-<delivery>-<n>-<k>``. Answers
  that late come only from broker faults (a partition, a failover); moving on then books a second courier
  while the first one's acceptance is on its way, and if that courier refuses its release
  (``too_late:picked_up``) the order keeps two. An answer to any ask settles the still-pending attempt,
  and a repeated request for a quote gets the same answer, never a second driver (intake-api.md §3.3).
* **No delivery keeps two couriers.** An acceptance is kept for the current pending attempt of a job
  still booking, and for an attempt that timed out while the job is still booking or quoting again: the
  courier we gave up on said yes after all and has a driver on it, so the ask pending meanwhile is
  superseded (its acceptance, should it come, is released while still cancellable). Any other
  acceptance (the job is booked or cancelled already) *releases* that courier job: a ``cancel_request``
  goes to it.
* **Repeats change nothing**: a courier republishing its answer finds the attempt already settled.
* **Cancel**: booked → ``cancel_request`` to the courier job; booking in flight → the job is cancelled
  (the pending attempt's acceptance, if it comes, is released); not quoted yet → remembered, and the
  ``DeliveryQuoted`` that follows books nothing.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> from system.domain.common import Money
    >>> t0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
    >>> def q(c):
    ...     return Quote(courier=c, quote_id=f"q-{c}", price=Money(amount_minor=700, currency="GBP"),
    ...         vehicle="bike", pickup_eta=t0, dropoff_eta=t0, expires_at=t0 + timedelta(minutes=15))
    >>> d = on_quoted(None, "dlv_1", "s1", "r01", (q("zoomly"), q("dashly")), t0, timeout_s=10)
    >>> d.job.status, [type(e).__name__ for e in d.effects], d.job.current.courier
    (<JobStatus.BOOKING: 'booking'>, ['Book'], 'zoomly')
    >>> d = on_booking_answer(d.job, 1, Reply(accepted=False, reason="no_capacity"), t0, timeout_s=10)
    >>> d.job.current.courier, d.job.attempts[0].status
    ('dashly', <AttemptStatus.REJECTED: 'rejected'>)
    >>> d = on_booking_answer(d.job, 2, Reply(accepted=True, courier_job_id="j-9"), t0, timeout_s=10)
    >>> d.job.status, d.job.courier_job_id, [type(e).__name__ for e in d.effects]
    (<JobStatus.BOOKED: 'booked'>, 'j-9', ['Booked'])
    >>> d = on_quoted(None, "dlv_2", "s2", "r01", (q("zoomly"),), t0, timeout_s=10)
    >>> d = on_timeout(d.job, 1, t0 + timedelta(seconds=10), timeout_s=10, max_asks=2)
    >>> d.note, d.job.current.deadline_at - t0.timestamp()
    ('zoomly silent: asking again (ask 2 of 2)', 30.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from system.domain.quoting import Quote, next_option
from system.platform.contracts import Driver

__all__ = [
    "TRANSIENT_REJECTIONS",
    "Attempt",
    "AttemptStatus",
    "Book",
    "Booked",
    "CancelJob",
    "Decision",
    "Effect",
    "Job",
    "JobStatus",
    "NoCourier",
    "Reply",
    "Requote",
    "ask_wait_s",
    "booking_request_id",
    "cancel_request_id",
    "on_booking_answer",
    "on_cancel",
    "on_quoted",
    "on_timeout",
]

#: The reason of the ``no_courier`` event when the options ran out.
EVERY_BOOKING_REFUSED = "every booking refused"
#: Booking rejections that say nothing about the courier's will to take the order, only that our request
#: came too late or was lost (a quote expired during a broker outage; the courier no longer knows it):
#: the order is quoted again. Any other rejection (``no_driver_available``, ``no_capacity``, …) refuses.
TRANSIENT_REJECTIONS: frozenset[str] = frozenset({"quote_expired", "unknown_quote"})


class JobStatus(StrEnum):
    """Where a job is."""

    BOOKING = "booking"  # an attempt is in flight
    REQUOTING = "requoting"  # options ran out for transient reasons: waiting for the next round's quotes
    BOOKED = "booked"  # a courier accepted: final for dispatch unless the order is cancelled
    NO_COURIER = "no_courier"  # every option refused for good, or the order's deadline passed
    CANCELLED = "cancelled"  # the order was cancelled (before the quote, while booking, or once booked)


class AttemptStatus(StrEnum):
    """Where one booking attempt is."""

    PENDING = "pending"  # request sent, no answer yet, deadline not passed
    BOOKED = "booked"  # accepted and kept: the job's courier
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    RELEASED = "released"  # accepted after we stopped wanting it: a cancel_request was sent


def booking_request_id(delivery_id: str, attempt: int, ask: int = 1) -> str:
    """The deterministic id of ask ``ask`` of attempt ``attempt``'s booking request (answers echo it as
    in_reply_to). The first ask keeps the id it had before asks existed.

    >>> booking_request_id("dlv_1", 2), booking_request_id("dlv_1", 2, 3)
    ('bk-dlv_1-2', 'bk-dlv_1-2-3')
    """
    return f"bk-{delivery_id}-{attempt}" if ask <= 1 else f"bk-{delivery_id}-{attempt}-{ask}"


def ask_wait_s(timeout_s: float, ask: int) -> float:
    """How long ask ``ask`` (1 = the first) of a booking attempt waits: twice as long as the one before."""
    return timeout_s * 2.0 ** (max(ask, 1) - 1)


def cancel_request_id(delivery_id: str, courier_job_id: str) -> str:
    """The deterministic id of the cancel request for one courier job."""
    return f"cx-{delivery_id}-{courier_job_id}"


@dataclass(frozen=True)
class Attempt:
    """One booking request to one courier, asked ``asks`` times so far (``deadline_at``: unix time, of the
    latest ask)."""

    number: int
    courier: str
    quote_id: str
    deadline_at: float
    status: AttemptStatus = AttemptStatus.PENDING
    courier_job_id: str | None = None
    reason: str | None = None
    asks: int = 1
    #: the quote round whose option this attempt books
    round: int = 1

    @property
    def refused(self) -> bool:
        """The courier refused the order for good (not a transient rejection, not silence)."""
        return self.status is AttemptStatus.REJECTED and (self.reason or "") not in TRANSIENT_REJECTIONS


@dataclass(frozen=True)
class Job:
    """One delivery's booking. ``quoted``: the ``DeliveryQuoted`` arrived (a cancel may come first).
    ``round``: the quote round ``options`` come from; ``book_by``: the order's deadline (unix time);
    ``pending``: that round's couriers still to answer quoting.

    ``version`` belongs to the store (its optimistic guard); the decisions carry it along unchanged.
    """

    delivery_id: str
    order_reference: str
    status: JobStatus
    retailer_id: str | None = None
    quoted: bool = False
    options: tuple[Quote, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    courier: str | None = None
    courier_job_id: str | None = None
    driver: Driver | None = None
    version: int = 0
    round: int = 1
    book_by: float = math.inf
    #: couriers of this round quoting had not heard from when it decided (they may still quote)
    pending: tuple[str, ...] = ()

    @property
    def current(self) -> Attempt | None:
        """The latest attempt (the only one that may be pending)."""
        return self.attempts[-1] if self.attempts else None

    def attempt(self, number: int) -> Attempt | None:
        """Attempt ``number`` (1-based), if made."""
        return self.attempts[number - 1] if 0 < number <= len(self.attempts) else None

    def with_attempt(self, a: Attempt) -> Job:
        """This job with attempt ``a.number`` replaced by ``a``."""
        return replace(self, attempts=tuple(a if x.number == a.number else x for x in self.attempts))


@dataclass(frozen=True)
class Reply:
    """A courier's answer to a booking request, as the decisions need it."""

    accepted: bool
    courier_job_id: str | None = None
    driver: Driver | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Book:
    """Send the booking request of ``attempt`` for ``quote``."""

    attempt: Attempt
    quote: Quote


@dataclass(frozen=True)
class CancelJob:
    """Send a cancel request for a courier job; ``why`` is kept with it for the audit."""

    courier: str
    courier_job_id: str
    why: str


@dataclass(frozen=True)
class Booked:
    """Tell tracking the delivery is booked."""

    courier: str
    courier_job_id: str
    driver: Driver | None


@dataclass(frozen=True)
class NoCourier:
    """Tell tracking no courier took the delivery."""

    reason: str


@dataclass(frozen=True)
class Requote:
    """Ask quoting for the next round after round ``round``; ``refused``: couriers not to ask again."""

    round: int
    reason: str
    refused: tuple[str, ...]


Effect = Book | CancelJob | Booked | NoCourier | Requote


@dataclass(frozen=True)
class Decision:
    """The job after an event and what to send; ``note`` says what happened, for the log."""

    job: Job
    effects: tuple[Effect, ...] = ()
    note: str = ""


def _unchanged(job: Job, why: str) -> Decision:
    return Decision(job, (), why)


def _book_next(job: Job, now: datetime, timeout_s: float, note: str) -> Decision:
    refused = {a.courier for a in job.attempts if a.refused}
    tried = {x for a in job.attempts if a.round == job.round for x in (a.courier, a.quote_id)}
    live = [q for q in job.options if not q.expired(now)]
    quote = next_option(live, refused | tried)
    if quote is None:
        return _out_of_options(job, now, note, expired=len(live) < len(job.options))
    attempt = Attempt(
        number=len(job.attempts) + 1,
        courier=quote.courier,
        quote_id=quote.quote_id,
        deadline_at=now.timestamp() + timeout_s,
        round=job.round,
    )
    booking = replace(job, status=JobStatus.BOOKING, attempts=(*job.attempts, attempt))
    return Decision(
        booking, (Book(attempt, quote),), f"{note}; booking {quote.courier} (attempt {attempt.number})"
    )


def _out_of_options(job: Job, now: datetime, note: str, *, expired: bool) -> Decision:
    """No option of this round is left: quote again when any failed for a transient reason and the
    order's deadline has not passed, else ``no_courier``."""
    this_round = [a for a in job.attempts if a.round == job.round]
    transient = [
        f"{a.courier} {a.reason or a.status.value}"
        for a in this_round
        if a.status is AttemptStatus.TIMED_OUT or (a.status is AttemptStatus.REJECTED and not a.refused)
    ]
    if expired:
        transient.append("quotes expired before booking")
    refused_for_good = {a.courier for a in job.attempts if a.refused}
    waiting = [c for c in job.pending if c not in refused_for_good]
    if waiting:
        transient.append(f"not heard from {', '.join(waiting)}")
    if transient and now.timestamp() < job.book_by:
        reason = "; ".join(transient)
        refused = tuple(sorted(refused_for_good))
        requoting = replace(job, status=JobStatus.REQUOTING)
        return Decision(
            requoting,
            (Requote(job.round, reason, refused),),
            f"{note}; options of round {job.round} ran out ({reason}): quoting again",
        )
    if transient:
        reason = f"the order's deadline passed; {'; '.join(transient)}"
    elif job.attempts:
        reason = EVERY_BOOKING_REFUSED
    else:
        reason = "no option to book"
    done = replace(job, status=JobStatus.NO_COURIER)
    return Decision(done, (NoCourier(reason),), f"{note}; no option left: {reason}")


def on_quoted(
    job: Job | None,
    delivery_id: str,
    order_reference: str,
    retailer_id: str,
    options: tuple[Quote, ...],
    now: datetime,
    *,
    timeout_s: float,
    round_: int = 1,
    book_by: float = math.inf,
    pending: tuple[str, ...] = (),
) -> Decision:
    """Quoting's ranked options of round ``round_`` arrived: book the first live one (unless the order was
    cancelled, or this round is not the one the job waits for). ``pending``: couriers quoting had not heard
    from yet (running out of options while they might still quote asks for another round)."""
    if job is None:
        fresh = Job(
            delivery_id,
            order_reference,
            JobStatus.BOOKING,
            retailer_id=retailer_id,
            quoted=True,
            options=options,
            round=round_,
            book_by=book_by,
            pending=pending,
        )
        return _book_next(fresh, now, timeout_s, "quoted")
    if job.status is JobStatus.REQUOTING and round_ > job.round:
        nxt = replace(
            job,
            status=JobStatus.BOOKING,
            options=options,
            round=round_,
            book_by=min(job.book_by, book_by),
            pending=pending,
        )
        return _book_next(nxt, now, timeout_s, f"quoted again (round {round_})")
    if job.quoted:
        return _unchanged(job, f"quoted again (round {round_}) while {job.status.value}")
    # Only a cancel creates a job before its quote: keep the options for the record, book nothing.
    return Decision(
        replace(
            job,
            quoted=True,
            options=options,
            retailer_id=retailer_id,
            round=round_,
            book_by=book_by,
            pending=pending,
        ),
        (),
        "quoted after the cancel",
    )


def on_booking_answer(
    job: Job,
    number: int,
    reply: Reply,
    now: datetime,
    *,
    timeout_s: float,
    give_up_on_expired: bool = False,
) -> Decision:
    """A courier answered attempt ``number`` (the caller matched in_reply_to to it).

    ``give_up_on_expired`` is a TEST ONLY switch (a deliberately broken release for the drill to catch):
    a ``quote_expired`` rejection ends the job without a courier instead of trying on.
    """
    attempt = job.attempt(number)
    if attempt is None:
        raise ValueError(f"job {job.delivery_id} has no attempt {number}")
    current = job.current is not None and job.current.number == number
    if reply.accepted:
        if attempt.status in (AttemptStatus.BOOKED, AttemptStatus.RELEASED):
            return _unchanged(job, "repeated acceptance")
        job_id = reply.courier_job_id
        if job_id is None:
            raise ValueError("an acceptance names its courier job")
        keep = (attempt.status is AttemptStatus.PENDING and current and job.status is JobStatus.BOOKING) or (
            attempt.status is AttemptStatus.TIMED_OUT
            and job.status in (JobStatus.REQUOTING, JobStatus.BOOKING)
        )
        if keep:
            kept = replace(attempt, status=AttemptStatus.BOOKED, courier_job_id=job_id)
            booked = job.with_attempt(kept)
            late = ""
            if attempt.status is AttemptStatus.TIMED_OUT:
                late = f" (late: kept while {job.status.value})"
                # The courier we gave up on has a driver on it already; the one asked since has not said
                # yes yet. Keep the first and supersede the pending ask: if it is accepted after all, that
                # job is released while it is still cancellable. (Releasing the late one instead — its
                # driver on the way, or done — was refused, too_late:picked_up / delivered, and left the
                # order with two couriers; seen in the freeze drill.)
                pending = booked.current
                if pending is not None and pending.status is AttemptStatus.PENDING:
                    booked = booked.with_attempt(
                        replace(
                            pending, status=AttemptStatus.TIMED_OUT, reason="superseded by a late acceptance"
                        )
                    )
            booked = replace(
                booked,
                status=JobStatus.BOOKED,
                courier=attempt.courier,
                courier_job_id=job_id,
                driver=reply.driver,
            )
            return Decision(
                booked, (Booked(attempt.courier, job_id, reply.driver),), f"booked {attempt.courier}{late}"
            )
        why = (
            "order cancelled" if job.status is JobStatus.CANCELLED else f"late acceptance ({attempt.status})"
        )
        released = replace(attempt, status=AttemptStatus.RELEASED, courier_job_id=job_id)
        return Decision(
            job.with_attempt(released),
            (CancelJob(attempt.courier, job_id, why),),
            f"released {attempt.courier}: {why}",
        )
    if attempt.status is not AttemptStatus.PENDING:
        return _unchanged(job, f"rejection of a settled attempt ({attempt.status})")
    refused = job.with_attempt(replace(attempt, status=AttemptStatus.REJECTED, reason=reply.reason))
    note = f"{attempt.courier} rejected ({reply.reason})"
    if current and job.status is JobStatus.BOOKING:
        if give_up_on_expired and reply.reason == "quote_expired":
            done = replace(refused, status=JobStatus.NO_COURIER)
            return Decision(done, (NoCourier("quote expired (TEST ONLY: gave up)"),), f"{note}; gave up")
        return _book_next(refused, now, timeout_s, note)
    return Decision(refused, (), note)


def on_timeout(job: Job, number: int, now: datetime, *, timeout_s: float, max_asks: int) -> Decision:
    """The deadline of attempt ``number``'s latest ask passed without an answer.

    The current attempt of a job still booking is asked again (same courier, same quote, the next ask's
    id and a doubled wait) until it was asked ``max_asks`` times; then, or for any other attempt, it times
    out and the job moves on (an acceptance that comes after that is released).
    """
    attempt = job.attempt(number)
    if attempt is None or attempt.status is not AttemptStatus.PENDING:
        return _unchanged(job, "already settled")
    current = job.current is not None and job.current.number == number and job.status is JobStatus.BOOKING
    quote = next((q for q in job.options if q.quote_id == attempt.quote_id), None)
    # No expiry check: a courier that booked the quote on an earlier ask answers with that booking (the
    # acceptance we want), one that did not rejects it (quote_expired) and we move on.
    if current and attempt.asks < max_asks and quote is not None:
        ask = attempt.asks + 1
        again = replace(attempt, asks=ask, deadline_at=now.timestamp() + ask_wait_s(timeout_s, ask))
        return Decision(
            job.with_attempt(again),
            (Book(again, quote),),
            f"{attempt.courier} silent: asking again (ask {ask} of {max_asks})",
        )
    timed_out = job.with_attempt(replace(attempt, status=AttemptStatus.TIMED_OUT, reason="no answer"))
    note = f"{attempt.courier} timed out"
    if current:
        return _book_next(timed_out, now, timeout_s, note)
    return Decision(timed_out, (), note)


def on_cancel(job: Job | None, delivery_id: str, order_reference: str) -> Decision:
    """The order was cancelled."""
    if job is None:
        return Decision(Job(delivery_id, order_reference, JobStatus.CANCELLED), (), "cancel before the quote")
    if job.status is JobStatus.BOOKED:
        assert job.courier is not None and job.courier_job_id is not None
        return Decision(
            replace(job, status=JobStatus.CANCELLED),
            (CancelJob(job.courier, job.courier_job_id, "order cancelled"),),
            f"cancelling {job.courier} job {job.courier_job_id}",
        )
    if job.status in (JobStatus.BOOKING, JobStatus.REQUOTING):
        return Decision(replace(job, status=JobStatus.CANCELLED), (), f"cancelled while {job.status.value}")
    return _unchanged(job, f"cancel when {job.status}: nothing to do")
