"""The timestamps the availability and latency analysis needs, gathered during the one ledger read.

The loss audit keeps ids only; availability and latency need *times*. Rather than read a multi-GB
ledger a second time, :func:`reports.readers.ledger.read_ledger` hands every record it parses anyway
(order answers, notifications, booking answers) to :meth:`Timeline.feed`, plus the one skipped kind
that carries a milestone: ``status_sent`` whose raw bytes say ``"canonical":"delivered"`` (about one
per order; its time and order are sliced from the bytes, not parsed).

Intake requests (one per ``order_answer`` / ``duplicate_answer``) are classified by
:func:`classify_answer` — **the availability rule**:

* ``ok``: outcome ``accepted`` (a 2xx): the platform took the order.
* ``rejected``: outcome ``rejected`` (a 4xx) for bad input — the platform was up and said no, correctly.
  These are **not unavailability** and are left out of availability's denominator (a retailer sending
  garbage cannot make the platform "unavailable"), but they do count in latency.
* ``unavailable``: everything else — outcome ``unknown`` (5xx, timeout, refused or reset connection,
  run ended before the answer) and the 4xx that mean "not now" rather than "bad input"
  (408 Request Timeout, 425 Too Early, 429 Too Many Requests: back-pressure is unavailability to the
  retailer).

A request is placed in time at its **send time** (answer ``t`` − ``latency_ms``): a request that timed
out after 10 s failed when it was sent, in the second the outage hit, not 10 s later.

Order milestones, per ``order_ref``, earliest record wins (records can arrive out of order once the
deferred ones are replayed):

* ``accepted``: the first accepted answer's ``t`` (when the retailer learnt the order was taken).
* ``booked``: the first sign a courier was booked — ``booking_answer_sent`` with ``booking_accepted``
  (the courier took the job) or the customer's ``booked`` notification. ``booking_seen`` is *not*
  used: it is only a request (the courier may still refuse), and parsing one more record per order
  would cost the audit's time budget ~1 s per million orders.
* ``delivered``: the customer's ``delivered`` notification (the platform applied the courier's status
  and told the customer: the end-to-end view), else — for runs without notifications — the courier's
  ``status_sent`` with canonical ``delivered``. The two are kept apart and one source is chosen for the
  whole run (:meth:`Timeline.delivered`), so a percentile never mixes two definitions.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Request classes (small ints: one byte each in :attr:`Timeline.klass`).
OK: Final = 0
REJECTED: Final = 1
UNAVAILABLE: Final = 2
CLASS_NAMES: Final = ("ok", "rejected", "unavailable")

#: 4xx statuses that mean "not now", not "bad input": unavailability to the retailer.
NOT_NOW_4XX: Final = frozenset({408, 425, 429})

ANSWER_KINDS: Final = frozenset({"order_answer", "duplicate_answer"})
#: The parsed ledger kinds :meth:`Timeline.feed` uses (the reader skips the call for the others).
TIMELINE_KINDS: Final = ANSWER_KINDS | {"notification_received", "booking_answer_sent", "status_sent"}
#: Notification audiences that are the customer (the ledger may omit it).
_CUSTOMER: Final = (None, "customer")
#: http status -> its group in the breakdown (a small cache: one f-string per request is measurable).
_GROUPS: dict[int, str] = {}
DELIVERED: Final = "delivered"
BOOKED: Final = "booked"

#: The delivered-time sources, in order of preference (see the module docstring).
DELIVERED_NOTIFIED: Final = "customer notification"
DELIVERED_COURIER: Final = "courier status"


def classify_answer(outcome: object, http_status: object) -> int:
    """The availability class of one intake answer (the rule in the module docstring)."""
    if outcome == "accepted":
        return OK
    if outcome == "rejected" and http_status not in NOT_NOW_4XX:
        return REJECTED
    return UNAVAILABLE


@dataclass
class Milestone:
    """Every time an order reached one milestone, as (order index, time) appended to two flat arrays —
    the cheapest thing the hot path can do; :meth:`earliest` resolves them once, at the end, in numpy."""

    idx: array[int] = field(default_factory=lambda: array("q"))
    times: array[float] = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.idx)

    def earliest(self, n: int) -> FloatArray:
        """Per order index ``0..n-1`` its earliest time, ``inf`` for orders that never got there
        (records can arrive out of order: the earliest wins)."""
        out = np.full(n, np.inf)
        if self.idx:
            np.minimum.at(out, np.frombuffer(self.idx, dtype=np.int64), np.frombuffer(self.times))
        return out


@dataclass
class Timeline:
    """Per-request and per-order times of one run (parallel arrays: compact, numpy-ready).

    Orders are numbered on first sight (:attr:`index`), so the per-order joins (accepted → delivered)
    are array arithmetic instead of dictionary look-ups per order.
    """

    #: per intake request: send time (s), answer time (s), latency (ms, NaN unknown), class (OK/...).
    sent: array[float] = field(default_factory=lambda: array("d"))
    answered: array[float] = field(default_factory=lambda: array("d"))
    latency_ms: array[float] = field(default_factory=lambda: array("d"))
    klass: array[int] = field(default_factory=lambda: array("b"))
    #: http status per request class, for the report's breakdown ("2xx", "4xx", "5xx", "no answer").
    statuses: dict[str, int] = field(default_factory=dict)
    #: order ref -> order index (the position in every per-order array)
    index: dict[str, int] = field(default_factory=dict)
    accepted: Milestone = field(default_factory=Milestone)
    booked: Milestone = field(default_factory=Milestone)
    delivered_notified: Milestone = field(default_factory=Milestone)
    delivered_courier: Milestone = field(default_factory=Milestone)

    def add(self, milestone: Milestone, ref: str, t: float) -> None:
        """Record that order ``ref`` reached ``milestone`` at ``t``."""
        if not ref:
            return
        index = self.index
        i = index.get(ref)
        if i is None:
            i = index[ref] = len(index)
        milestone.idx.append(i)
        milestone.times.append(t)

    def __len__(self) -> int:
        return len(self.klass)

    def feed(self, rec: Mapping[str, Any], order_of: Mapping[str, str]) -> None:
        """Take one parsed ledger record (any kind; the irrelevant ones return after a comparison or two).

        Written flat, with one look-up per field and no helper calls on the common paths: it runs for
        ~4 records per order, inside the audit's time budget.
        """
        t = rec.get("t")
        if type(t) is not float:
            if type(t) is not int:
                return  # no time, no contribution (the loss audit still counts the record)
            t = float(t)
        kind = rec.get("kind")
        milestone: Milestone
        if kind == "notification_received":
            state = rec.get("state")
            if state == DELIVERED:
                if rec.get("audience") not in _CUSTOMER:
                    return
                milestone = self.delivered_notified
            elif state == BOOKED:
                milestone = self.booked
            else:
                return
        elif kind == "order_answer" or kind == "duplicate_answer":
            self._answer(rec, t)
            return
        elif kind == "booking_answer_sent":
            if rec.get("type") != "booking_accepted":
                return
            milestone = self.booked
        elif kind == "status_sent":
            if rec.get("canonical") != DELIVERED:
                return
            milestone = self.delivered_courier
        else:
            return
        ref = rec.get("order_ref")
        if type(ref) is not str or not ref:
            ref = _ref(rec, order_of)
            if not ref:
                return
        index = self.index
        i = index.get(ref)
        if i is None:
            i = index[ref] = len(index)
        milestone.idx.append(i)
        milestone.times.append(t)

    def _answer(self, rec: Mapping[str, Any], t: float) -> None:
        latency = rec.get("latency_ms")
        if type(latency) is float or type(latency) is int:
            lat = float(latency)
            sent = t - lat / 1000.0
        else:
            lat = math.nan
            sent = t
        outcome = rec.get("outcome")
        status = rec.get("http_status")
        # classify_answer, inlined (hot path)
        if outcome == "accepted":
            klass = OK
        elif outcome == "rejected" and status not in NOT_NOW_4XX:
            klass = REJECTED
        else:
            klass = UNAVAILABLE
        self.sent.append(sent)
        self.answered.append(t)
        self.latency_ms.append(lat)
        self.klass.append(klass)
        if type(status) is int:
            group = _GROUPS.get(status)
            if group is None:
                group = _GROUPS[status] = f"{status // 100}xx"
        else:
            group = "no answer"
        self.statuses[group] = self.statuses.get(group, 0) + 1
        if klass == OK:
            ref = rec.get("order_ref")
            if ref:
                self.add(self.accepted, str(ref), t)

    def courier_delivered(self, ref: str, t: float) -> None:
        """A courier's ``delivered`` status for ``ref`` at ``t`` (the reader's sliced fast path)."""
        self.add(self.delivered_courier, ref, t)

    def delivered(self) -> tuple[FloatArray, str]:
        """The delivered time per order index to use for the whole run, and its source."""
        n = len(self.index)
        if self.delivered_notified:
            return self.delivered_notified.earliest(n), DELIVERED_NOTIFIED
        return self.delivered_courier.earliest(n), DELIVERED_COURIER


def _ref(rec: Mapping[str, Any], order_of: Mapping[str, str]) -> str:
    ref = rec.get("order_ref")
    if ref:
        return ref if type(ref) is str else str(ref)
    delivery = str(rec.get("delivery_id") or "")
    return order_of.get(delivery, delivery)
