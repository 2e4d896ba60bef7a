"""The courier companies' side of the marketplace, transport-agnostic: messages in, timed messages out.

:class:`CourierDesk` wraps the pure :mod:`simulator.couriers` model with the little state a courier
company keeps (quotes it gave, jobs in progress for capacity, cancelled jobs) and speaks the message
shapes of docs/intake-api.md ("Courier side"). A transport (the AMQP adapter in
:mod:`simulator.courier_amqp`, or a test) feeds it requests with :meth:`CourierDesk.handle` and
publishes whatever :meth:`CourierDesk.pop_due` returns once its time has come; time is passed in
(run seconds), so the desk is fully testable with a virtual clock.

Idempotent like a real partner API. Quotes: a redelivered request (same ``message_id``) gets the same
answer again; a new request while the order's last quote is still valid gets that quote again (same id,
same expiry); a new request after it expired gets a fresh quote (new id ``…-2``, ``…-3``, new expiry).
Bookings: a repeated booking request (same quote) gets the same answer and never a second driver; each
accepted booking starts a job with its own id, so a cancel naming an old job never reaches a newer one.

Nothing is forgotten while it still has a message to send: state is pruned (bounded memory on long
runs) only for a (courier, order) with no message queued here and none popped but not yet
settled by the transport (:meth:`CourierDesk.settle`). A pump stalled behind a frozen broker node once
found its jobs gone: ``KeyError('…-job-…')``, and every message popped with it lost.

Example:
    >>> from simulator.config import Scenario
    >>> from simulator.clock import SimClock
    >>> desk = CourierDesk(1, Scenario.model_validate({"arrivals": {"rate": 1.0}}), SimClock(epoch=0.0))
    >>> sorted(desk.models)
    ['dashly', 'pedalo', 'vanguard', 'zoomly']
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.couriers import (
    DIALECT_BOOKED,
    QUOTE_TTL_S,
    Canonical,
    CourierModel,
    Quote,
    QuoteDeclined,
    QuoteRequest,
    TimelineEvent,
)
from simulator.geo import Point
from simulator.ledger import Ledger, harness_fault

TERMINAL: frozenset[str] = frozenset({"delivered", "failed", "returned", "cancelled"})
#: Statuses after which a courier no longer accepts a cancellation (the parcel is on its way).
_NOT_CANCELLABLE: frozenset[str] = frozenset({"picked_up", "in_transit", *TERMINAL})


@dataclass(order=True)
class Outgoing:
    """A message to publish at run time ``due`` on the events exchange with ``routing_key``.

    ``ledger_extra``: fields the ledger records with it beyond what the body says (e.g. a quote's
    expiry on the run clock), never sent on the wire.
    """

    due: float
    seq: int
    routing_key: str = field(compare=False)
    body: dict[str, Any] = field(compare=False)
    ledger_kind: str = field(compare=False)
    order_ref: str = field(compare=False)
    job_id: str | None = field(compare=False, default=None)
    canonical: str | None = field(compare=False, default=None)
    ledger_extra: dict[str, Any] = field(compare=False, default_factory=dict)

    @property
    def pair(self) -> tuple[str, str]:
        """(courier, order reference): what the desk remembers this message under."""
        return str(self.body.get("courier", "")), self.order_ref


@dataclass
class _Job:
    courier: str
    order_ref: str
    delivery_id: str | None
    ends_at: float
    state: str = "booked"
    cancelled: bool = False


@dataclass(slots=True)
class _Offer:
    """A quote a courier issued: what bookings of its id are checked against (run seconds)."""

    quote: Quote
    serial: int
    request: dict[str, Any]
    issued_at: float
    expires_at: float
    fields: dict[str, Any]  # what its answers say about it (_QUOTE_FIELDS), the same every time
    booking: Outgoing | None = None  # the answer to its booking, given again on a repeat


@dataclass(slots=True)
class _Pair:
    """What one courier remembers about one order (pruned after :attr:`CourierDesk.memory_s` idle)."""

    touched: float
    offers: list[_Offer] = field(default_factory=list)  # oldest first
    answers: dict[str, Outgoing] = field(default_factory=dict)  # request message_id → its quote answer


@dataclass(slots=True)
class _Serials:
    """How many quotes, booking decisions and jobs one courier gave one order: kept far longer than the
    rest (:attr:`CourierDesk.serial_memory_s`), so an id is never issued twice in a run."""

    touched: float
    quotes: int = 0
    bookings: int = 0
    jobs: int = 0


def dialect_payload(dialect: str, status: str, ev: TimelineEvent, job_id: str, order_ref: str, at: str,
                    driver_id: str, vehicle: str) -> dict[str, Any]:  # fmt: skip
    """The status payload as each courier family shapes it (the platform maps it by ``dialect``)."""
    if dialect == "uber":
        return {"kind": "event.delivery_status", "status": status, "delivery_id": job_id,
                "external_id": order_ref, "created": at,
                "courier": {"name": driver_id, "vehicle_type": vehicle,
                            "location": {"lat": ev.lat, "lng": ev.lon}}}  # fmt: skip
    if dialect == "doordash":
        return {"event_name": status, "external_delivery_id": order_ref, "created_at": at,
                "dasher_id": driver_id, "dasher_location": {"lat": ev.lat, "lng": ev.lon}}  # fmt: skip
    return {"event": "delivery", "type": "update",
            "data": {"status": status, "clientReference": order_ref, "id": job_id, "updatedAt": at,
                     "driver": {"id": driver_id, "transportType": vehicle,
                                "latitude": ev.lat, "longitude": ev.lon}}}  # fmt: skip


class CourierDesk:
    """All courier companies of a scenario, answering the platform's requests."""

    def __init__(self, seed: int, scenario: Scenario, clock: SimClock, ledger: Ledger | None = None,
                 ping_every_wall_s: float = 20.0,
                 retailer_accepts: Callable[[str, Quote], bool | None] | None = None) -> None:  # fmt: skip
        """``retailer_accepts(order_ref, quote)``: whether the order's retailer would take that quote under
        its marketplace rules (None: the order is unknown here). The couriers do not know the retailers'
        rules; the simulated world does, and writes its judgement beside each quote in the ledger
        (``retailer_ok``), so the audit can tell a courier's offer the retailer refused from one the
        platform left unbooked."""
        self.seed = seed
        self.clock = clock
        self.ledger = ledger
        self.retailer_accepts = retailer_accepts
        self.models = {c.name: CourierModel(seed, c, scenario.outages) for c in scenario.couriers}
        self.ping_every_sim_s = ping_every_wall_s * clock.compression
        self._queue: list[Outgoing] = []
        self._seq = itertools.count()
        # Dicts keep insertion order; _pairs and _serials are re-inserted on every touch, so their order is
        # time order and pruning stops at the first recent entry.
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._serials: dict[tuple[str, str], _Serials] = {}
        self._offers: dict[str, _Offer] = {}  # quote_id → offer
        self._jobs: dict[str, _Job] = {}
        # Messages not yet settled per (courier, order): queued here or popped and still being published.
        self._pins: dict[tuple[str, str], int] = {}
        self._unsettled: dict[int, Outgoing] = {}  # seq → popped, not yet settled by the transport
        self._handled = 0
        # Requests are remembered (for idempotent repeats) this long in run seconds, then forgotten, so a
        # long run does not grow without bound: twice a quote's validity, at least a minute.
        self.memory_s = max(60.0, 2 * QUOTE_TTL_S / clock.compression)
        # The serials (a few ints per courier and order) far longer: forgetting them would issue a quote
        # or job id again, and the platform may still hold the old one.
        self.serial_memory_s = max(3600.0, 10 * self.memory_s)

    # --- state -----------------------------------------------------------------------------------

    def active_jobs(self, courier: str, run_s: float) -> int:
        """Jobs of ``courier`` still running at ``run_s`` (its load, for capacity)."""
        return sum(
            1 for j in self._jobs.values() if j.courier == courier and j.ends_at > run_s and not j.cancelled
        )

    def _log(self, kind: str, ref: str | None, **fields: Any) -> None:
        if self.ledger is not None:
            self.ledger.write(kind, ref, **fields)

    def _push(self, due: float, key: str, body: dict[str, Any], kind: str, ref: str, job: str | None = None,
              canonical: str | None = None, extra: dict[str, Any] | None = None) -> Outgoing:  # fmt: skip
        out = Outgoing(due, next(self._seq), key, body, kind, ref, job, canonical, extra or {})
        heapq.heappush(self._queue, out)
        self._pins[out.pair] = self._pins.get(out.pair, 0) + 1
        return out

    def _unpin(self, out: Outgoing) -> None:
        left = self._pins.get(out.pair, 0) - 1
        if left > 0:
            self._pins[out.pair] = left
        else:
            self._pins.pop(out.pair, None)

    def pop_due(self, run_s: float) -> list[Outgoing]:
        """The messages due by ``run_s``, in time order (events of cancelled jobs are dropped: the driver
        stopped). Each returned message stays remembered until the transport calls :meth:`settle`.

        Never loses a message it popped: an unexpected error about one message is recorded as a
        ``harness_fault`` and the message is still returned (publishing it beats losing it)."""
        out = []
        while self._queue and self._queue[0].due <= run_s:
            m = heapq.heappop(self._queue)
            try:
                if self._job_cancelled(m):
                    self._unpin(m)
                    continue
            except Exception as exc:  # a bug here must not take the other popped messages with it
                harness_fault(self.ledger, "courier_desk_error", f"pop_due: {exc!r}", m.order_ref,
                              m.body.get("message_id"))  # fmt: skip
            self._unsettled[m.seq] = m
            out.append(m)
        return out

    def _job_cancelled(self, m: Outgoing) -> bool:
        """True when ``m`` belongs to a cancelled job; otherwise the job's state follows ``m``."""
        if m.job_id is None or m.canonical is None:
            return False
        job = self._jobs.get(m.job_id)
        if job is None:
            # Cannot happen while pins hold jobs with queued messages; if it does, say so and publish.
            harness_fault(self.ledger, "courier_job_forgotten",
                          f"job {m.job_id} forgotten with messages still queued", m.order_ref,
                          m.body.get("message_id"))  # fmt: skip
            return False
        if job.cancelled:
            return True
        if m.canonical != "location":
            job.state = m.canonical
        return False

    def settle(self, out: Outgoing) -> None:
        """The transport is done with ``out`` (published, or given up when the run stopped): from now on
        the state it belongs to may be pruned. Idempotent."""
        if self._unsettled.pop(out.seq, None) is not None:
            self._unpin(out)

    def idle(self) -> bool:
        """Nothing scheduled and nothing popped still being published."""
        return not self._queue and not self._unsettled

    @property
    def unsettled(self) -> int:
        """Messages popped by :meth:`pop_due` and not yet settled (being published)."""
        return len(self._unsettled)

    def pending_orders(self) -> set[str]:
        """Orders the couriers still have messages for: scheduled (jobs under way, answers not yet due) or
        popped and not yet confirmed by the broker."""
        out = {m.order_ref for m in self._unsettled.values()}
        for m in self._queue:
            job = self._jobs.get(m.job_id) if m.job_id is not None else None
            if job is None or not job.cancelled:
                out.add(m.order_ref)
        return out

    def take_all(self) -> list[Outgoing]:
        """Every message still scheduled, in time order, but those of cancelled jobs (for the transport's
        last account when the run stops); they are forgotten, nothing is published afterwards."""
        out = []
        for m in sorted(self._queue):
            self._unpin(m)
            job = self._jobs.get(m.job_id) if m.job_id is not None else None
            if job is None or not job.cancelled:
                out.append(m)
        self._queue.clear()
        return out

    @property
    def handled(self) -> int:
        """Requests taken from the platform so far (quote, booking and cancel requests)."""
        return self._handled

    def next_due(self) -> float | None:
        """Run time of the next scheduled message (None when idle)."""
        return self._queue[0].due if self._queue else None

    # --- memory ------------------------------------------------------------------------------------

    def _pinned(self, pair: tuple[str, str]) -> bool:
        return pair in self._pins

    def _touch_pair(self, key: tuple[str, str], run_s: float) -> _Pair:
        pair = self._pairs.pop(key, None) or _Pair(run_s)
        pair.touched = run_s
        self._pairs[key] = pair  # re-inserted: last in time order
        return pair

    def _touch_serials(self, key: tuple[str, str], run_s: float) -> _Serials:
        serials = self._serials.pop(key, None) or _Serials(run_s)
        serials.touched = run_s
        self._serials[key] = serials
        return serials

    def prune(self, run_s: float) -> None:
        """Forget quotes, answers and finished jobs untouched for :attr:`memory_s`, and serials untouched
        for :attr:`serial_memory_s` — but never anything of a (courier, order) that still has a message
        queued or being published (a stalled pump keeps them all)."""
        horizon = run_s - self.memory_s
        for key in list(itertools.takewhile(lambda k: self._pairs[k].touched < horizon, self._pairs)):
            if not self._pinned(key):
                for offer in self._pairs.pop(key).offers:
                    self._offers.pop(offer.quote.quote_id, None)
        for jid in list(itertools.takewhile(lambda k: self._jobs[k].ends_at < horizon, self._jobs)):
            job = self._jobs[jid]
            if not self._pinned((job.courier, job.order_ref)):
                del self._jobs[jid]
        long_ago = run_s - self.serial_memory_s
        for key in list(itertools.takewhile(lambda k: self._serials[k].touched < long_ago, self._serials)):
            if key not in self._pairs and not self._pinned(key):
                del self._serials[key]

    # --- requests ----------------------------------------------------------------------------------

    def handle(self, msg: dict[str, Any], run_s: float) -> None:
        """Take one request from the platform (a quote, booking or cancel request) at run time ``run_s``."""
        self._handled += 1
        if self._handled % 1000 == 0:
            self.prune(run_s)
        kind = msg.get("type")
        courier = str(msg.get("courier", ""))
        model = self.models.get(courier)
        ref = str(msg.get("order_reference", ""))
        if model is None:
            self._log(
                "courier_request_invalid", ref or None, reason=f"unknown courier {courier!r}", message=kind
            )
            return
        if kind == "quote_request":
            self._quote(model, msg, ref, run_s)
        elif kind == "booking_request":
            self._book(model, msg, ref, run_s)
        elif kind == "cancel_request":
            self._cancel(model, msg, ref, run_s)
        else:
            self._log(
                "courier_request_invalid", ref or None, reason=f"unknown type {kind!r}", courier=courier
            )

    def _envelope(self, kind: str, model: CourierModel, msg: dict[str, Any], ref: str) -> dict[str, Any]:
        return {"type": kind, "courier": model.cfg.name, "dialect": model.cfg.dialect,
                "delivery_id": msg.get("delivery_id"), "order_reference": ref,
                "in_reply_to": msg.get("message_id")}  # fmt: skip

    def _again(self, previous: Outgoing, run_s: float, ref: str, reply: str) -> Outgoing:
        """``previous`` answer once more (a republished or redelivered request), under a new message id."""
        again = dict(previous.body, message_id=f"{previous.body['message_id']}:again{next(self._seq)}")
        extra = dict(previous.ledger_extra, reply=reply)
        return self._push(run_s + 0.01, previous.routing_key, again, previous.ledger_kind, ref, extra=extra)

    def _quote(self, model: CourierModel, msg: dict[str, Any], ref: str, run_s: float) -> None:
        name = model.cfg.name
        mid = msg.get("message_id")
        self._log("quote_request_seen", ref, courier=name, message_id=mid, delivery_id=msg.get("delivery_id"),
                  run_s=round(run_s, 3))  # fmt: skip
        try:
            pickup, dropoff, parcel = msg["pickup"], msg["dropoff"], msg["parcel"]
            req = QuoteRequest(ref, Point(float(pickup["lat"]), float(pickup["lon"])),
                               Point(float(dropoff["lat"]), float(dropoff["lon"])), parcel["size"],
                               int(parcel["weight_g"]), self.clock.sim_offset(run_s))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            self._log("courier_request_invalid", ref, courier=name, reason=f"bad quote request: {exc!r}")
            return
        if model.in_outage(run_s):
            self._log("quote_unanswered", ref, courier=name, reason="outage", message_id=mid,
                      delivery_id=msg.get("delivery_id"))  # fmt: skip
            return
        key = (name, ref)
        pair = self._touch_pair(key, run_s)
        previous = pair.answers.get(str(mid)) if mid is not None else None
        if previous is not None:  # the same request again (redelivered, republished): the same answer
            self._again(previous, run_s, ref, "redelivery")
            return
        serials = self._touch_serials(key, run_s)
        latest = pair.offers[-1] if pair.offers else None
        if latest is not None and run_s <= latest.expires_at:
            # A new request while the last quote is valid: that quote again (same id, price, expiry).
            body = self._envelope("quote", model, msg, ref)
            body.update(latest.fields)
            kind = "quote"
            latency = latest.quote.latency_ms / 1000.0
            extra = self._offer_fields(latest, "same_quote") | self._judged(ref, latest.quote)
        else:
            answer = model.quote(req, run_s, self.clock.hour_of_day(run_s), serials.quotes + 1)
            if answer is None:  # pragma: no cover - in_outage checked above
                return
            latency = answer.latency_ms / 1000.0
            if isinstance(answer, QuoteDeclined):
                body = self._envelope("quote_declined", model, msg, ref)
                body["reason"] = answer.reason
                kind = "quote_declined"
                extra = {"reply": "fresh"}
            else:
                serials.quotes += 1
                sim = self.clock.sim_offset(run_s)
                fields = {
                    "quote_id": answer.quote_id,
                    "price": {"amount_minor": answer.price_minor, "currency": answer.currency},
                    "vehicle": answer.vehicle,
                    "pickup_eta": self.clock.iso(sim + answer.pickup_eta_s),
                    "dropoff_eta": self.clock.iso(sim + answer.dropoff_eta_s),
                    "expires_at": self.clock.iso(sim + answer.expires_in_s),
                }  # fmt: skip
                expires = run_s + self.clock.run_offset(answer.expires_in_s)
                fresh = _Offer(answer, serials.quotes, msg, run_s, expires, fields)
                pair.offers.append(fresh)
                self._offers[answer.quote_id] = fresh
                body = self._envelope("quote", model, msg, ref)
                body.update(fields)
                kind = "quote"
                extra = self._offer_fields(fresh, "fresh") | self._judged(ref, answer)
        body["message_id"] = f"{name}:{ref}:{kind}:{next(self._seq)}"
        out = self._push(run_s + latency, f"{name}.{kind}", body, "quote_sent", ref, extra=extra)
        if mid is not None:
            pair.answers[str(mid)] = out

    def _judged(self, ref: str, quote: Quote) -> dict[str, Any]:
        """``{"retailer_ok": bool}`` when the world knows the order's retailer (see ``__init__``)."""
        ok = self.retailer_accepts(ref, quote) if self.retailer_accepts is not None else None
        return {} if ok is None else {"retailer_ok": ok}

    @staticmethod
    def _offer_fields(offer: _Offer, reply: str) -> dict[str, Any]:
        return {"reply": reply, "quote_serial": offer.serial, "issued_run_s": round(offer.issued_at, 3),
                "expires_run_s": round(offer.expires_at, 3)}  # fmt: skip

    def _book(self, model: CourierModel, msg: dict[str, Any], ref: str, run_s: float) -> None:
        name = model.cfg.name
        quote_id = str(msg.get("quote_id", ""))
        mid = msg.get("message_id")
        self._log("booking_seen", ref, courier=name, quote_id=quote_id, message_id=mid,
                  delivery_id=msg.get("delivery_id"), run_s=round(run_s, 3))  # fmt: skip
        if model.in_outage(run_s):
            self._log("booking_unanswered", ref, courier=name, reason="outage", quote_id=quote_id,
                      message_id=mid, delivery_id=msg.get("delivery_id"))  # fmt: skip
            return
        offer = self._offers.get(quote_id)
        if offer is not None and offer.quote.courier != name:
            offer = None
        if offer is not None:
            self._touch_pair((name, offer.quote.order_ref), run_s)
            if offer.booking is not None:
                # A republished booking request: the same answer again, no second driver.
                self._again(offer.booking, run_s, ref, "redelivery")
                return
        body = self._envelope("booking_rejected", model, msg, ref)
        body["quote_id"] = quote_id
        extra: dict[str, Any] = {"reply": "fresh"}
        latency = 0.05
        if offer is None:
            # One of ours, forgotten: pruning waits twice its validity after the last request, so it expired.
            forgotten = self._issued_serial(model, ref, quote_id)
            body["reason"] = "unknown_quote" if forgotten is None else "quote_expired"
            if forgotten is not None:
                extra.update(quote_serial=forgotten, quote_forgotten=True, booked_run_s=round(run_s, 3))
        else:
            extra.update(quote_serial=offer.serial, quote_expires_run_s=round(offer.expires_at, 3),
                         booked_run_s=round(run_s, 3))  # fmt: skip
            if run_s > offer.expires_at:
                body["reason"] = "quote_expired"
            else:
                serials = self._touch_serials((name, ref), run_s)
                serials.bookings += 1
                ans = model.book(
                    ref, run_s, self.active_jobs(name, run_s), serials.bookings, serials.jobs + 1
                )
                if ans is None:  # pragma: no cover - in_outage checked above
                    return
                latency = ans.latency_ms / 1000.0
                if ans.accepted and ans.job_id and ans.driver_id:
                    serials.jobs += 1
                    body["type"] = "booking_accepted"
                    body["courier_job_id"] = ans.job_id
                    body["driver"] = {"id": ans.driver_id, "vehicle": offer.quote.vehicle}
                    extra["job_serial"] = serials.jobs
                    self._start_job(model, offer.quote, offer.request, msg, ref, ans.job_id, ans.driver_id,
                                    run_s + latency)  # fmt: skip
                else:
                    body["reason"] = ans.reason
        body["message_id"] = f"{name}:{ref}:{body['type']}:{next(self._seq)}"
        out = self._push(
            run_s + latency, f"{name}.{body['type']}", body, "booking_answer_sent", ref, extra=extra
        )
        if offer is not None:
            offer.booking = out

    def _issued_serial(self, model: CourierModel, ref: str, quote_id: str) -> int | None:
        """The serial of ``quote_id`` if ``model`` issued it for ``ref`` in this run, else None."""
        serials = self._serials.get((model.cfg.name, ref))
        if serials is None:
            return None
        for n in range(1, serials.quotes + 1):
            if model.quote_id(ref, n) == quote_id:
                return n
        return None

    def _start_job(self, model: CourierModel, quote: Quote, request: dict[str, Any], msg: dict[str, Any],
                   ref: str, job_id: str, driver_id: str, start: float) -> None:  # fmt: skip
        name, dialect = model.cfg.name, model.cfg.dialect
        pickup = Point(float(request["pickup"]["lat"]), float(request["pickup"]["lon"]))
        dropoff = Point(float(request["dropoff"]["lat"]), float(request["dropoff"]["lon"]))
        tl = model.timeline(ref, pickup, dropoff, quote.vehicle, driver_id, self.ping_every_sim_s)
        comp = self.clock.compression
        sim0 = self.clock.sim_offset(start)
        last = tl.events[-1].sim_after_s if tl.events else 0.0
        self._jobs[job_id] = _Job(name, ref, msg.get("delivery_id"), start + last / comp + 0.001)
        booked = TimelineEvent(0.0, "status", None, DIALECT_BOOKED[dialect], pickup.lat, pickup.lon)
        for seq, ev in enumerate((booked, *tl.events), start=1):
            due = start + 0.001 + ev.sim_after_s / comp
            at = self.clock.iso(sim0 + ev.sim_after_s)
            base = self._envelope("status" if ev.kind == "status" else "location", model, msg, ref)
            base.update({"courier_job_id": job_id, "seq": seq, "at": at, "message_id": f"{job_id}:{seq}"})
            if ev.kind == "status":
                base["status"] = ev.status
                base["payload"] = dialect_payload(dialect, str(ev.status), ev, job_id, ref, at, driver_id,
                                                  quote.vehicle)  # fmt: skip
                canon: str = ev.canonical or "booked"
                self._push(due, f"{name}.status", base, "status_sent", ref, job_id, canon)
            else:
                base["location"] = {"lat": ev.lat, "lon": ev.lon}
                self._push(due, f"{name}.location", base, "location_sent", ref, job_id, "location")

    def _cancel(self, model: CourierModel, msg: dict[str, Any], ref: str, run_s: float) -> None:
        name = model.cfg.name
        job_id = str(msg.get("courier_job_id", ""))
        self._log("cancel_request_seen", ref, courier=name, courier_job_id=job_id,
                  message_id=msg.get("message_id"), delivery_id=msg.get("delivery_id"),
                  run_s=round(run_s, 3))  # fmt: skip
        job = self._jobs.get(job_id)
        body = self._envelope("cancel_rejected", model, msg, ref)
        body["courier_job_id"] = job_id
        if job is None:
            body["reason"] = "unknown_job"
        elif job.cancelled:
            body["type"] = "cancel_accepted"
        elif job.state in _NOT_CANCELLABLE:
            body["reason"] = f"too_late:{job.state}"
        else:
            job.cancelled = True
            body["type"] = "cancel_accepted"
            cancelled: Canonical = "cancelled"
            status = self._envelope("status", model, msg, ref)
            status.update({"courier_job_id": job_id, "status": _dialect_name(model, cancelled), "seq": 999,
                           "at": self.clock.iso(self.clock.sim_offset(run_s)),
                           "message_id": f"{job_id}:cancelled"})  # fmt: skip
            self._push(run_s + 0.05, f"{name}.status", status, "status_sent", ref, None, "cancelled")
        body["message_id"] = f"{name}:{ref}:{body['type']}:{next(self._seq)}"
        self._push(run_s + 0.02, f"{name}.{body['type']}", body, "cancel_answer_sent", ref)


def _dialect_name(model: CourierModel, canonical: Canonical) -> str:
    from simulator.couriers import DIALECTS

    return DIALECTS[model.cfg.dialect][canonical]
