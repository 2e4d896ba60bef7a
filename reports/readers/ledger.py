"""Adapter for the simulator's ledger, ``<run>/simulator/ledger.jsonl``.

.. warning::
   ``simulator/`` is being written concurrently. This adapter follows the shape documented in the
   module docstring of ``simulator/ledger.py`` and in ``docs/intake-api.md`` §4-5 as of this writing;
   field and kind names must be re-checked against ``simulator/ledger.py`` whenever it changes. Drift
   does not pass silently: every kind this adapter does not know is counted in the source's ``ignored``
   map as ``unrecognised:<kind>`` (report.json, summary.md), and a known kind with a missing id field
   is a malformed record, which fails the input check.

Mapping (``t`` is kept; one ledger record gives zero, one or two ops)::

    ledger kind                      condition                        op       flow          id; key
    order_sent, duplicate_sent       (retries and provider re-sends)  attempt  orders        order
    order_answer, duplicate_answer   outcome accepted|rejected|unknown ack|fail|unknown  orders  order
    order_shed, duplicate_shed       503 + Retry-After: nothing stored fail     orders        order
    notification_received            not marked duplicate (a re-send  effect   notification  order;
                                     of an id already received)                (delivery, state, audience, to, channel)
                                     + audience customer (or absent)
                                       and state terminal             observe  orders        order
    booking_answer_sent              type booking_accepted, first      effect   booking       order;
                                     answer of that job                                (order, courier, job)
    cancel_answer_sent               type cancel_accepted, first of    effect   booking_released  order;
                                     that job                                          (order, courier, job)
    attempt/ack/fail/unknown/        generic ops (e.g. the harness     as is    flow, default orders
    observe/effect/expect/parked/    appending ``inflight`` at the cut)
    inflight
    run/courier/quote/update/cancel/ known, not ops                   —        counted in ``ignored``
    progress/location kinds,
    *_given_up_shed, update_shed,
    cancel_shed
    anything else                                                     —        ``unrecognised:<kind>``

Why these choices:

* **observe = the customer was told the order reached a terminal state** (delivered, failed,
  returned, cancelled). The ledger sees the platform only from outside, and the platform notifies the
  customer on every state change (docs/intake-api.md §4); the courier's own ``status_sent`` is the
  simulator's *input*, not proof that the platform applied it. Once the platform's database is
  readable, an SQLite map of its deliveries table onto flow ``orders`` (kind ``observe``) is the
  stronger source; both can feed the same flow.
* **one booking = one courier job**: a republished booking request gets the *same* answer again from
  the courier desk (no second driver), so repeats of a job are not second bookings
  (``ignored["booking_answer_sent(repeat)"]``); two different jobs for one order are. Likewise a
  cancel request redelivered to the courier and accepted again releases the job once
  (``ignored["cancel_answer_sent(repeat)"]``).
* **a shed answer is a definite fail** of that attempt: intake's admission control answers ``503`` +
  ``Retry-After`` only when it stored nothing (docs/intake-api.md §2.6). So each shed send has its own
  outcome (it is not an "unanswered try"), an order shed and then accepted is acknowledged (an ack beats
  a fail), and an order shed until the world gave up is ``failed`` — correctly not accepted, never lost.
  If such an order were observed anyway, ``failed_but_observed`` would say intake kept what it shed.
  The shed line of the report (:class:`reports.service.Shedding`) counts them.
* **recipient** is ``audience:to`` (``customer:+4477…``), so SMS and e-mail to one customer are two
  notifications, and the same SMS twice is a duplicated effect.
* **delivery** in keys is ``delivery_id`` (else the order); ids are the ``order_ref`` everywhere, else
  the order an accepted answer gave for that ``delivery_id`` (the ledger is read in full first).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import rundir
from reports import _json
from reports.ops import (
    ACK,
    ATTEMPT,
    EFFECT,
    FAIL,
    KINDS,
    OBSERVE,
    UNKNOWN,
    Collector,
    Op,
    OpError,
)
from reports.readers import SourceStats, gc_paused
from reports.readers.jsonl import parse_op
from reports.service import WORLD_KINDS, WorldRecord
from reports.timeline import TIMELINE_KINDS, Timeline

READER = "simulator-ledger"
LEDGER_PATH: Final = rundir.SIMULATOR_LEDGER
#: The Locust load test's ledger: the same kinds and fields (loadtests/ledger.py), plus ``track_read``.
LOCUST_LEDGER_PATH: Final = rundir.LOCUST_LEDGER

ORDERS: Final = "orders"
NOTIFICATION: Final = "notification"
BOOKING: Final = "booking"

#: Canonical terminal states (BRIEF: delivered; side exits failed, cancelled, returned).
TERMINAL_STATES: Final = frozenset({"delivered", "failed", "cancelled", "returned"})
ANSWER_OPS: Final = {"accepted": ACK, "rejected": FAIL, "unknown": UNKNOWN}
BOOKING_ACCEPTED: Final = "booking_accepted"
#: Flow of the courier jobs the platform released (its cancel accepted by the courier): a booking it
#: undid — e.g. a courier's acceptance that arrived after the platform had moved on to the next one.
BOOKING_RELEASED: Final = "booking_released"
#: Ledger kinds that are known and deliberately not ops (counted in ``ignored`` under their own name).
KNOWN_NOT_OPS: Final = frozenset(
    {
        "run_started",
        "progress",
        "run_finished",
        "run_aborted",
        "linger_started",
        "linger_finished",
        "update_sent",
        "update_answer",
        "cancel_sent",
        "cancel_answer",
        "quote_request_seen",
        "quote_sent",
        "quote_unanswered",
        "booking_seen",
        "booking_unanswered",
        "cancel_request_seen",
        "courier_request_invalid",
        "courier_publish_retry",
        "courier_publish_failed",
        "courier_pump_error",
        "courier_stopped",
        "receiver_holding",
        "receiver_stopped",
        "courier_reconnecting",
        "courier_reconnected",
        "courier_consumer_stalled",
        "status_sent",
        "location_sent",
        "track_read",
        "order_given_up_shed",
        "duplicate_given_up_shed",
        "update_shed",
        "update_given_up_shed",
        "cancel_shed",
        "cancel_given_up_shed",
    }
)
#: A shed answer (503 + Retry-After): the attempt's definite "not accepted" (see the docstring).
SHED_KINDS: Final = frozenset({"order_shed", "duplicate_shed"})

_SKIP_BYTES: Final = frozenset(kind.encode() for kind in KNOWN_NOT_OPS)
#: Skipped kinds the served audit (:mod:`reports.service`) parses when it is asked for; ``status_sent``
#: stays skipped unless its bytes say the driver failed or returned the parcel (one per such order).
_WORLD_BYTES: Final = frozenset(k.encode() for k in WORLD_KINDS) - {b"status_sent"}
_CANONICAL_DRIVER_END: Final = (b'"canonical":"failed"', b'"canonical":"returned"')
#: A record by which the harness itself says it misbehaved (e.g. the simulator dropped one of its own
#: messages): the audit turns it into an INCONCLUSIVE verdict, never a platform failure.
HARNESS_FAULT: Final = "harness_fault"
#: The one skipped kind that still carries an order milestone for the timeline (reports.timeline).
_STATUS_SENT: Final = b"status_sent"
_CANONICAL_DELIVERED: Final = b'"canonical":"delivered"'
_ORDER_REF_AT: Final = b',"order_ref":"'


def read_ledger(
    path: Path,
    collector: Collector,
    timeline: Timeline | None = None,
    world: WorldRecord | None = None,
    harness_faults: list[dict[str, Any]] | None = None,
) -> SourceStats:
    """Feed the ops of a simulator ledger into ``collector``, streaming.

    A long drill writes tens of millions of records (location pings, progress), so records are not
    kept: each is mapped as it is read. The only exception is a record that names a delivery but no
    order while that delivery's accepted answer has not been read yet; it waits in a small list and
    is mapped at the end, when every answer is known.

    With a ``timeline``, the parsed records it uses are also handed to :meth:`Timeline.feed` (the same
    read serves the availability and latency analysis), and so is the one skipped kind that carries a
    milestone: a ``status_sent`` whose bytes say the parcel was delivered (sliced, not parsed).

    With a ``world``, the records the served audit needs (:data:`reports.service.WORLD_KINDS`) are parsed
    and handed to :meth:`WorldRecord.feed`. With ``harness_faults``, every ``harness_fault`` record is
    appended to it.
    """
    skip = _SKIP_BYTES - _WORLD_BYTES if world is not None else _SKIP_BYTES
    stats = SourceStats(source=str(path), reader=READER)
    order_of: dict[str, str] = {}
    jobs_seen: set[tuple[str, str, str]] = set()
    released_seen: set[tuple[str, str, str]] = set()
    deferred: list[tuple[int, dict[str, Any]]] = []

    def emit(lineno: int, rec: Mapping[str, Any]) -> None:
        kind = rec["kind"]
        if timeline is not None and kind in TIMELINE_KINDS:
            timeline.feed(rec, order_of)
        if world is not None and kind in WORLD_KINDS:
            world.feed(rec, order_of)
        if kind == HARNESS_FAULT:
            stats.ignored[HARNESS_FAULT] += 1
            if harness_faults is not None:
                harness_faults.append(dict(rec))
            return
        try:
            ops = _to_ops(rec, order_of, jobs_seen, released_seen, stats)
        except OpError as exc:
            stats.error(f"{path.name}:{lineno}", str(exc))
            return
        for op in ops:
            try:
                collector.add(op)
            except OpError as exc:
                stats.error(f"{path.name}:{lineno}", str(exc))
                return
            stats.ops += 1

    skipped: Counter[bytes] = Counter()
    with path.open("rb") as fh, gc_paused():
        for lineno, line in enumerate(fh, 1):
            # Most of a drill's ledger is location pings, courier statuses and progress lines that are
            # not ops; recognising them from the raw bytes skips the JSON parse (~3x faster overall).
            # Only the writer's exact prefix qualifies: '{"t":<number>,"kind":"<kind>"', so "kind" is
            # certainly the top-level key, never a nested one.
            if line.startswith(b'{"t":'):
                comma = line.find(b",", 5)
                if line.startswith(b'"kind":"', comma + 1):
                    end = line.find(b'"', comma + 9)
                    kind_bytes = line[comma + 9 : end]
                    if kind_bytes in skip:
                        if (
                            world is not None
                            and kind_bytes == _STATUS_SENT
                            and any(c in line for c in _CANONICAL_DRIVER_END)
                        ):
                            rec = _json.loads(line)
                            if isinstance(rec, dict):
                                world.feed(rec, order_of)
                        skipped[kind_bytes] += 1
                        if (
                            timeline is not None
                            and kind_bytes == _STATUS_SENT
                            and _CANONICAL_DELIVERED in line
                        ):
                            _courier_delivered(line, comma, end, timeline, order_of)
                        continue
            if not line.strip():
                continue
            stats.records += 1
            try:
                rec = _json.loads(line)
            except ValueError as exc:
                stats.error(f"{path.name}:{lineno}", f"invalid JSON: {exc}")
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("kind"), str):
                stats.error(f"{path.name}:{lineno}", "not an object with a string 'kind'")
                continue
            kind = rec["kind"]
            if (
                kind in ("order_answer", "duplicate_answer")
                and rec.get("delivery_id")
                and rec.get("order_ref")
            ):
                order_of[str(rec["delivery_id"])] = str(rec["order_ref"])
            elif (
                not rec.get("order_ref")
                and rec.get("delivery_id")
                and str(rec["delivery_id"]) not in order_of
            ):
                deferred.append((lineno, rec))
                continue
            emit(lineno, rec)
    for lineno, rec in deferred:
        emit(lineno, rec)
    for kind_bytes, n in skipped.items():
        stats.ignored[kind_bytes.decode()] += n
        stats.records += n
    return stats


def _courier_delivered(
    line: bytes, comma: int, end: int, timeline: Timeline, order_of: Mapping[str, str]
) -> None:
    """A courier's ``delivered`` status, for the timeline only (it is not an op).

    The writer's exact shape ``{"t":<t>,"kind":"status_sent","order_ref":"<ref>",...`` is sliced
    rather than parsed: one per order, and a full parse of each would cost ~1 s per million orders.
    Anything else (another key order, an escaped ref) takes the slow, general path. A damaged line is
    not an error here: the loss audit ignores this kind, so it must not fail the input check either.
    """
    if line.startswith(_ORDER_REF_AT, end + 1):
        start = end + 1 + len(_ORDER_REF_AT)
        stop = line.find(b'"', start)
        ref = line[start:stop]
        if stop > start and b"\\" not in ref:
            try:
                t = float(line[5:comma])
            except ValueError:
                return
            timeline.courier_delivered(ref.decode(), t)
            return
    try:
        rec = _json.loads(line)
    except ValueError:
        return
    if isinstance(rec, dict):
        timeline.feed(rec, order_of)


def _to_ops(
    rec: Mapping[str, Any],
    order_of: Mapping[str, str],
    jobs_seen: set[tuple[str, str, str]],
    released_seen: set[tuple[str, str, str]],
    stats: SourceStats,
) -> list[Op]:
    """The ops for one ledger record (the mapping table in the module docstring)."""
    kind: str = rec["kind"]
    t = rec.get("t")
    if kind in ("order_sent", "duplicate_sent"):
        return [Op(ATTEMPT, _field(rec, "order_ref"), ORDERS, t)]
    if kind in ("order_answer", "duplicate_answer"):
        outcome = rec.get("outcome")
        op_kind = ANSWER_OPS.get(str(outcome))
        if op_kind is None:
            raise OpError(f"{kind} with unknown outcome {outcome!r}")
        return [Op(op_kind, _field(rec, "order_ref"), ORDERS, t)]
    if kind in SHED_KINDS:
        return [Op(FAIL, _field(rec, "order_ref"), ORDERS, t)]
    if kind == "notification_received":
        if rec.get("duplicate") is True:
            # The same notification_id again: the platform re-sent after an unknown outcome and the
            # provider recognised it (idempotent by id) — one message reached the customer, not two.
            stats.ignored["notification_received(resend)"] += 1
            return []
        order = _order(rec, order_of)
        state = _field(rec, "state")
        audience = rec.get("audience")
        # The columns of the notifications service's own table (delivery_id, state, audience, recipient,
        # channel), so what it planned (``expect``, audit.json) and what arrived compare key for key.
        key = (
            _delivery(rec),
            state,
            str(audience or ""),
            str(rec.get("to") or ""),
            str(rec.get("channel") or ""),
        )
        ops = [Op(EFFECT, order, NOTIFICATION, t, key)]
        if audience in (None, "customer") and state.lower() in TERMINAL_STATES:
            ops.append(Op(OBSERVE, order, ORDERS, t))
        return ops
    if kind in ("booking_answer_sent", "cancel_answer_sent"):
        accepted, flow, seen = (
            (BOOKING_ACCEPTED, BOOKING, jobs_seen)
            if kind == "booking_answer_sent"
            else ("cancel_accepted", BOOKING_RELEASED, released_seen)
        )
        if rec.get("type") != accepted:
            stats.ignored[f"{kind}(not accepted)"] += 1
            return []
        order = _order(rec, order_of)
        job = (order, str(rec.get("courier") or ""), _field(rec, "courier_job_id"))
        if job in seen:
            # The courier desk answers a republished booking request, or a redelivered cancel request,
            # with the same job again: one job booked, or released, once.
            stats.ignored[f"{kind}(repeat)"] += 1
            return []
        seen.add(job)
        return [Op(EFFECT, order, flow, t, job)]
    if kind in KINDS:
        # Generic ops carried in the ledger (e.g. the harness appending "inflight" at the cut).
        generic = dict(rec)
        generic["flow"] = rec.get("flow") or ORDERS
        if generic.get("id") is None and (rec.get("order_ref") or rec.get("delivery_id")):
            generic["id"] = _order(rec, order_of)
        return [parse_op(generic)]
    if kind in KNOWN_NOT_OPS:
        stats.ignored[kind] += 1
    else:
        stats.ignored[f"unrecognised:{kind}"] += 1
    return []


def _field(rec: Mapping[str, Any], name: str) -> str:
    value = rec.get(name)
    if value is None or value == "":
        raise OpError(f"{rec.get('kind')} without {name!r}")
    return str(value)


def _delivery(rec: Mapping[str, Any]) -> str:
    value = rec.get("delivery_id") or rec.get("order_ref")
    if not value:
        raise OpError(f"{rec.get('kind')} without delivery_id or order_ref")
    return str(value)


def _order(rec: Mapping[str, Any], order_of: Mapping[str, str]) -> str:
    if rec.get("order_ref"):
        return str(rec["order_ref"])
    delivery = _delivery(rec)
    return order_of.get(delivery, delivery)
