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
``duplicate_sent`` / ``duplicate_answer``
    a byte-identical re-delivery of a webhook (same id), made on purpose like real providers do;
    fields as for ``order_sent`` / ``order_answer``.
``update_sent`` / ``update_answer``
    an ePOS ``order.updated`` event; ``out_of_order`` true when it was sent before the ``order.created``.
``cancel_sent`` / ``cancel_answer``
    the customer's cancellation (REST cancel, Shopify ``orders/cancelled``, ePOS order.updated CANCELED).
``quote_request_seen`` / ``quote_sent``
    a courier got a quote request (``courier``, ``message_id``) / answered it (``price_minor``,
    ``currency``, ``vehicle``, ``quote_id``, or ``declined`` with ``reason``); ``quote_unanswered``
    during an outage.
``booking_seen`` / ``booking_answer_sent``
    a booking request reached a courier / its answer (``accepted``, ``reason``, ``job_id``).
``cancel_request_seen`` / ``cancel_answer_sent``
    a courier got a cancel request (``courier_job_id``) / answered it (``type`` cancel_accepted|rejected).
``booking_unanswered``, ``courier_request_invalid``
    a booking during an outage (silence) / a request the couriers could not read (``reason``).
``courier_publish_retry`` / ``courier_publish_failed``
    a courier message was nacked, returned or timed out and is republished with the same id / was still
    unpublished when the run stopped.
``linger_started`` / ``linger_finished`` / ``inflight``
    after the last order the couriers keep delivering until idle or ``linger_s`` (``idle``: ended idle);
    when cut, one ``inflight`` (``flow: orders``) per order the couriers still had messages scheduled for.
``courier_reconnecting`` / ``courier_reconnected`` / ``courier_pump_error``
    the couriers' connection died and they reconnect (``node``: where to) / an unexpected pump error.
``status_sent`` / ``location_sent``
    a courier status event (``courier``, ``dialect``, ``status``, ``canonical``) / a driver location ping.
``notification_received``
    the platform notified someone: ``audience`` (customer|driver), ``channel`` (sms|email|push),
    ``state``, ``to``, ``delivery_id``, ``notification_id``; ``duplicate: true`` when that
    ``notification_id`` was already received in this run (a re-send, not a second notification).
``progress``
    once a second: ``run_s``, ``offered_rate``, ``sent_rate`` (measured over the last second) and the
    running counts ``sent``, ``accepted``, ``rejected``, ``unknown``, ``delivered``.
``run_finished``
    ``orders`` (orders played), the final counts, ``orders_digest`` (equal to the offline plan's, see
    :mod:`simulator.plan`), ``max_lag_s``.
``run_aborted``
    the run stopped on an error (``error``); requests in flight at the end get an ``*_answer`` with
    outcome unknown and ``error = "run ended before the answer"``.

An order's outcome for the audit: accepted if any of its ``order_answer``/``duplicate_answer`` records is
accepted; else unknown if any is unknown; else rejected.

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
