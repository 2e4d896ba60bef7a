"""The pure part of dispatch: a job's state and what each event does to it (new state + effects).

A *job* is one delivery's booking: the ranked options quoting sent (``DeliveryQuoted``), the booking
*attempts* made from them (one courier each, in order), and where it ended. Every event is a function
``(job, event) → Decision(new job, effects)``; the store persists the job and turns the effects into
outbox messages in the same transaction, so a re-run computes and writes the same thing.

Rules, and why:

* **Book option 0, then the next on a rejection or a timeout** (:func:`~system.domain.quoting.next_option`:
  a courier that refused or timed out gets no second attempt). Options whose quote expired are skipped.
  None left → ``no_courier`` ("every booking refused").
* **A silent courier is asked again before we move on**: up to ``max_asks`` asks per attempt, ask ``k``
  waiting :func:`ask_wait_s` (``timeout_s * 2**(k-1)``), request id ``bk-<delivery>-<n>-<k>``. Answers
  that late come only from broker faults (a partition, a failover); moving on then books a second courier
  while the first one's acceptance is on its way, and if that courier refuses its release
  (``too_late:picked_up``) the order keeps two. An answer to any ask settles the still-pending attempt,
  and a repeated request for a quote gets the same answer, never a second driver (intake-api.md §3.3).
* **No delivery keeps two couriers.** An acceptance is kept only for the current pending attempt of a
  job still booking. An acceptance for an attempt that timed out (we moved on) or for a job cancelled
  meanwhile *releases* that courier job: a ``cancel_request`` goes to it.
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

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from system.domain.quoting import Quote, next_option
from system.platform.contracts import Driver

__all__ = [
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


class JobStatus(StrEnum):
    """Where a job is."""

    BOOKING = "booking"  # an attempt is in flight
    BOOKED = "booked"  # a courier accepted: final for dispatch unless the order is cancelled
    NO_COURIER = "no_courier"  # every option refused, timed out or expired
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


@dataclass(frozen=True)
class Job:
    """One delivery's booking. ``quoted``: the ``DeliveryQuoted`` arrived (a cancel may come first).

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


Effect = Book | CancelJob | Booked | NoCourier


@dataclass(frozen=True)
class Decision:
    """The job after an event and what to send; ``note`` says what happened, for the log."""

    job: Job
    effects: tuple[Effect, ...] = ()
    note: str = ""


def _unchanged(job: Job, why: str) -> Decision:
    return Decision(job, (), why)


def _book_next(job: Job, now: datetime, timeout_s: float, note: str) -> Decision:
    tried = {a.courier for a in job.attempts} | {a.quote_id for a in job.attempts}
    live = [q for q in job.options if not q.expired(now)]
    quote = next_option(live, tried)
    if quote is None:
        if job.attempts:
            reason = EVERY_BOOKING_REFUSED
        else:
            reason = "every quote expired before booking" if job.options else "no option to book"
        done = replace(job, status=JobStatus.NO_COURIER)
        return Decision(done, (NoCourier(reason),), f"{note}; no option left: {reason}")
    attempt = Attempt(
        number=len(job.attempts) + 1,
        courier=quote.courier,
        quote_id=quote.quote_id,
        deadline_at=now.timestamp() + timeout_s,
    )
    booking = replace(job, status=JobStatus.BOOKING, attempts=(*job.attempts, attempt))
    return Decision(
        booking, (Book(attempt, quote),), f"{note}; booking {quote.courier} (attempt {attempt.number})"
    )


def on_quoted(
    job: Job | None,
    delivery_id: str,
    order_reference: str,
    retailer_id: str,
    options: tuple[Quote, ...],
    now: datetime,
    *,
    timeout_s: float,
) -> Decision:
    """Quoting's ranked options arrived: book the first live one (unless the order was cancelled)."""
    if job is None:
        fresh = Job(
            delivery_id,
            order_reference,
            JobStatus.BOOKING,
            retailer_id=retailer_id,
            quoted=True,
            options=options,
        )
        return _book_next(fresh, now, timeout_s, "quoted")
    if job.quoted:
        return _unchanged(job, "quoted again")
    # Only a cancel creates a job before its quote: keep the options for the record, book nothing.
    return Decision(
        replace(job, quoted=True, options=options, retailer_id=retailer_id), (), "quoted after the cancel"
    )


def on_booking_answer(job: Job, number: int, reply: Reply, now: datetime, *, timeout_s: float) -> Decision:
    """A courier answered attempt ``number`` (the caller matched in_reply_to to it)."""
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
        if attempt.status is AttemptStatus.PENDING and current and job.status is JobStatus.BOOKING:
            kept = replace(attempt, status=AttemptStatus.BOOKED, courier_job_id=job_id)
            booked = replace(
                job.with_attempt(kept),
                status=JobStatus.BOOKED,
                courier=attempt.courier,
                courier_job_id=job_id,
                driver=reply.driver,
            )
            return Decision(
                booked, (Booked(attempt.courier, job_id, reply.driver),), f"booked {attempt.courier}"
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
    if job.status is JobStatus.BOOKING:
        return Decision(replace(job, status=JobStatus.CANCELLED), (), "cancelled while booking")
    return _unchanged(job, f"cancel when {job.status}: nothing to do")
