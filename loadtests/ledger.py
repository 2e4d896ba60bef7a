"""The load test's ledger: every intake request and its outcome, as JSON lines the audit can read.

Files: ``<run>/locust/ledger-<pid>.jsonl``, one per Locust process (master, workers, or the single
local process), so that processes never interleave half lines; :func:`loadtests.runner.run_locust`
concatenates them into ``<run>/locust/ledger.jsonl`` when the run is over.

Records use the kinds and fields of the simulator's ledger (see the module docstring of
:mod:`simulator.ledger`) wherever they overlap, so ``reports.readers.ledger.read_ledger`` reads this
file as it reads ``<run>/simulator/ledger.jsonl``:

``order_sent`` / ``order_answer``
    a create (REST ``POST /v1/deliveries``, Shopify ``orders/create``, ePOS ``order.created``) left /
    was answered. ``order_sent``: ``req``, ``attempt`` (1, then retries of an unknown outcome with the
    same key), ``channel``, ``key``, ``retailer``, ``bytes``. ``order_answer``: ``req``, ``channel``,
    ``outcome`` accepted|rejected|unknown, ``http_status`` (int or null), ``delivery_id``, ``error``,
    ``latency_ms``. 2xx → accepted (a 2xx without ``id`` is accepted with
    ``error = "contract: 2xx without id"``), 4xx → rejected, anything else → unknown.
``order_shed`` / ``order_given_up_shed``
    intake's admission control answered a create ``503`` + ``Retry-After`` (nothing stored): the user
    sends the same request again after the delay, as the simulator does (same fields: ``req``,
    ``attempt``, ``key``, ``http_status``, ``retry_after_s``, ``reason``, ``latency_ms``); a request still
    shed after ``DRILL_SHED_MAX_ATTEMPTS`` sends or ``DRILL_SHED_GIVE_UP_S`` is given up (``attempts``,
    ``shed``, ``reason``, ``waited_s``, ``why``).
``duplicate_sent`` / ``duplicate_answer``
    a deliberate byte-identical re-send (REST same ``Idempotency-Key`` and body; Shopify same
    ``X-Shopify-Webhook-Id``; ePOS same ``event_id``).
``update_sent`` / ``update_answer``
    an ePOS ``order.updated``; ``out_of_order`` true when sent before its ``order.created``.
``cancel_sent`` / ``cancel_answer``
    a cancellation (REST cancel, Shopify ``orders/cancelled``, ePOS ``order.updated`` CANCELED).
``track_read``
    a ``GET /v1/deliveries/{id}``: ``delivery_id``, ``outcome``, ``http_status``, ``state``,
    ``latency_ms``. *Not* a simulator kind: the audit knows it and counts it under ``ignored``.

Every record also has ``t`` (unix seconds), ``kind``, ``order_ref`` and ``source: "locust"``.
``req`` is a string ``<pid>:<n>``, unique across the processes of a run.

Writes are buffered (64 KiB) and flushed at most once a second, at test stop and at exit: a load
generator at 10k req/s must not pay a system call per request. Not thread-safe by design: a Locust
process runs its HTTP users as greenlets of one thread.

Example:
    >>> import io
    >>> buf = io.StringIO()
    >>> led = RequestLedger(buf, clock=lambda: 2.5)
    >>> led.write("order_sent", "s1-L1-r0000001", channel="rest")
    >>> buf.getvalue()
    '{"t":2.5,"kind":"order_sent","order_ref":"s1-L1-r0000001","source":"locust","channel":"rest"}\\n'
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final, Literal

import rundir

#: The error of an ``unknown`` outcome recorded for a request cut by the end of the run (Locust kills
#: users mid-request; such a request has no outcome of its own and is not in Locust's stats).
INTERRUPTED: Final = "interrupted by the end of the run"

Outcome = Literal["accepted", "rejected", "unknown", "shed"]

FLUSH_EVERY_S: Final = 1.0
CONTRACT_NO_ID: Final = "contract: 2xx without id"


def outcome_of(status: int | None, retry_after_s: float | None = None) -> Outcome:
    """The ledger outcome of an HTTP status (None or 0: no answer at all); a 503 with a ``Retry-After``
    is a shed answer (docs/intake-api.md §2.6).

    Example:
        >>> outcome_of(202), outcome_of(503), outcome_of(503, 2.0), outcome_of(None)
        ('accepted', 'unknown', 'shed', 'unknown')
    """
    if status is not None and 200 <= status < 300:
        return "accepted"
    if status is not None and 400 <= status < 500:
        return "rejected"
    if status == 503 and retry_after_s is not None:
        return "shed"
    return "unknown"


class RequestLedger:
    """An append-only JSON-lines writer with a time-bounded buffer."""

    def __init__(self, stream: IO[str], clock: Callable[[], float] = time.time) -> None:
        self._stream = stream
        self._clock = clock
        self._last_flush = clock()
        self.records = 0
        self._req = 0
        self._pid = os.getpid()

    @classmethod
    def open(cls, run_dir: Path) -> RequestLedger:
        """Open ``<run_dir>/locust/ledger-<pid>.jsonl`` for appending."""
        path = ledger_part_path(run_dir, os.getpid())
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("a", encoding="utf-8", buffering=1 << 16))

    def next_req(self) -> str:
        """A request number unique in the run (``<pid>:<n>``)."""
        self._req += 1
        return f"{self._pid}:{self._req}"

    def write(self, kind: str, order_ref: str | None, **fields: Any) -> None:
        """Append one record (flushed within about a second)."""
        now = self._clock()
        rec = {"t": round(now, 6), "kind": kind, "order_ref": order_ref, "source": "locust", **fields}
        self._stream.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.records += 1
        if now - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Push buffered records to the file."""
        self._last_flush = self._clock()
        self._stream.flush()

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if not self._stream.closed:
            self._stream.flush()
            self._stream.close()


def ledger_part_path(run_dir: Path, pid: int) -> Path:
    """Where the process ``pid`` writes its part of the ledger."""
    return run_dir / rundir.locust_ledger_part(pid)


class NullLedger(RequestLedger):
    """The ledger when no run directory is given: counts, writes nothing."""

    def __init__(self) -> None:
        super().__init__(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - closed by close()

    def write(self, kind: str, order_ref: str | None, **fields: Any) -> None:
        """Count the record only."""
        self.records += 1
