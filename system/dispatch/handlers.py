"""Dispatch's decoders, handlers (``dispatch.quotes``, ``dispatch.orders``, ``dispatch.answers``) and the
booking-deadline sweep. Each handler loads the job, asks :mod:`.decide` what the event does, and saves
the new job with the effects' outbox rows, inside the consumer's open transaction (never committing).

Bad input is parked with a reason: a body that fails its schema is refused by the decoder; an answer
replying to a request dispatch never sent, or naming another courier or quote than that request, raises
:class:`~system.messaging.MalformedMessage`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from system.domain.dialects import (
    BookingAnswer,
    CancelAnswer,
    CourierMessageInvalid,
    parse_booking_answer,
    parse_cancel_answer,
)
from system.logs import get_logger
from system.messaging import MalformedMessage
from system.messaging.envelope import InboundMessage
from system.platform.contracts import CancelRequested, DeliveryQuoted, Driver, OrderMessage, decode_order
from system.platform.runtime import ServiceRuntime

from . import store
from .decide import (
    CancelJob,
    Decision,
    Job,
    Reply,
    cancel_request_id,
    on_booking_answer,
    on_cancel,
    on_quoted,
    on_timeout,
)
from .messages import effect_message
from .settings import DispatchSettings

log = get_logger(__name__)

__all__ = ["CancelReply", "Dispatch", "decode_answer", "decode_order", "decode_quoted"]


def decode_quoted(body: bytes) -> DeliveryQuoted:
    """Quoting's ``delivery.quoted`` (raises, so the consumer parks it, when invalid)."""
    return DeliveryQuoted.model_validate_json(body)


@dataclass(frozen=True)
class CancelReply:
    """A courier's answer to a cancel request, with the request id it replies to (when it says)."""

    answer: CancelAnswer
    in_reply_to: str | None


def decode_answer(body: bytes) -> BookingAnswer | CancelReply:
    """A booking or cancel answer (docs/intake-api.md §3.3, §3.4); raises :class:`CourierMessageInvalid`."""
    try:
        doc: Any = json.loads(body)
    except ValueError as exc:
        raise CourierMessageInvalid(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CourierMessageInvalid("an answer must be a JSON object")
    kind = doc.get("type")
    if kind in ("booking_accepted", "booking_rejected"):
        booking = parse_booking_answer(doc)
        if not booking.in_reply_to:
            raise CourierMessageInvalid(f"{kind} from {booking.courier!r} has no in_reply_to")
        return booking
    if kind in ("cancel_accepted", "cancel_rejected"):
        reply_to = doc.get("in_reply_to")
        return CancelReply(
            parse_cancel_answer(doc), reply_to if isinstance(reply_to, str) and reply_to else None
        )
    raise CourierMessageInvalid(f"not a booking or cancel answer: type {kind!r}")


class Dispatch:
    """The dispatch service's behaviour, independent of the process around it."""

    def __init__(self, settings: DispatchSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock

    async def _apply(
        self,
        db: aiosqlite.Connection,
        old: Job | None,
        decision: Decision,
        now: float,
        message_id: str | None,
    ) -> None:
        new = decision.job
        context = {"message_id": message_id, "delivery_id": new.delivery_id, "note": decision.note}
        if old is not None and new == old and not decision.effects:
            log.info("nothing to change", extra=context)
            return
        await store.save(db, old, new, now)
        at = store.utc(now)
        for effect in decision.effects:
            if isinstance(effect, CancelJob):
                await store.record_cancel(
                    db,
                    cancel_request_id(new.delivery_id, effect.courier_job_id),
                    new.delivery_id,
                    effect.courier,
                    effect.courier_job_id,
                    effect.why,
                    now,
                )
            await store.add_once(db, effect_message(new, effect, at))
        log.info(
            "job updated", extra={**context, "status": new.status.value, "effects": len(decision.effects)}
        )

    # -- dispatch.quotes ---------------------------------------------------------------------------

    async def on_quoted(self, db: aiosqlite.Connection, message: InboundMessage[DeliveryQuoted]) -> None:
        """Quoting's ranked options: start booking them (unless the order was cancelled first)."""
        q = message.payload
        now = self.clock()
        job = await store.load_job(db, q.delivery_id)
        decision = on_quoted(
            job,
            q.delivery_id,
            q.order_reference,
            q.retailer_id,
            q.options,
            store.utc(now),
            timeout_s=self.settings.booking_timeout_s,
            round_=q.round,
            book_by=q.book_by.timestamp() if q.book_by is not None else math.inf,
            pending=q.pending,
        )
        await self._apply(db, job, decision, now, message.message_id)

    # -- dispatch.orders ---------------------------------------------------------------------------

    async def on_order(self, db: aiosqlite.Connection, message: InboundMessage[OrderMessage]) -> None:
        """A cancel stops or undoes the booking; other order updates change nothing here."""
        order = message.payload
        if not isinstance(order, CancelRequested):
            log.debug(
                "order update ignored",
                extra={"message_id": message.message_id, "delivery_id": order.delivery_id},
            )
            return
        job = await store.load_job(db, order.delivery_id)
        decision = on_cancel(job, order.delivery_id, order.order_reference)
        await self._apply(db, job, decision, self.clock(), message.message_id)

    # -- dispatch.answers --------------------------------------------------------------------------

    async def on_answer(
        self, db: aiosqlite.Connection, message: InboundMessage[BookingAnswer | CancelReply]
    ) -> None:
        """A courier's booking or cancel answer, matched to our request by in_reply_to."""
        if isinstance(message.payload, CancelReply):
            await self._on_cancel_answer(db, message.payload, message.message_id)
        else:
            await self._on_booking_answer(db, message.payload, message.message_id)

    async def _on_booking_answer(self, db: aiosqlite.Connection, ans: BookingAnswer, message_id: str) -> None:
        request_id = ans.in_reply_to or ""
        found = await store.find_attempt(db, request_id)
        if found is None:
            raise MalformedMessage(
                f"{ans.type} from {ans.courier!r} replies to {request_id!r}, a booking request dispatch did not send"
            )
        delivery_id, number, courier, quote_id = found
        if ans.courier != courier or ans.quote_id != quote_id:
            raise MalformedMessage(
                f"{ans.type} for {request_id!r} names courier {ans.courier!r} and quote {ans.quote_id!r};"
                f" the request went to {courier!r} for quote {quote_id!r}"
            )
        job = await store.load_job(db, delivery_id)
        if job is None:  # attempts are written with their job: only a damaged DB gets here
            raise MalformedMessage(f"booking answer for {delivery_id!r}, which has no job")
        driver = Driver(id=ans.driver.id, vehicle=ans.driver.vehicle) if ans.driver is not None else None
        reply = Reply(
            accepted=ans.accepted, courier_job_id=ans.courier_job_id, driver=driver, reason=ans.reason
        )
        now = self.clock()
        decision = on_booking_answer(
            job,
            number,
            reply,
            store.utc(now),
            timeout_s=self.settings.booking_timeout_s,
            give_up_on_expired=self.settings.test_give_up_on_expired_quote,
        )
        await self._apply(db, job, decision, now, message_id)

    async def _on_cancel_answer(self, db: aiosqlite.Connection, reply: CancelReply, message_id: str) -> None:
        ans = reply.answer
        found = await store.find_cancel(db, reply.in_reply_to, ans.courier_job_id)
        if found is None:
            raise MalformedMessage(
                f"{ans.type} from {ans.courier!r} for job {ans.courier_job_id!r} replies to a cancel request"
                f" dispatch did not send ({reply.in_reply_to!r})"
            )
        request_id, delivery_id, courier, _ = found
        if ans.courier != courier:
            raise MalformedMessage(
                f"{ans.type} for {request_id!r} comes from {ans.courier!r}, not {courier!r}"
            )
        accepted = ans.type == "cancel_accepted"
        fresh = await store.settle_cancel(db, request_id, accepted, ans.reason, self.clock())
        context = {
            "message_id": message_id,
            "delivery_id": delivery_id,
            "courier": courier,
            "courier_job_id": ans.courier_job_id,
            "reason": ans.reason,
        }
        if not fresh:
            log.info("repeated cancel answer", extra=context)
        elif accepted:
            log.info("courier job cancelled", extra=context)
        else:
            # The courier keeps the job (e.g. too_late:picked_up): tracking follows its statuses.
            log.warning("courier refused the cancel", extra=context)

    # -- booking deadlines -------------------------------------------------------------------------

    async def sweep(self, runtime: ServiceRuntime) -> None:
        """Act on the booking attempts past their deadline (one transaction per batch); a read first, so
        that a sweep with nothing due takes no write lock."""
        async with runtime.reading() as db:
            if not await store.due_attempts(db, self.clock(), 1, self.settings.booking_timeout_s):
                return
        async with runtime.transaction() as db:
            await self.time_out_due(db)

    async def time_out_due(self, db: aiosqlite.Connection) -> int:
        """Ask again, or time out and move the job on, for each pending attempt past its deadline; how
        many were acted on."""
        now = self.clock()
        count = 0
        for delivery_id, number in await store.due_attempts(
            db, now, self.settings.sweep_batch, self.settings.booking_timeout_s
        ):
            job = await store.load_job(db, delivery_id)
            if job is None:
                continue
            decision = on_timeout(
                job,
                number,
                store.utc(now),
                timeout_s=self.settings.booking_timeout_s,
                max_asks=self.settings.booking_asks,
            )
            await self._apply(db, job, decision, now, None)
            count += 1
        return count
