"""The courier companies' side of the marketplace, transport-agnostic: messages in, timed messages out.

:class:`CourierDesk` wraps the pure :mod:`simulator.couriers` model with the little state a courier
company keeps (quotes it gave, jobs in progress for capacity, cancelled jobs) and speaks the message
shapes of docs/intake-api.md ("Courier side"). A transport (the AMQP adapter in
:mod:`simulator.courier_amqp`, or a test) feeds it requests with :meth:`CourierDesk.handle` and
publishes whatever :meth:`CourierDesk.pop_due` returns once its time has come; time is passed in
(run seconds), so the desk is fully testable with a virtual clock.

Idempotent like a real partner API: a repeated quote request gets the same quote; a repeated booking
request (same quote) gets the same answer and does not start a second driver.

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
from dataclasses import dataclass, field
from typing import Any

from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.couriers import (
    DIALECT_BOOKED,
    Canonical,
    CourierModel,
    Quote,
    QuoteDeclined,
    QuoteRequest,
    TimelineEvent,
)
from simulator.geo import Point
from simulator.ledger import Ledger

TERMINAL: frozenset[str] = frozenset({"delivered", "failed", "returned", "cancelled"})
#: Statuses after which a courier no longer accepts a cancellation (the parcel is on its way).
_NOT_CANCELLABLE: frozenset[str] = frozenset({"picked_up", "in_transit", *TERMINAL})


@dataclass(order=True)
class Outgoing:
    """A message to publish at run time ``due`` on the events exchange with ``routing_key``."""

    due: float
    seq: int
    routing_key: str = field(compare=False)
    body: dict[str, Any] = field(compare=False)
    ledger_kind: str = field(compare=False)
    order_ref: str = field(compare=False)
    job_id: str | None = field(compare=False, default=None)
    canonical: str | None = field(compare=False, default=None)


@dataclass
class _Job:
    courier: str
    order_ref: str
    delivery_id: str | None
    ends_at: float
    state: str = "booked"
    cancelled: bool = False


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
                 ping_every_wall_s: float = 20.0) -> None:  # fmt: skip
        self.seed = seed
        self.clock = clock
        self.ledger = ledger
        self.models = {c.name: CourierModel(seed, c, scenario.outages) for c in scenario.couriers}
        self.ping_every_sim_s = ping_every_wall_s * clock.compression
        self._queue: list[Outgoing] = []
        self._seq = itertools.count()
        self._quotes: dict[
            str, tuple[Quote, dict[str, Any], float]
        ] = {}  # quote_id → (quote, request, run_s)
        self._quote_answers: dict[tuple[str, str], Outgoing] = {}  # (courier, order_ref) → answer
        self._bookings: dict[str, Outgoing] = {}  # quote_id → booking answer
        self._jobs: dict[str, _Job] = {}
        self._attempts: dict[tuple[str, str], int] = {}
        self._handled = 0
        # Requests are remembered (for idempotent repeats) this long in run seconds, then forgotten, so a
        # long run does not grow without bound: twice a quote's validity, at least a minute.
        self.memory_s = max(60.0, 2 * 900.0 / clock.compression)

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
              canonical: str | None = None) -> Outgoing:  # fmt: skip
        out = Outgoing(due, next(self._seq), key, body, kind, ref, job, canonical)
        heapq.heappush(self._queue, out)
        return out

    def pop_due(self, run_s: float) -> list[Outgoing]:
        """The messages due by ``run_s``, in time order (events of cancelled jobs are dropped)."""
        out = []
        while self._queue and self._queue[0].due <= run_s:
            m = heapq.heappop(self._queue)
            if m.job_id is not None and m.canonical is not None:
                job = self._jobs[m.job_id]
                if job.cancelled:
                    continue
                if m.canonical != "location":
                    job.state = m.canonical
            out.append(m)
        return out

    def pending_orders(self) -> set[str]:
        """Orders the couriers still have messages scheduled for (jobs under way, answers not yet due)."""
        out = set()
        for m in self._queue:
            job = self._jobs.get(m.job_id) if m.job_id is not None else None
            if job is None or not job.cancelled:
                out.add(m.order_ref)
        return out

    @property
    def handled(self) -> int:
        """Requests taken from the platform so far (quote, booking and cancel requests)."""
        return self._handled

    def next_due(self) -> float | None:
        """Run time of the next scheduled message (None when idle)."""
        return self._queue[0].due if self._queue else None

    # --- requests ----------------------------------------------------------------------------------

    def prune(self, run_s: float) -> None:
        """Forget quotes, answers and finished jobs older than :attr:`memory_s` (dicts keep insertion order,
        which is time order here, so this stops at the first recent entry)."""
        horizon = run_s - self.memory_s
        for qid in list(itertools.takewhile(lambda k: self._quotes[k][2] < horizon, self._quotes)):
            quote = self._quotes.pop(qid)[0]
            self._quote_answers.pop((quote.courier, quote.order_ref), None)
            self._attempts.pop((quote.courier, quote.order_ref), None)
            self._bookings.pop(qid, None)
        for jid in list(itertools.takewhile(lambda k: self._jobs[k].ends_at < horizon, self._jobs)):
            del self._jobs[jid]

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

    def _quote(self, model: CourierModel, msg: dict[str, Any], ref: str, run_s: float) -> None:
        name = model.cfg.name
        self._log("quote_request_seen", ref, courier=name, message_id=msg.get("message_id"),
                  delivery_id=msg.get("delivery_id"))  # fmt: skip
        try:
            pickup, dropoff, parcel = msg["pickup"], msg["dropoff"], msg["parcel"]
            req = QuoteRequest(ref, Point(float(pickup["lat"]), float(pickup["lon"])),
                               Point(float(dropoff["lat"]), float(dropoff["lon"])), parcel["size"],
                               int(parcel["weight_g"]), self.clock.sim_offset(run_s))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            self._log("courier_request_invalid", ref, courier=name, reason=f"bad quote request: {exc!r}")
            return
        answer = model.quote(req, run_s, self.clock.hour_of_day(run_s))
        if answer is None:
            self._log("quote_unanswered", ref, courier=name, reason="outage")
            return
        previous = self._quote_answers.get((name, ref))
        body = self._envelope("quote" if isinstance(answer, Quote) else "quote_declined", model, msg, ref)
        if isinstance(answer, QuoteDeclined):
            body["reason"] = answer.reason
            kind = "quote_declined"
        else:
            sim = self.clock.sim_offset(run_s)
            body.update({
                "quote_id": answer.quote_id,
                "price": {"amount_minor": answer.price_minor, "currency": answer.currency},
                "vehicle": answer.vehicle,
                "pickup_eta": self.clock.iso(sim + answer.pickup_eta_s),
                "dropoff_eta": self.clock.iso(sim + answer.dropoff_eta_s),
                "expires_at": self.clock.iso(sim + answer.expires_in_s),
            })  # fmt: skip
            if previous is None or previous.body.get("quote_id") != answer.quote_id:
                self._quotes[answer.quote_id] = (answer, msg, run_s)
            kind = "quote"
        body["message_id"] = f"{name}:{ref}:{kind}:{next(self._seq)}"
        out = self._push(run_s + answer.latency_ms / 1000.0, f"{name}.{kind}", body, "quote_sent", ref)
        self._quote_answers[(name, ref)] = out

    def _book(self, model: CourierModel, msg: dict[str, Any], ref: str, run_s: float) -> None:
        name = model.cfg.name
        quote_id = str(msg.get("quote_id", ""))
        self._log("booking_seen", ref, courier=name, quote_id=quote_id, message_id=msg.get("message_id"),
                  delivery_id=msg.get("delivery_id"))  # fmt: skip
        previous = self._bookings.get(quote_id)
        if previous is not None:
            # A republished booking request: the same answer again, no second driver.
            again = dict(previous.body, message_id=f"{previous.body['message_id']}:again{next(self._seq)}")
            self._push(run_s + 0.01, previous.routing_key, again, "booking_answer_sent", ref)
            return
        body = self._envelope("booking_rejected", model, msg, ref)
        body["quote_id"] = quote_id
        stored = self._quotes.get(quote_id)
        if model.in_outage(run_s):
            self._log("booking_unanswered", ref, courier=name, reason="outage")
            return
        if stored is None or stored[0].courier != name:
            body["reason"] = "unknown_quote"
            latency = 0.05
        elif run_s - stored[2] > stored[0].expires_in_s / self.clock.compression:
            body["reason"] = "quote_expired"
            latency = 0.05
        else:
            quote, request, _ = stored
            attempt = self._attempts[(name, ref)] = self._attempts.get((name, ref), 0) + 1
            ans = model.book(ref, run_s, self.active_jobs(name, run_s), attempt)
            if ans is None:  # pragma: no cover - in_outage checked above
                return
            latency = ans.latency_ms / 1000.0
            if ans.accepted and ans.job_id and ans.driver_id:
                body["type"] = "booking_accepted"
                body["courier_job_id"] = ans.job_id
                body["driver"] = {"id": ans.driver_id, "vehicle": quote.vehicle}
                self._start_job(model, quote, request, msg, ref, ans.job_id, ans.driver_id, run_s + latency)
            else:
                body["reason"] = ans.reason
        body["message_id"] = f"{name}:{ref}:{body['type']}:{next(self._seq)}"
        self._bookings[quote_id] = self._push(run_s + latency, f"{name}.{body['type']}", body,
                                              "booking_answer_sent", ref)  # fmt: skip

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
        self._log(
            "cancel_request_seen", ref, courier=name, courier_job_id=job_id, message_id=msg.get("message_id")
        )
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
