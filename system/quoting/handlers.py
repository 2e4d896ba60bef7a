"""Quoting's decoders, handlers (``quoting.orders``, ``quoting.answers``) and deadline sweep.

Handlers run inside the consumer's open transaction (which also records the message in the inbox) and
never commit; the sweep opens its own with :meth:`ServiceRuntime.transaction`. A round is decided where
its last expected answer arrives, or by the first sweep after its deadline — whichever replica gets
there first; the conditional update in :func:`.store.close_round` makes it happen once.

Nothing is given up because the platform was slow: a round with no suitable quote yet and couriers still
silent asks those couriers again until the order's deadline (``book_by``), and dispatch's
:class:`~system.platform.contracts.RequoteRequested` (its options ran out for transient reasons) starts
the next round. A silent courier is *unreachable* — a refusal, like a decline — once another courier has
answered an ask made ``courier_down_after_s`` after its oldest unanswered one (:func:`.store.unreachable`):
a courier that is down for hours must not hold orders back, while a broker outage, which silences every
courier and then returns their queued answers in any order, makes none of them unreachable. ``no_courier`` means every asked courier refused (declined, quoted nothing
the retailer's rules allow, or is unreachable), or the deadline passed; a ``quoted`` round names the
silent reachable couriers (``pending``), so dispatch quotes again rather than end the order when its
options run out while they might still answer.

Bad input is parked with a reason, never dropped: a body that fails its schema is refused by the
decoder, and an answer that names an unknown delivery, a courier that was not asked, or a request we
did not send raises :class:`~system.messaging.MalformedMessage` in the handler.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from system.domain.dialects import CourierMessageInvalid
from system.domain.marketplace import Marketplace
from system.domain.quoting import Quote, QuoteDeclined, parse_quote_answer
from system.domain.retailers import RetailerRules
from system.logs import get_logger
from system.messaging import MalformedMessage
from system.messaging.envelope import InboundMessage
from system.platform.contracts import (
    CancelRequested,
    OrderCreated,
    QuotingInput,
    RequoteRequested,
    decode_order,
    decode_quoting_input,
)
from system.platform.retailers import RetailerRegistry, RetailersUnavailable
from system.platform.runtime import ServiceRuntime

from . import store
from .decide import (
    Answer,
    NoCourier,
    Quoted,
    Round,
    RoundStatus,
    couriers_to_ask,
    decide,
    decision_messages,
    quote_request,
    quote_request_id,
    request_round,
)
from .settings import QuotingSettings

log = get_logger(__name__)

__all__ = [
    "CourierAnswer",
    "Quoting",
    "RegistryRules",
    "RulesSource",
    "decode_answer",
    "decode_order",
    "decode_quoting_input",
]


@dataclass(frozen=True)
class CourierAnswer:
    """A ``quote`` / ``quote_declined`` with what matches it to its round."""

    answer: Quote | QuoteDeclined
    delivery_id: str
    in_reply_to: str


def decode_answer(body: bytes) -> CourierAnswer:
    """Validate a courier's answer (docs/intake-api.md §3.2); raises :class:`CourierMessageInvalid`."""
    try:
        doc: Any = json.loads(body)
    except ValueError as exc:
        raise CourierMessageInvalid(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CourierMessageInvalid("an answer must be a JSON object")
    answer = parse_quote_answer(doc)
    delivery_id, in_reply_to = doc.get("delivery_id"), doc.get("in_reply_to")
    if not isinstance(delivery_id, str) or not delivery_id:
        raise CourierMessageInvalid(f"{doc.get('type')} from {answer.courier!r} has no delivery_id")
    if not isinstance(in_reply_to, str) or not in_reply_to:
        raise CourierMessageInvalid(f"{doc.get('type')} from {answer.courier!r} has no in_reply_to")
    return CourierAnswer(answer, delivery_id, in_reply_to)


class RulesSource(Protocol):
    """Where a retailer's marketplace rules come from."""

    def rules_for(self, retailer_id: str) -> RetailerRules:
        """The rules of ``retailer_id`` (the defaults when it is unknown)."""
        ...


class RegistryRules:
    """Rules from the retailers file (intake's registry, read-only: reloaded when the file changes).

    An unknown retailer, or a file that cannot be read, gets the default rules and a warning: the order
    is already accepted, and refusing to quote it would strand it, while the default rules only widen
    the choice of couriers.
    """

    def __init__(self, path: Path, reload_every_s: float = 1.0) -> None:
        self._registry = RetailerRegistry(path, reload_every_s)

    def rules_for(self, retailer_id: str) -> RetailerRules:
        """The retailer's rules, or the defaults (logged)."""
        try:
            retailer = self._registry.by_id(retailer_id)
        except RetailersUnavailable as exc:
            log.warning(
                "retailers file unusable: default rules",
                extra={"retailer_id": retailer_id, "error": str(exc)},
            )
            return RetailerRules()
        if retailer is None:
            log.warning("unknown retailer: default rules", extra={"retailer_id": retailer_id})
            return RetailerRules()
        return retailer.rules


class Quoting:
    """The quoting service's behaviour, independent of the process around it."""

    def __init__(
        self,
        settings: QuotingSettings,
        market: Marketplace,
        rules: RulesSource,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.market = market
        self.rules = rules
        self.clock = clock

    # -- quoting.orders ----------------------------------------------------------------------------

    async def on_order(self, db: aiosqlite.Connection, message: InboundMessage[QuotingInput]) -> None:
        """``order.created`` starts a round; a cancel stops one; dispatch's requote starts the next round;
        other updates change nothing here."""
        order = message.payload
        if isinstance(order, OrderCreated):
            await self._start_round(db, order, message.message_id)
        elif isinstance(order, CancelRequested):
            await self._cancel(db, order, message.message_id)
        elif isinstance(order, RequoteRequested):
            await self._requote(db, order, message.message_id)
        else:
            log.debug(
                "order update ignored",
                extra={"message_id": message.message_id, "delivery_id": order.delivery_id},
            )

    def book_by(self, order: OrderCreated, now: float) -> float:
        """The order's deadline: the end of its pickup window, or ``booking_deadline_s`` after intake
        accepted it, whichever comes first (a courier found later is of no use to the retailer)."""
        accepted = order.accepted_at.timestamp() if order.accepted_at is not None else now
        return min(order.request.pickup_window.end.timestamp(), accepted + self.settings.booking_deadline_s)

    async def _start_round(self, db: aiosqlite.Connection, order: OrderCreated, message_id: str) -> None:
        now = self.clock()
        d = order.delivery_id
        if await store.get_round(db, d) is not None:
            log.info("round already started", extra={"message_id": message_id, "delivery_id": d})
            return
        rules = self.rules.rules_for(order.retailer_id)
        cancelled = await store.cancelled_early(db, d)
        asked = (
            () if cancelled else couriers_to_ask(self.market, order.request, rules, self.settings.max_asked)
        )
        round_ = Round(
            delivery_id=d,
            order_reference=order.order_reference,
            retailer_id=order.retailer_id,
            request=order.request,
            rules=rules,
            asked=asked,
            deadline_at=now + self.settings.quote_deadline_s,
            status=RoundStatus.CANCELLED if cancelled else RoundStatus.COLLECTING,
            book_by=self.book_by(order, now),
        )
        await store.insert_round(db, round_, now)
        if cancelled:
            log.info(
                "order cancelled before quoting: no round", extra={"message_id": message_id, "delivery_id": d}
            )
            return
        await self._ask(db, round_, asked, now)
        log.info(
            "quote round started",
            extra={
                "message_id": message_id,
                "delivery_id": d,
                "asked": list(asked),
                "deadline_at": round_.deadline_at,
                "book_by": round_.book_by,
            },
        )
        if not asked:
            await self._decide(db, round_, now)  # nobody to wait for: no_courier now

    async def _ask(
        self, db: aiosqlite.Connection, round_: Round, couriers: tuple[str, ...], now: float
    ) -> None:
        """Queue ask ``round_.attempt`` of ``round_`` to ``couriers``. A request still queued at the ask's
        deadline is worthless (the round moves on without it): the broker drops it (per-message TTL), so
        a courier that is down or never consumes does not pile up requests."""
        ttl_ms = int(self.settings.ask_wait_s(round_.attempt) * 1000)
        await store.note_asked(
            db,
            {c: quote_request_id(round_.delivery_id, c, round_.attempt, round_.round_no) for c in couriers},
            now,
        )
        for courier in couriers:
            await store.add_once(
                db,
                quote_request(
                    round_.delivery_id,
                    round_.request,
                    courier,
                    ttl_ms=ttl_ms,
                    attempt=round_.attempt,
                    round_no=round_.round_no,
                ),
            )

    async def _requote(self, db: aiosqlite.Connection, req: RequoteRequested, message_id: str) -> None:
        """Dispatch ran out of options of round ``req.round`` for transient reasons: round ``req.round + 1``
        asks the couriers again (not those that refused the order for good), once."""
        d, now = req.delivery_id, self.clock()
        context = {"message_id": message_id, "delivery_id": d, "round": req.round}
        round_ = await store.get_round(db, d)
        if round_ is None:
            raise MalformedMessage(f"requote of {d!r}, which quoting never quoted")
        if round_.round_no != req.round or round_.status is not RoundStatus.QUOTED:
            log.info("requote already handled", extra={**context, "status": round_.status.value})
            return
        refused = set(req.refused) | await store.declined(db, d)
        refused |= await store.unreachable(db, round_.asked, self.settings.courier_down_after_s, now)
        asked = tuple(c for c in round_.asked if c not in refused)
        deadline = now + self.settings.quote_deadline_s
        if not await store.start_next_round(db, round_, asked, deadline):
            log.info("requote already handled", extra=context)
            return
        nxt = replace(
            round_,
            asked=asked,
            deadline_at=deadline,
            status=RoundStatus.COLLECTING,
            attempt=1,
            round_no=round_.round_no + 1,
        )
        log.warning(
            "quoting again",
            extra={**context, "next_round": nxt.round_no, "reason": req.reason, "asked": list(asked)},
        )
        if not asked or now >= nxt.book_by:
            await self._decide(db, nxt, now)  # nobody left to ask, or too late: no_courier now
            return
        await self._ask(db, nxt, asked, now)

    async def _cancel(self, db: aiosqlite.Connection, order: CancelRequested, message_id: str) -> None:
        d, now = order.delivery_id, self.clock()
        round_ = await store.get_round(db, d)
        if round_ is None:
            await store.remember_cancel(db, d, message_id, now)
            log.info(
                "cancel before the order: remembered", extra={"message_id": message_id, "delivery_id": d}
            )
        elif await store.close_round(db, d, RoundStatus.CANCELLED, now, order.reason or "cancelled"):
            log.info(
                "round cancelled before its decision", extra={"message_id": message_id, "delivery_id": d}
            )
        else:
            # Decided already: dispatch acts on the cancel (it consumes the same message).
            log.info(
                "cancel after the decision: nothing to do here",
                extra={"message_id": message_id, "delivery_id": d, "status": round_.status.value},
            )

    # -- quoting.answers ---------------------------------------------------------------------------

    async def on_answer(self, db: aiosqlite.Connection, message: InboundMessage[CourierAnswer]) -> None:
        """Record a courier's answer against its round; decide when the last asked courier answered."""
        a = message.payload
        courier, d = a.answer.courier, a.delivery_id
        round_ = await store.get_round(db, d)
        if round_ is None:
            raise MalformedMessage(f"answer for unknown delivery {d!r} from courier {courier!r}")
        replied = request_round(d, courier, a.in_reply_to)
        if courier not in round_.asked and (replied is None or replied[0] >= round_.round_no):
            raise MalformedMessage(f"answer from courier {courier!r}, which was not asked to quote {d!r}")
        # An answer to any ask of this round counts (a late answer to the first ask, during the second);
        # an answer to an earlier round's request is stale (that round was decided), not malformed.
        if replied is None or replied > (round_.round_no, round_.attempt):
            raise MalformedMessage(
                f"answer from {courier!r} for {d!r} replies to {a.in_reply_to!r}, not to our request "
                f"{quote_request_id(d, courier, 1, round_.round_no)!r} or a later ask of it"
            )
        now = self.clock()
        context = {"message_id": message.message_id, "delivery_id": d, "courier": courier}
        if replied[0] < round_.round_no:
            await store.note_answer(db, courier, a.in_reply_to, now)
            log.info("answer to an earlier round ignored", extra={**context, "round": replied[0]})
            return
        await store.note_answer(db, courier, a.in_reply_to, now)
        late = round_.status is not RoundStatus.COLLECTING
        if not await store.record_answer(
            db, d, round_.round_no, message.message_id, a.answer, late=late, now=now
        ):
            log.info("second answer from a courier ignored", extra=context)
            return
        if late:
            log.info(
                "late answer recorded, round already decided",
                extra={**context, "status": round_.status.value},
            )
            return
        answered = {x.courier for x in await store.answers_in_time(db, d, round_.round_no)}
        if set(round_.asked) <= answered:
            await self._decide(db, round_, now)

    # -- deadlines ---------------------------------------------------------------------------------

    async def sweep(self, runtime: ServiceRuntime) -> None:
        """Decide the rounds whose deadline passed (one transaction per batch); a read first, so that a
        sweep with nothing due takes no write lock."""
        async with runtime.reading() as db:
            if not await store.due_rounds(db, self.clock(), 1):
                return
        async with runtime.transaction() as db:
            await self.decide_due(db)

    async def decide_due(self, db: aiosqlite.Connection) -> int:
        """Decide every collecting round past its deadline (up to the batch size), or ask its silent
        couriers again; how many were decided."""
        now = self.clock()
        decided = 0
        for d in await store.due_rounds(db, now, self.settings.sweep_batch):
            round_ = await store.get_round(db, d)
            if round_ is None:
                continue
            if await self._ask_silent_again(db, round_, now):
                continue
            if await self._decide(db, round_, now):
                decided += 1
        return decided

    async def _silent(
        self, db: aiosqlite.Connection, round_: Round, now: float
    ) -> tuple[list[Answer], set[str], set[str]]:
        """(answers in time, silent couriers, the silent ones that are unreachable)."""
        answers = await store.answers_in_time(db, round_.delivery_id, round_.round_no)
        silent = set(round_.asked) - {a.courier for a in answers}
        down = await store.unreachable(db, silent, self.settings.courier_down_after_s, now)
        return answers, silent, down

    async def _ask_silent_again(self, db: aiosqlite.Connection, round_: Round, now: float) -> bool:
        """No suitable quote yet and asked couriers silent at the deadline: ask the reachable ones again (new
        request ids, the next ask waiting twice as long, capped) until the order's deadline.

        Silence is a transport problem, not a refusal: couriers reconnecting after a broker outage,
        requests expired in a backlog, couriers cut off by a partition. Giving up at once ended every order
        accepted during the demo's full outage without a courier; giving up after a fixed number of asks
        ended those of a long enough fault the same way. Only a courier that stays silent while others
        answer is down (unreachable), and counts as a refusal."""
        if not round_.asked or now >= round_.book_by:
            return False
        answers, silent, down = await self._silent(db, round_, now)
        again = tuple(c for c in round_.asked if c in silent - down)
        if not again or isinstance(decide(round_, answers, store.utc(now), self.market), Quoted):
            return False
        attempt = round_.attempt + 1
        wait = self.settings.ask_wait_s(attempt)
        if not await store.ask_again(db, round_, min(now + wait, round_.book_by)):
            return False
        await self._ask(db, replace(round_, attempt=attempt), again, now)
        log.warning(
            "couriers silent: asking them again",
            extra={
                "delivery_id": round_.delivery_id,
                "round": round_.round_no,
                "attempt": attempt,
                "wait_s": wait,
                "silent": list(again),
                "unreachable": sorted(down),
                "answered": len(answers),
            },
        )
        return True

    async def _decide(self, db: aiosqlite.Connection, round_: Round, now: float) -> bool:
        """Rank what arrived in time and publish the outcome, once (False: decided or cancelled already)."""
        answers, silent, down = await self._silent(db, round_, now)
        at = store.utc(now)
        decision = decide(round_, answers, at, self.market)
        if isinstance(decision, Quoted):
            decision = replace(decision, pending=tuple(c for c in round_.asked if c in silent - down))
        else:
            if down:
                decision = NoCourier(
                    f"{decision.reason} ({len(down)} unreachable: {', '.join(sorted(down))})"
                )
            if now >= round_.book_by:
                decision = NoCourier(f"the order's deadline passed; {decision.reason}")
        if isinstance(decision, Quoted):
            status, outcome = RoundStatus.QUOTED, ",".join(q.courier for q in decision.options)
        else:
            status, outcome = RoundStatus.NO_COURIER, decision.reason
        if not await store.close_round(db, round_.delivery_id, status, now, outcome, round_.round_no):
            return False
        for m in decision_messages(round_, decision, at):
            await store.add_once(db, m)
        log.info(
            "quote round decided",
            extra={
                "delivery_id": round_.delivery_id,
                "round": round_.round_no,
                "status": status.value,
                "answers": len(answers),
                "asked": len(round_.asked),
                "outcome": outcome,
                "reason": decision.reason if isinstance(decision, NoCourier) else None,
                "pending": list(decision.pending) if isinstance(decision, Quoted) else None,
            },
        )
        return True
