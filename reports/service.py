"""Served, not merely not lost: how every accepted order ended, and whether the world explains it.

The loss audit proves that no accepted order vanished. It cannot tell an order the platform *served*
from one it gave up on: "failed" is terminal either way. This module answers that from the simulator's
ledger — the outside world's own record of what it asked and answered, independent of the platform's
databases — with one rule per ending. An accepted order whose customer was told its end is exactly one
of::

    delivered        the customer was told ``delivered``
    cancelled        told ``cancelled``, and its retailer or customer did cancel it (``cancel_sent``)
    failed_by_world  told ``failed``/``returned``, and the courier's driver reported failed/returned
    refused          told ``failed``, and every courier asked to quote it refused for good, as the world
                     recorded: declined to quote, was in an outage, quoted outside the retailer's rules
                     (``retailer_ok: false`` on the quote), or rejected the booking with a reason other
                     than :data:`TRANSIENT_REJECTIONS` (``no_driver_available``, ``no_capacity``, …)
    abandoned        anything else: an expired quote, a courier never asked again, a courier that never
                     answered (no outage), a give-up after a fault, a cancellation nobody asked for

Each courier's *final* disposition counts (its last answer about that order): a courier whose quote
expired during an outage and that later refused a fresh booking refused; one whose last word was
``quote_expired`` was abandoned by the platform. An order with no courier asked at all is abandoned (the
world never said no). Orders never told an end are the loss audit's (lost, parked, or in flight at the
cut) and are counted here as ``unfinished`` only.

**served share** = (delivered + failed_by_world) / (accepted − cancelled − refused): of the orders the
world allowed the platform to serve, how many it served (a courier took them to the door).

**Shed, not accepted.** Intake's admission control may answer a new order ``503`` + ``Retry-After``
(``order_shed`` in the ledger); the world sends it again later, and either it is accepted then (and
judged above like any accepted order) or the world gives up (``order_given_up_shed``). A shed order was
never accepted, so it is neither lost nor abandoned; :class:`Shedding` counts it on its own line: shed
answers, orders shed at least once (the shed share of the orders offered), accepted after shedding,
given up after shedding, and intake's reasons. Shed answers are not ``order_answer`` records, so they are
outside intake's availability and latency (a deliberate answer, not an error) — this line is where they
show.

The ledger reader (:func:`reports.readers.ledger.read_ledger`) feeds :meth:`WorldRecord.feed` the kinds in
:data:`WORLD_KINDS` during its one read; :func:`service_check` is the named check ``no_order_abandoned``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from reports.checks import CheckResult
from reports.taxonomy import sample

SERVED_CHECK: Final = "no_order_abandoned"

DELIVERED: Final = "delivered"
CANCELLED: Final = "cancelled"
FAILED_BY_WORLD: Final = "failed_by_world"
REFUSED: Final = "refused"
ABANDONED: Final = "abandoned"
UNFINISHED: Final = "unfinished"
#: Every ending, in report order.
ENDINGS: Final = (DELIVERED, CANCELLED, FAILED_BY_WORLD, REFUSED, ABANDONED, UNFINISHED)

#: Booking rejections that only say the platform's request came too late or was lost: not a refusal.
TRANSIENT_REJECTIONS: Final = frozenset({"quote_expired", "unknown_quote"})
_TERMINAL: Final = frozenset({"delivered", "failed", "returned", "cancelled"})
#: The ledger kinds :meth:`WorldRecord.feed` reads (the reader parses these for it).
WORLD_KINDS: Final = frozenset(
    {
        "order_sent",
        "order_shed",
        "order_given_up_shed",
        "order_answer",
        "duplicate_answer",
        "notification_received",
        "cancel_sent",
        "quote_request_seen",
        "quote_sent",
        "quote_unanswered",
        "booking_answer_sent",
        "booking_unanswered",
        "status_sent",
    }
)
#: A courier's disposition that refuses the order for good (see the module docstring).
_REFUSING: Final = frozenset({"declined", "outage", "unsuitable", "refused"})


@dataclass
class _Order:
    accepted_at: float | None = None
    told: str | None = None  # the first terminal state the customer was told
    cancel_asked: bool = False
    driver_end: str | None = None  # failed / returned, as the courier's driver reported
    couriers: dict[str, tuple[float, str]] = field(default_factory=dict)  # courier -> (t, disposition)


def _disposition(rec: Mapping[str, Any]) -> str | None:
    """What one courier-side record says about that courier's will to take the order (None: nothing)."""
    kind = rec.get("kind")
    if kind == "quote_request_seen":
        return "asked"
    if kind == "quote_sent":
        if rec.get("type") == "quote_declined":
            return "declined"
        return "unsuitable" if rec.get("retailer_ok") is False else "quoted"
    if kind in ("quote_unanswered", "booking_unanswered"):
        return "outage" if rec.get("reason") == "outage" else "silent"
    if kind == "booking_answer_sent":
        if rec.get("type") == "booking_accepted":
            return "accepted"
        reason = str(rec.get("reason") or "")
        return reason if reason in TRANSIENT_REJECTIONS else "refused"
    return None


@dataclass
class Shedding:
    """What intake's admission control shed, from the world's side (see the module docstring)."""

    #: orders whose create request was sent at least once
    offered: int = 0
    #: create requests sent (every attempt) and how many of them were answered (not shed)
    requests: int = 0
    #: shed answers to create requests (every attempt) and intake's reasons for them
    shed_requests: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    #: orders shed at least once, then: accepted, given up, or neither (e.g. unknown at the end)
    shed_orders: int = 0
    accepted_after_shed: int = 0
    given_up_after_shed: int = 0
    unresolved: int = 0
    #: why the world gave up (its ``why``: "shed 12 times", the deadline, the run ending)
    given_up_why: Counter[str] = field(default_factory=Counter)

    @property
    def shed_share(self) -> float | None:
        """Orders shed at least once, of the orders offered (None: nothing offered)."""
        return self.shed_orders / self.offered if self.offered else None

    @property
    def request_share(self) -> float | None:
        """Shed answers, of every create request sent."""
        return self.shed_requests / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        """The ``service.shedding`` section of report.json."""
        return {
            "offered": self.offered,
            "requests": self.requests,
            "shed_requests": self.shed_requests,
            "request_share": self.request_share,
            "shed_orders": self.shed_orders,
            "shed_share": self.shed_share,
            "accepted_after_shed": self.accepted_after_shed,
            "given_up_after_shed": self.given_up_after_shed,
            "unresolved": self.unresolved,
            "reasons": dict(self.reasons.most_common()),
            "given_up_why": dict(self.given_up_why.most_common()),
        }


class WorldRecord:
    """Per accepted order, what the outside world did and was told (fed from the ledger, in any order)."""

    def __init__(self) -> None:
        self.orders: dict[str, _Order] = {}
        self.offered: set[str] = set()
        self.requests = 0
        self.shed_requests = 0
        self.shed_reasons: Counter[str] = Counter()
        self.shed: set[str] = set()
        self.given_up: set[str] = set()
        self.given_up_why: Counter[str] = Counter()

    def shedding(self) -> Shedding:
        """The shed line (see :class:`Shedding`)."""
        accepted = {ref for ref in self.shed if self.orders.get(ref, _Order()).accepted_at is not None}
        given_up = {ref for ref in self.given_up if ref not in accepted}
        return Shedding(
            offered=len(self.offered),
            requests=self.requests,
            shed_requests=self.shed_requests,
            reasons=Counter(self.shed_reasons),
            shed_orders=len(self.shed),
            accepted_after_shed=len(accepted),
            given_up_after_shed=len(given_up),
            unresolved=len(self.shed - accepted - given_up),
            given_up_why=Counter(self.given_up_why),
        )

    def _order(self, ref: str) -> _Order:
        o = self.orders.get(ref)
        if o is None:
            o = self.orders[ref] = _Order()
        return o

    def feed(self, rec: Mapping[str, Any], order_of: Mapping[str, str]) -> None:
        """Take one parsed ledger record of a kind in :data:`WORLD_KINDS`."""
        kind = rec.get("kind")
        ref = rec.get("order_ref") or order_of.get(str(rec.get("delivery_id") or ""))
        if not ref:
            return
        if kind == "order_sent":
            self.offered.add(str(ref))
            self.requests += 1
            return
        if kind == "order_shed":
            self.shed.add(str(ref))
            self.shed_requests += 1
            self.shed_reasons[str(rec.get("reason") or "unspecified")] += 1
            return
        if kind == "order_given_up_shed":
            self.given_up.add(str(ref))
            self.given_up_why[str(rec.get("why") or "unspecified")] += 1
            return
        t = float(rec.get("t") or 0.0)
        o = self._order(str(ref))
        if kind in ("order_answer", "duplicate_answer"):
            if rec.get("outcome") == "accepted" and (o.accepted_at is None or t < o.accepted_at):
                o.accepted_at = t
        elif kind == "notification_received":
            state = str(rec.get("state") or "").lower()
            if state in _TERMINAL and rec.get("audience") in (None, "customer") and o.told is None:
                o.told = state
        elif kind == "cancel_sent":
            o.cancel_asked = True
        elif kind == "status_sent":
            if rec.get("canonical") in ("failed", "returned"):
                o.driver_end = str(rec["canonical"])
        else:
            disposition = _disposition(rec)
            courier = rec.get("courier")
            if disposition is not None and courier:
                previous = o.couriers.get(str(courier))
                # The latest word counts; "asked" never overrides an answer given at the same instant.
                if previous is None or t > previous[0] or (t == previous[0] and disposition != "asked"):
                    o.couriers[str(courier)] = (t, disposition)


@dataclass(frozen=True)
class Ending:
    """How one accepted order ended, and why (``why``: the couriers' dispositions when it matters)."""

    order: str
    ending: str
    accepted_at: float | None
    why: str = ""


def classify_order(ref: str, o: _Order) -> Ending:
    """The ending of one accepted order (the rules in the module docstring)."""
    if o.told is None:
        return Ending(ref, UNFINISHED, o.accepted_at)
    if o.told == "delivered":
        return Ending(ref, DELIVERED, o.accepted_at)
    if o.told == "cancelled":
        if o.cancel_asked:
            return Ending(ref, CANCELLED, o.accepted_at)
        return Ending(ref, ABANDONED, o.accepted_at, "cancelled, but nobody asked for it")
    if o.driver_end is not None:
        return Ending(ref, FAILED_BY_WORLD, o.accepted_at, f"the driver reported {o.driver_end}")
    dispositions = {c: d for c, (_, d) in sorted(o.couriers.items())}
    if not dispositions:
        return Ending(ref, ABANDONED, o.accepted_at, "no courier was asked")
    why = ", ".join(f"{c}: {d}" for c, d in dispositions.items())
    if all(d in _REFUSING for d in dispositions.values()):
        return Ending(ref, REFUSED, o.accepted_at, why)
    return Ending(ref, ABANDONED, o.accepted_at, why)


@dataclass(frozen=True)
class Window:
    """A span of the run to break the endings down by (orders accepted in ``[start, end)``)."""

    label: str
    start: float
    end: float


@dataclass
class Service:
    """Every accepted order's ending, with counts overall and per window."""

    endings: list[Ending]
    by_window: list[tuple[Window, Counter[str]]] = field(default_factory=list)
    #: what admission control shed (never accepted, so not among the endings)
    shedding: Shedding = field(default_factory=Shedding)

    @property
    def counts(self) -> Counter[str]:
        """Orders per ending (every ending present, zeros included)."""
        c: Counter[str] = Counter({e: 0 for e in ENDINGS})
        c.update(e.ending for e in self.endings)
        return c

    @property
    def accepted(self) -> int:
        """Accepted orders."""
        return len(self.endings)

    @staticmethod
    def share(c: Mapping[str, int]) -> float | None:
        """Served share of ``c`` (see the module docstring); None when nothing was serviceable."""
        serviceable = sum(c.values()) - c.get(CANCELLED, 0) - c.get(REFUSED, 0)
        if serviceable <= 0:
            return None
        return (c.get(DELIVERED, 0) + c.get(FAILED_BY_WORLD, 0)) / serviceable

    @property
    def served_share(self) -> float | None:
        """Served share over the whole run."""
        return self.share(self.counts)

    @property
    def abandoned(self) -> list[Ending]:
        """The abandoned orders."""
        return [e for e in self.endings if e.ending == ABANDONED]

    def abandon_reasons(self) -> Counter[str]:
        """What the couriers last said about the abandoned orders, counted (e.g. ``quote_expired: 12``)."""
        reasons: Counter[str] = Counter()
        for e in self.abandoned:
            parts = [p.split(": ", 1)[-1] for p in e.why.split(", ")] if ": " in e.why else [e.why]
            reasons.update(p for p in parts if p not in _REFUSING)
        return reasons

    def to_dict(self) -> dict[str, Any]:
        """The ``service`` section of report.json."""
        return {
            "accepted": self.accepted,
            "counts": dict(self.counts),
            "served_share": self.served_share,
            "abandon_reasons": dict(self.abandon_reasons().most_common()),
            "samples": {
                ending: sample(e.order for e in self.endings if e.ending == ending)
                for ending in (ABANDONED, REFUSED, UNFINISHED)
                if any(e.ending == ending for e in self.endings)
            },
            "abandoned_why": {e.order: e.why for e in self.abandoned[:20]},
            "shedding": self.shedding.to_dict(),
            "by_window": [
                {
                    "label": w.label,
                    "start": w.start,
                    "end": w.end,
                    "counts": dict(c),
                    "served_share": self.share(c),
                }
                for w, c in self.by_window
            ],
        }


def classify(world: WorldRecord, accepted: Iterable[str], windows: Sequence[Window] = ()) -> Service:
    """The ending of every order in ``accepted`` (the loss audit's acknowledged ids), and per window."""
    endings = [classify_order(ref, world.orders.get(ref) or _Order()) for ref in sorted(accepted)]
    by_window: list[tuple[Window, Counter[str]]] = []
    for w in windows:
        c: Counter[str] = Counter({e: 0 for e in ENDINGS})
        c.update(e.ending for e in endings if e.accepted_at is not None and w.start <= e.accepted_at < w.end)
        by_window.append((w, c))
    return Service(endings, by_window, world.shedding())


def service_check(service: Service | None) -> CheckResult:
    """``no_order_abandoned``: every accepted order was served or explained by the world."""
    if service is None or not service.accepted:
        return CheckResult(SERVED_CHECK, "skipped", "no accepted order (or no simulator ledger) to judge")
    c = service.counts
    counts = {e: c[e] for e in ENDINGS}
    share = service.served_share
    what = (
        f"{c[DELIVERED]} delivered, {c[CANCELLED]} cancelled by their customer, {c[REFUSED]} refused by "
        f"every courier asked, {c[FAILED_BY_WORLD]} failed by their driver, {c[ABANDONED]} abandoned"
        + (f", {c[UNFINISHED]} unfinished (see the loss checks)" if c[UNFINISHED] else "")
    )
    details: dict[str, Any] = {"served_share": share, "abandon_reasons": dict(service.abandon_reasons())}
    samples = {"abandoned": sample(e.order for e in service.abandoned)} if service.abandoned else {}
    if service.abandoned:
        reasons = ", ".join(f"{k} {n}" for k, n in service.abandon_reasons().most_common(4))
        return CheckResult(
            SERVED_CHECK,
            "failed",
            f"{c[ABANDONED]} of {service.accepted} accepted order(s) ABANDONED by the platform (the asked couriers'"
            f" last words: {reasons}); {what}",
            counts,
            samples,
            details,
        )
    served = "" if share is None else f"{share:.0%} of serviceable orders served: "
    return CheckResult(SERVED_CHECK, "passed", f"{served}{what}", counts, samples, details)
