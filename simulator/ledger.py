"""The simulator's ledger: the ground truth of what the outside world sent and saw.

File: ``<run>/simulator/ledger.jsonl``, JSON lines, one record per event, appended in the order the
events happened. Every record has:

``t``
    unix time (float seconds, wall clock) of the event.
``kind``
    what happened (below).
``order_ref``
    the simulator's order id (``s<seed>-<n>``, deterministic from the seed; the retailer's reference on
    every channel), or ``null`` for run-level records.

Kinds and their own fields:

``run_started``
    ``seed``, ``scenario``, ``target``, ``duration_s``, ``compression``, ``epoch`` (unix time of
    simulated second 0), ``rate`` (base offered rate, orders/s).
``order_sent``
    the create request of an order left: ``req`` (request number, unique in the run), ``attempt``
    (1 first, then retries of an unknown outcome with the same key), ``channel`` (rest|shopify|epos),
    ``key`` (Idempotency-Key / webhook id / event id), ``retailer``, ``at`` (planned run time, s),
    ``lag_s`` (how late it left), ``offered_rate`` (orders/s at that moment), ``bytes``.
``order_not_sent``
    an order generated but still queued (concurrency exhausted by a slow platform) when the run ended;
    it never left, so it is neither accepted nor unknown.
``order_answer``
    the platform's answer to an ``order_sent`` (same ``req``): ``outcome`` accepted|rejected|unknown,
    ``http_status`` (int or null), ``delivery_id`` (str or null), ``error`` (str or null),
    ``latency_ms``. Rules: 2xx → accepted (a 2xx without an ``id`` is still accepted, with
    ``error = "contract: 2xx without id"``); 4xx → rejected; 5xx, timeout, refused or reset
    connection → unknown. *Never* accepted without a 2xx.
``order_shed``
    intake's admission control answered an ``order_sent`` with ``503`` + ``Retry-After`` (same ``req``):
    nothing was stored, and the same request (same key) is sent again after the delay. Fields: ``req``,
    ``attempt``, ``channel``, ``key``, ``http_status``, ``retry_after_s``, ``reason`` (intake's:
    ``queue_depth`` | ``outbox_age``), ``latency_ms``. It takes the place of the ``order_answer`` of
    that attempt: a shed is the platform's deliberate "not now", neither accepted nor an unknown outcome.
    ``duplicate_shed``, ``update_shed``, ``cancel_shed``: the same for those requests (a webhook update
    or cancel that arrives first creates the order, so it can be shed too).
``order_given_up_shed``
    the simulator stopped sending a shed request (``[sender] shed_max_attempts`` sends shed, the
    ``shed_give_up_s`` deadline, retries switched off, or the run ended during the wait): ``channel``,
    ``key``, ``attempts`` (sends in all), ``shed`` (of them shed), ``reason`` and ``retry_after_s`` of
    the last shed answer, ``waited_s`` (since the first send), ``why``. The order was never accepted:
    not an accepted order, so never lost or abandoned, but reported. ``update_given_up_shed``,
    ``cancel_given_up_shed``: the same for those requests.
``duplicate_sent`` / ``duplicate_answer``
    a byte-identical re-delivery of a webhook (same id), made on purpose like real providers do;
    fields as for ``order_sent`` / ``order_answer``.
``update_sent`` / ``update_answer``
    an ePOS ``order.updated`` event; ``out_of_order`` true when it was sent before the ``order.created``.
``cancel_sent`` / ``cancel_answer``
    the customer's cancellation (REST cancel, Shopify ``orders/cancelled``, ePOS order.updated CANCELED);
    fields as for ``order_sent`` / ``order_answer``, plus ``delivery_id`` on ``cancel_sent``.

**The couriers** (:mod:`simulator.courier_desk`, :mod:`simulator.courier_amqp`). Times named ``*_run_s``
are run seconds (wall seconds since the start of the run, the clock ``progress.run_s`` uses), so they
compare with each other exactly; ``t`` is the wall time the record was written. What a courier *saw*
is recorded when it saw it:

``quote_request_seen``
    a quote request reached a courier: ``courier``, ``message_id`` (the request's), ``delivery_id``,
    ``run_s``.
``quote_unanswered``
    the courier was in an outage and stayed silent: ``courier``, ``reason`` (``outage``), ``message_id``,
    ``delivery_id``.
``booking_seen``
    a booking request reached a courier: ``courier``, ``quote_id``, ``message_id``, ``delivery_id``,
    ``run_s``.
``booking_unanswered``
    as ``quote_unanswered``, for a booking request (with its ``quote_id``).
``cancel_request_seen``
    a cancel request reached a courier: ``courier``, ``courier_job_id``, ``message_id``, ``delivery_id``,
    ``run_s``.
``courier_request_invalid``
    a request the couriers could not read: ``reason`` (and ``courier`` when known).

What a courier *sent* is recorded once the broker confirmed it, with the kind the desk gave it. Every
such record has ``type`` (the message type on the wire), ``courier``, ``dialect``, ``delivery_id``,
``in_reply_to`` (the request answered; on status and location events the booking request that
started the job, or the cancel request for the cancelled status), ``message_id``,
``routing_key``, ``due_run_s`` (when the courier meant to send it) and ``sent_run_s`` (when the broker
confirmed it; the difference is the couriers' own lateness, e.g. a stalled pump), and:

``quote_sent``
    a quote answer: ``type`` ``quote`` or ``quote_declined`` (with ``reason`` ``no_vehicle_for_size`` |
    ``out_of_area``). A quote has ``quote_id``, ``price_minor``, ``currency``, ``vehicle``,
    ``expires_at`` (ISO, the simulated clock, as on the wire), ``quote_serial`` (1 for the order's first
    quote from this courier, 2 for a fresh one after it expired, …), ``issued_run_s`` and
    ``expires_run_s`` (the quote's validity on the run clock: a booking seen after ``expires_run_s`` is
    refused ``quote_expired``). ``reply`` says why this answer: ``fresh`` (a new quote or decline),
    ``same_quote`` (a new request while the quote was valid: the same quote again), ``redelivery``
    (the same request ``message_id`` again: the same answer again).
``booking_answer_sent``
    ``type`` ``booking_accepted`` (with ``courier_job_id``, ``driver_id``, ``vehicle``, ``job_serial``:
    1 for the courier's first job for the order, 2 for a second one, …) or
    ``booking_rejected`` with ``reason``: ``no_driver_available`` | ``no_capacity`` (the world said no),
    ``quote_expired`` | ``unknown_quote`` (the booking named a quote that was no longer / never valid);
    ``quote_id``; ``reply`` (``fresh`` | ``redelivery``: the same quote booked again, the same answer);
    when the quote was known, ``quote_serial``, ``quote_expires_run_s`` and ``booked_run_s`` (when the
    booking request reached the courier: later than ``quote_expires_run_s`` means the platform was
    too slow); ``quote_forgotten: true`` when the courier had already forgotten the quote it had issued
    (it prunes after twice the validity) and refused it as expired.
``cancel_answer_sent``
    ``type`` ``cancel_accepted`` | ``cancel_rejected`` (with ``reason`` ``unknown_job`` |
    ``too_late:<canonical state>``), ``courier_job_id``. A cancel acts on the job it names only.
``status_sent`` / ``location_sent``
    a courier status event (``status`` in the courier's dialect, ``canonical``: booked,
    courier_assigned, picked_up, in_transit, delivered, failed, returned or cancelled; ``courier_job_id``)
    / a driver location ping (``courier_job_id``, ``lat``, ``lon``).
``courier_publish_retry``
    a courier message was nacked, returned or timed out and is republished with the same id
    (``attempt``, ``error``, ``message_id``).
``courier_publish_failed``
    a message that was due was not confirmed by the broker when the run stopped (being published, or
    waiting for a stalled pump); the fields of the record it would have had, plus ``failure`` (why).
``courier_stopped``
    the couriers stopped at the end of the run: ``published``, ``publish_failed`` (counts),
    ``undue`` (messages scheduled for later, e.g. the rest of journeys cut by the end of the run: never
    due, so neither sent nor failed), ``run_s``.
``courier_reconnecting`` / ``courier_reconnected`` / ``courier_pump_error``
    the couriers' connection died and they reconnect (``node``: where to) / an unexpected pump error
    (``error``; always followed by a ``harness_fault``).
``courier_consumer_stalled``
    a courier's request queue had ``ready`` requests but delivered nothing to the couriers for
    ``seconds``: they close their connection and reconnect to the next node (``courier``, ``stalls``).
``harness_fault``
    the simulator failed at its own job, so the ledger may miss what the outside world should have
    done: ``source`` (``simulator``), ``what`` (a short machine name: ``courier_message_dropped`` — one
    of its own messages given up while the run went on; ``courier_pump_error``; ``courier_request_error``
    — the couriers could not handle a request; ``courier_job_forgotten``, ``courier_desk_error`` —
    internal errors about a message, which was still published), ``detail`` (words), ``message_id``
    (or null); ``order_ref`` when it concerns one order. The audit's verdict is INCONCLUSIVE with any.

**The run**:

``linger_started`` / ``linger_finished`` / ``inflight``
    after the last order the couriers keep delivering until idle (nothing scheduled, nothing being
    published) or ``linger_s`` (``idle``: ended idle); when cut, one ``inflight`` (``flow: orders``) per
    order the couriers still had messages scheduled or being published for.
``notification_received``
    the platform notified someone: ``audience`` (customer|driver), ``channel`` (sms|email|push),
    ``state``, ``to``, ``delivery_id``, ``notification_id``; ``duplicate: true`` when that
    ``notification_id`` was already received in this run (a re-send, not a second notification).
``progress``
    once a second: ``run_s``, ``offered_rate``, ``sent_rate`` (measured over the last second) and the
    running counts ``sent``, ``accepted``, ``rejected``, ``unknown``, ``delivered``, ``shed``.
``run_finished``
    ``orders`` (orders played), the final counts, ``orders_digest`` (equal to the offline plan's, see
    :mod:`simulator.plan`), ``max_lag_s``.
``run_aborted``
    the run stopped on an error (``error``); requests in flight at the end get an ``*_answer`` with
    outcome unknown and ``error = "run ended before the answer"``.

An order's outcome for the audit: accepted if any of its ``order_answer``/``duplicate_answer`` records is
accepted; else unknown if any is unknown; else rejected. An order shed until given up has no answer
record at all: its ``order_shed`` and ``order_given_up_shed`` records say what happened.

Example:
    >>> import io
    >>> buf = io.StringIO()
    >>> led = Ledger(buf, clock=lambda: 1.5)
    >>> led.write("order_sent", "s1-0000001", channel="rest")
    >>> buf.getvalue()
    '{"t":1.5,"kind":"order_sent","order_ref":"s1-0000001","channel":"rest"}\\n'
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

Outcome = str  # "accepted" | "rejected" | "unknown"


class Ledger:
    """An append-only JSON-lines writer. Not thread-safe: the simulator writes from one event loop."""

    def __init__(self, stream: IO[str], clock: Callable[[], float] = time.time) -> None:
        self._stream = stream
        self._clock = clock
        self.records = 0

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (create or append to) the ledger file at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Line buffering would flush per record (too slow at 1k orders/s); flush() is called by the runner.
        return cls(path.open("a", encoding="utf-8", buffering=1 << 16))

    def write(self, kind: str, order_ref: str | None, **fields: Any) -> None:
        """Append one record."""
        rec = {"t": round(self._clock(), 6), "kind": kind, "order_ref": order_ref, **fields}
        self._stream.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.records += 1

    def flush(self) -> None:
        """Push buffered records to the file."""
        self._stream.flush()

    def close(self) -> None:
        """Flush and close."""
        self._stream.flush()
        self._stream.close()


def harness_fault(
    ledger: Ledger | None, what: str, detail: str, order_ref: str | None = None, message_id: object = None
) -> None:
    """Record that the simulator itself misbehaved (see ``harness_fault`` above): the audit turns any such
    record into an INCONCLUSIVE verdict, since the ground truth may then be missing something."""
    if ledger is not None:
        ledger.write(
            "harness_fault", order_ref, source="simulator", what=what, detail=detail, message_id=message_id
        )


def read_ledger(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a ledger file, in order."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def order_outcomes(records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> dict[str, Outcome]:
    """Each order's outcome per the rule above (accepted > unknown > rejected)."""
    rank = {"rejected": 0, "unknown": 1, "accepted": 2}
    out: dict[str, Outcome] = {}
    for r in records:
        if r["kind"] in ("order_answer", "duplicate_answer"):
            ref, o = r["order_ref"], r["outcome"]
            if ref not in out or rank[o] > rank[out[ref]]:
                out[ref] = o
    return out
