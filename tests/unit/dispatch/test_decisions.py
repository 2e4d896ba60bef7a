"""Dispatch's pure decisions: book in order, ask a silent courier again, move on after a rejection or the
last ask's timeout, release what comes late, cancel what the retailer cancelled, and change nothing on a
repeat."""

from __future__ import annotations

import doctest
import importlib
from datetime import UTC, datetime, timedelta

import pytest

from system.dispatch.decide import (
    Attempt,
    AttemptStatus,
    Book,
    Booked,
    CancelJob,
    Decision,
    Job,
    JobStatus,
    NoCourier,
    Reply,
    Requote,
    ask_wait_s,
    on_booking_answer,
    on_cancel,
    on_quoted,
    on_timeout,
)
from system.dispatch.messages import effect_message
from system.dispatch.settings import DispatchSettings
from system.domain.common import Money
from system.domain.quoting import Quote
from system.platform.contracts import Driver

T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
TIMEOUT = 10.0
ASKS = 2


def q(courier: str, *, expires: datetime | None = None) -> Quote:
    return Quote(
        courier=courier, quote_id=f"q-{courier}", price=Money(amount_minor=700, currency="GBP"), vehicle="bike",
        pickup_eta=T0, dropoff_eta=T0 + timedelta(minutes=30), expires_at=expires or T0 + timedelta(minutes=15),
    )  # fmt: skip


def quoted(*couriers: str, now: datetime = T0) -> Decision:
    return on_quoted(None, "dlv_1", "s1", "r01", tuple(q(c) for c in couriers), now, timeout_s=TIMEOUT)


def accept(job: Job, n: int, job_id: str = "job-1") -> Decision:
    return on_booking_answer(
        job, n, Reply(True, job_id, Driver(id="drv-1", vehicle="bike")), T0, timeout_s=TIMEOUT
    )


def reject(job: Job, n: int, reason: str = "no_driver_available") -> Decision:
    return on_booking_answer(job, n, Reply(False, reason=reason), T0, timeout_s=TIMEOUT)


def kinds(d: Decision) -> list[str]:
    return [type(e).__name__ for e in d.effects]


@pytest.mark.parametrize(
    "name", ["system.dispatch.decide", "system.dispatch.messages", "system.dispatch.settings"]
)
def test_docstring_examples(name: str) -> None:
    assert doctest.testmod(importlib.import_module(name)).failed == 0


def test_the_first_option_is_booked_with_a_deadline() -> None:
    d = quoted("zoomly", "dashly")
    assert d.job.status is JobStatus.BOOKING and d.job.quoted
    (book,) = d.effects
    assert isinstance(book, Book) and book.quote.courier == "zoomly"
    assert book.attempt == Attempt(1, "zoomly", "q-zoomly", T0.timestamp() + TIMEOUT)


def test_expired_options_are_skipped() -> None:
    options = (q("zoomly", expires=T0 - timedelta(seconds=1)), q("dashly"))
    d = on_quoted(None, "dlv_1", "s1", "r01", options, T0, timeout_s=TIMEOUT)
    assert d.job.current is not None and d.job.current.courier == "dashly"
    # Every option expired before booking: transient (the platform was late), so quote again.
    gone = on_quoted(None, "dlv_1", "s1", "r01", options[:1], T0, timeout_s=TIMEOUT)
    assert gone.job.status is JobStatus.REQUOTING
    assert gone.effects == (Requote(1, "quotes expired before booking", ()),)
    # ... unless the order's deadline has passed.
    late = on_quoted(None, "dlv_1", "s1", "r01", options[:1], T0, timeout_s=TIMEOUT, book_by=T0.timestamp())
    assert late.effects == (NoCourier("the order's deadline passed; quotes expired before booking"),)
    empty = on_quoted(None, "dlv_1", "s1", "r01", (), T0, timeout_s=TIMEOUT)
    assert empty.effects == (NoCourier("no option to book"),)


def test_accepted_for_the_current_attempt_books_the_job() -> None:
    d = accept(quoted("zoomly", "dashly").job, 1)
    assert (d.job.status, d.job.courier, d.job.courier_job_id) == (JobStatus.BOOKED, "zoomly", "job-1")
    assert d.effects == (Booked("zoomly", "job-1", Driver(id="drv-1", vehicle="bike")),)
    assert d.job.attempts[0].status is AttemptStatus.BOOKED


def test_a_rejection_books_the_next_option_and_the_last_one_ends_in_no_courier() -> None:
    d = reject(quoted("zoomly", "dashly").job, 1)
    assert kinds(d) == ["Book"] and d.job.current is not None and d.job.current.courier == "dashly"
    assert d.job.attempts[0] == Attempt(1, "zoomly", "q-zoomly", T0.timestamp() + TIMEOUT,
                                        AttemptStatus.REJECTED, reason="no_driver_available")  # fmt: skip
    last = reject(d.job, 2, "no_capacity")
    assert last.job.status is JobStatus.NO_COURIER
    assert last.effects == (NoCourier("every booking refused"),)


def test_with_one_ask_a_timeout_books_the_next_option() -> None:
    job = quoted("zoomly", "pedalo").job
    d = on_timeout(job, 1, T0 + timedelta(seconds=11), timeout_s=TIMEOUT, max_asks=1)
    assert d.job.attempts[0].status is AttemptStatus.TIMED_OUT
    assert kinds(d) == ["Book"] and d.job.current is not None and d.job.current.courier == "pedalo"
    # The sweep seeing the same attempt again changes nothing.
    again = on_timeout(d.job, 1, T0 + timedelta(seconds=12), timeout_s=TIMEOUT, max_asks=1)
    assert again.job == d.job and again.effects == ()


def test_a_silent_courier_is_asked_again_with_a_new_id_and_a_doubled_wait() -> None:
    first = quoted("zoomly", "pedalo")
    now = T0 + timedelta(seconds=10)
    d = on_timeout(first.job, 1, now, timeout_s=TIMEOUT, max_asks=ASKS)
    assert d.job.status is JobStatus.BOOKING and len(d.job.attempts) == 1
    again = Attempt(1, "zoomly", "q-zoomly", now.timestamp() + 2 * TIMEOUT, asks=2)
    assert d.job.attempts == (again,)
    assert d.effects == (Book(again, q("zoomly")),)
    assert effect_message(d.job, d.effects[0], now).message_id == "bk-dlv_1-1-2"
    assert effect_message(first.job, first.effects[0], T0).message_id == "bk-dlv_1-1"  # ask 1's, as before


def test_after_the_last_ask_the_next_option_is_booked() -> None:
    d = on_timeout(
        quoted("zoomly", "pedalo").job, 1, T0 + timedelta(seconds=10), timeout_s=TIMEOUT, max_asks=ASKS
    )
    last = on_timeout(d.job, 1, T0 + timedelta(seconds=30), timeout_s=TIMEOUT, max_asks=ASKS)
    assert last.job.attempts[0].status is AttemptStatus.TIMED_OUT and last.job.attempts[0].asks == 2
    (book,) = last.effects
    assert isinstance(book, Book) and book.attempt == Attempt(
        2, "pedalo", "q-pedalo", (T0 + timedelta(seconds=30)).timestamp() + TIMEOUT
    )
    # The next option's first ask waits the base timeout again; silent again, it is asked again too.
    again = on_timeout(last.job, 2, T0 + timedelta(seconds=40), timeout_s=TIMEOUT, max_asks=ASKS)
    assert kinds(again) == ["Book"] and again.job.attempts[1].asks == 2
    # Both stayed silent through every ask: silence is transient, so the order is quoted again.
    final = on_timeout(again.job, 2, T0 + timedelta(seconds=60), timeout_s=TIMEOUT, max_asks=ASKS)
    assert final.job.status is JobStatus.REQUOTING
    assert final.effects == (Requote(1, "zoomly no answer; pedalo no answer", ()),)


def test_a_late_acceptance_of_the_first_ask_during_the_second_books_that_courier() -> None:
    job = on_timeout(quoted("zoomly", "pedalo").job, 1, T0, timeout_s=TIMEOUT, max_asks=ASKS).job
    d = accept(job, 1, "zoomly-job")
    assert d.effects == (Booked("zoomly", "zoomly-job", Driver(id="drv-1", vehicle="bike")),)
    assert (d.job.status, d.job.courier, len(d.job.attempts)) == (JobStatus.BOOKED, "zoomly", 1)
    # The courier answers the second ask with the same booking: a repeat, nothing more.
    assert accept(d.job, 1, "zoomly-job").effects == ()
    # The second ask's deadline passing later changes nothing either.
    assert on_timeout(d.job, 1, T0 + timedelta(minutes=1), timeout_s=TIMEOUT, max_asks=ASKS).effects == ()


def test_a_rejection_during_the_second_ask_books_the_next_option() -> None:
    job = on_timeout(quoted("zoomly", "pedalo").job, 1, T0, timeout_s=TIMEOUT, max_asks=ASKS).job
    d = reject(job, 1)
    assert kinds(d) == ["Book"] and d.job.current is not None and d.job.current.courier == "pedalo"


def test_by_default_a_courier_is_asked_twice_for_10_then_20_s(monkeypatch: pytest.MonkeyPatch) -> None:
    s = DispatchSettings()
    assert (s.booking_asks, [ask_wait_s(s.booking_timeout_s, k) for k in (1, 2)]) == (2, [10.0, 20.0])
    monkeypatch.setenv("DRILL_DISPATCH_BOOKING_ASKS", "1")
    assert DispatchSettings().booking_asks == 1


def test_a_late_acceptance_after_the_timeout_is_cancelled_and_does_not_book() -> None:
    job = on_timeout(quoted("zoomly", "pedalo").job, 1, T0, timeout_s=TIMEOUT, max_asks=1).job
    job = accept(job, 2, "pedalo-job").job  # the next option booked meanwhile
    late = accept(job, 1, "zoomly-job")
    assert late.effects == (CancelJob("zoomly", "zoomly-job", "late acceptance (timed_out)"),)
    assert (late.job.status, late.job.courier, late.job.courier_job_id) == (
        JobStatus.BOOKED,
        "pedalo",
        "pedalo-job",
    )
    assert late.job.attempts[0].status is AttemptStatus.RELEASED
    # The courier republishes its acceptance: no second cancel.
    assert accept(late.job, 1, "zoomly-job").effects == ()


def test_an_acceptance_after_a_rejection_of_the_same_attempt_is_released() -> None:
    job = reject(quoted("zoomly", "dashly").job, 1).job
    d = accept(job, 1, "zoomly-job")
    assert kinds(d) == ["CancelJob"] and d.job.current is not None and d.job.current.courier == "dashly"


def test_repeated_answers_change_nothing() -> None:
    booked = accept(quoted("zoomly").job, 1).job
    assert accept(booked, 1).effects == () and accept(booked, 1).job == booked
    rejected = reject(quoted("zoomly", "dashly").job, 1).job
    again = reject(rejected, 1)
    assert again.job == rejected and again.effects == ()


def test_a_cancel_after_booking_cancels_the_courier_job() -> None:
    booked = accept(quoted("zoomly").job, 1).job
    d = on_cancel(booked, "dlv_1", "s1")
    assert d.job.status is JobStatus.CANCELLED
    assert d.effects == (CancelJob("zoomly", "job-1", "order cancelled"),)
    assert on_cancel(d.job, "dlv_1", "s1").effects == ()  # a repeated cancel


def test_a_cancel_while_booking_releases_the_acceptance_that_follows() -> None:
    d = on_cancel(quoted("zoomly", "dashly").job, "dlv_1", "s1")
    assert d.job.status is JobStatus.CANCELLED and d.effects == ()
    late = accept(d.job, 1, "zoomly-job")
    assert late.effects == (CancelJob("zoomly", "zoomly-job", "order cancelled"),)
    assert late.job.status is JobStatus.CANCELLED and late.job.courier is None
    # A rejection or a timeout of that attempt books no other option.
    assert reject(d.job, 1).effects == ()
    # Nor is the courier asked again.
    assert on_timeout(d.job, 1, T0 + timedelta(minutes=1), timeout_s=TIMEOUT, max_asks=ASKS).effects == ()


def test_a_cancel_before_the_quote_means_the_quote_books_nothing() -> None:
    placeholder = on_cancel(None, "dlv_1", "s1").job
    assert placeholder.status is JobStatus.CANCELLED and not placeholder.quoted
    d = on_quoted(placeholder, "dlv_1", "s1", "r01", (q("zoomly"),), T0, timeout_s=TIMEOUT)
    assert d.effects == () and d.job.status is JobStatus.CANCELLED and d.job.quoted and d.job.attempts == ()


def test_a_repeated_delivery_quoted_changes_nothing() -> None:
    job = quoted("zoomly").job
    d = on_quoted(job, "dlv_1", "s1", "r01", (q("dashly"),), T0, timeout_s=TIMEOUT)
    assert d.job == job and d.effects == ()


def test_a_cancel_after_no_courier_changes_nothing() -> None:
    job = reject(quoted("zoomly").job, 1).job
    assert job.status is JobStatus.NO_COURIER
    d = on_cancel(job, "dlv_1", "s1")
    assert d.job == job and d.effects == ()


def _requoting(book_by: float = T0.timestamp() + 600) -> Job:
    """zoomly refused for good, dashly's quote expired (rejected quote_expired): round 1 ran out."""
    first = on_quoted(
        None, "dlv_1", "s1", "r01", (q("zoomly"), q("dashly")), T0, timeout_s=TIMEOUT, book_by=book_by
    )
    d = reject(reject(first.job, 1, "no_driver_available").job, 2, "quote_expired")
    assert d.job.status is JobStatus.REQUOTING
    assert d.effects == (Requote(1, "dashly quote_expired", ("zoomly",)),)
    return d.job


def test_options_out_for_transient_reasons_are_quoted_again_and_the_next_round_is_booked() -> None:
    """A quote that expired while the brokers were down says nothing of the courier's will: round 2 (a
    fresh quote from dashly) is booked; zoomly, which refused for good, is not asked again even though
    quoting offers it again."""
    job = _requoting()
    fresh = (q("zoomly"), q("dashly").model_copy(update={"quote_id": "q-dashly-2"}))
    d = on_quoted(job, "dlv_1", "s1", "r01", fresh, T0, timeout_s=TIMEOUT, round_=2)
    assert d.job.status is JobStatus.BOOKING and d.job.round == 2
    (book,) = d.effects
    assert isinstance(book, Book) and (book.quote.quote_id, book.attempt.number, book.attempt.round) == (
        "q-dashly-2",
        3,
        2,
    )
    done = accept(d.job, 3, "dashly-job-2")
    assert done.job.status is JobStatus.BOOKED and kinds(done) == ["Booked"]
    # A repeated round-2 quote, or a stale round-1 one, changes nothing.
    assert on_quoted(done.job, "dlv_1", "s1", "r01", fresh, T0, timeout_s=TIMEOUT, round_=2).effects == ()
    assert on_quoted(done.job, "dlv_1", "s1", "r01", fresh, T0, timeout_s=TIMEOUT, round_=1).effects == ()


def test_every_courier_refusing_for_good_ends_in_no_courier_even_in_a_later_round() -> None:
    job = _requoting()
    d = on_quoted(job, "dlv_1", "s1", "r01", (q("dashly").model_copy(update={"quote_id": "q-dashly-2"}),), T0,
                  timeout_s=TIMEOUT, round_=2)  # fmt: skip
    last = reject(d.job, 3, "no_capacity")
    assert last.job.status is JobStatus.NO_COURIER
    assert last.effects == (NoCourier("every booking refused"),)


def test_past_the_orders_deadline_transient_failures_end_in_no_courier() -> None:
    first = on_quoted(
        None, "dlv_1", "s1", "r01", (q("dashly"),), T0, timeout_s=TIMEOUT, book_by=T0.timestamp()
    )
    d = reject(first.job, 1, "quote_expired")
    assert d.job.status is JobStatus.NO_COURIER
    assert d.effects == (NoCourier("the order's deadline passed; dashly quote_expired"),)


def test_a_late_acceptance_while_quoting_again_books_that_courier() -> None:
    """The courier we gave up on (silent through its asks) says yes while quoting asks around: keep it
    (no other courier is pending), rather than release it and hope for the next round."""
    job = quoted("zoomly").job
    job = on_timeout(job, 1, T0 + timedelta(seconds=10), timeout_s=TIMEOUT, max_asks=1).job
    assert job.status is JobStatus.REQUOTING
    d = accept(job, 1, "zoomly-job")
    assert (d.job.status, d.job.courier_job_id, kinds(d)) == (JobStatus.BOOKED, "zoomly-job", ["Booked"])
    # The next round's quotes then change nothing.
    assert (
        on_quoted(d.job, "dlv_1", "s1", "r01", (q("dashly"),), T0, timeout_s=TIMEOUT, round_=2).effects == ()
    )


def test_a_cancel_while_quoting_again_cancels_the_job() -> None:
    d = on_cancel(_requoting(), "dlv_1", "s1")
    assert d.job.status is JobStatus.CANCELLED and d.effects == ()


def test_the_test_only_switch_gives_up_at_the_first_expired_quote() -> None:
    """The deliberately broken release of scenarios/broken-dispatch.toml: the drill must catch it."""
    job = quoted("zoomly", "dashly").job
    d = on_booking_answer(job, 1, Reply(False, reason="quote_expired"), T0, timeout_s=TIMEOUT,
                          give_up_on_expired=True)  # fmt: skip
    assert d.job.status is JobStatus.NO_COURIER and kinds(d) == ["NoCourier"]


def test_options_out_while_quoting_still_waits_for_couriers_is_not_a_refusal() -> None:
    """Quoting decided with zoomly's quote while pedalo had not answered yet (it answers other orders):
    zoomly refusing is not every courier refusing — quote again, pedalo may quote this time. (Seen on a
    loaded machine: the round was decided on one quote, that courier had no driver, three suitable quotes
    arrived late, and the order ended without a courier.)"""
    first = on_quoted(None, "dlv_1", "s1", "r01", (q("zoomly"),), T0, timeout_s=TIMEOUT, pending=("pedalo",))
    d = reject(first.job, 1, "no_driver_available")
    assert d.job.status is JobStatus.REQUOTING
    assert d.effects == (Requote(1, "not heard from pedalo", ("zoomly",)),)
    # In the next round pedalo answered (nobody pending): its refusal ends the order, refused by all.
    again = on_quoted(d.job, "dlv_1", "s1", "r01", (q("pedalo"),), T0, timeout_s=TIMEOUT, round_=2)
    assert kinds(reject(again.job, 2, "no_capacity")) == ["NoCourier"]


def test_a_late_acceptance_while_the_next_courier_is_asked_is_kept_and_the_ask_superseded() -> None:
    """zoomly went silent through its asks (a frozen node held its answer), dispatch asked pedalo; then
    zoomly's acceptance arrives: its driver is on the way already, pedalo has said nothing yet. Keep
    zoomly; pedalo's acceptance, if it comes, is released while still cancellable. (Releasing zoomly was
    refused — too late, delivered — and left the order with two couriers in the freeze drill.)"""
    job = on_timeout(quoted("zoomly", "pedalo").job, 1, T0, timeout_s=TIMEOUT, max_asks=1).job
    assert job.status is JobStatus.BOOKING and job.current is not None and job.current.courier == "pedalo"
    d = accept(job, 1, "zoomly-job")
    assert (d.job.status, d.job.courier, kinds(d)) == (JobStatus.BOOKED, "zoomly", ["Booked"])
    assert d.job.attempts[1].status is AttemptStatus.TIMED_OUT
    assert d.job.attempts[1].reason == "superseded by a late acceptance"
    late = accept(d.job, 2, "pedalo-job")
    assert kinds(late) == ["CancelJob"] and late.job.courier == "zoomly"
