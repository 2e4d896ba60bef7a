"""The sender: a sweep on every replica that claims due notifications and posts them to the provider.

Up to ``batch_size`` posts are in flight per replica. Rows are claimed in short transactions whenever
there is room (a send finished, or every ``send_period_s``), posted with no transaction open (a slow
provider must not hold the SQLite write lock), and each answer is recorded in its own short
transaction as soon as it comes: ``sent``, ``failed`` with the reason, or due again after a capped
backoff. One slow answer never holds up the others. The sweep returns once nothing is in flight and
nothing is due; stopping the service cancels what is in flight, and those rows, still claimed, are
sent again (same notification_id) once their claim expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from system.logs import get_logger

from . import store
from .decide import retry_delay
from .providers import Provider, Refused, RetryLater, SendOutcome, Sent
from .settings import NotificationsSettings

if TYPE_CHECKING:
    from system.platform.runtime import ServiceRuntime

log = get_logger(__name__)


class Sender:
    """The sweep (``runtime.every(settings.send_period_s, sender)``)."""

    def __init__(self, settings: NotificationsSettings, provider: Provider, owner: str) -> None:
        self.settings = settings
        self.provider = provider
        self.owner = owner

    async def __call__(self, runtime: ServiceRuntime) -> None:
        """Keep up to ``batch_size`` sends in flight until nothing is in flight and nothing is due (a read
        first: an idle sender takes no write lock)."""
        async with runtime.reading() as db:
            if not await store.any_due(db, time.time()):
                return
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                room = self.settings.batch_size - len(in_flight)
                if room > 0:
                    async with runtime.transaction() as db:
                        claimed = await store.claim_due(
                            db, self.owner, time.time(), self.settings.claim_s, room
                        )
                    in_flight |= {asyncio.create_task(self._send_one(runtime, c)) for c in claimed}
                if not in_flight:
                    return
                done, in_flight = await asyncio.wait(
                    in_flight, timeout=self.settings.send_period_s, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        # recording the answer failed (a locked DB...): the claim expires, it is resent
                        log.error("recording a send failed", exc_info=task.exception())
        finally:
            for task in in_flight:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _send_one(self, runtime: ServiceRuntime, claimed: store.Claimed) -> None:
        try:
            outcome: SendOutcome = await self.provider.send(claimed.body)
        except Exception as exc:  # a provider bug must not end the round: the row is retried
            log.exception("provider raised", extra={"notification_id": claimed.notification_id})
            outcome = RetryLater(f"provider raised {exc!r}"[:300])
        await self.record(runtime, claimed, outcome)

    async def record(self, runtime: ServiceRuntime, claimed: store.Claimed, outcome: SendOutcome) -> None:
        """Write the provider's answer for one claimed row."""
        nid = claimed.notification_id
        now = time.time()
        async with runtime.transaction() as db:
            if isinstance(outcome, Sent):
                await store.mark_sent(db, nid, now, outcome.answer)
            elif isinstance(outcome, Refused):
                await store.mark_failed(db, nid, outcome.reason)
            else:
                delay = retry_delay(
                    claimed.attempts,
                    self.settings.backoff_initial_s,
                    self.settings.backoff_max_s,
                    outcome.retry_after_s,
                )
                await store.mark_retry(db, nid, self.owner, now + delay, outcome.reason)
        extra = {
            "notification_id": nid,
            "delivery_id": claimed.body.get("delivery_id"),
            "state": claimed.body.get("state"),
            "audience": claimed.body.get("audience"),
            "channel": claimed.body.get("channel"),
            "attempts": claimed.attempts,
        }
        if isinstance(outcome, Sent):
            log.info("notification sent", extra={**extra, "answer": outcome.answer})
        elif isinstance(outcome, Refused):
            log.error(
                "notification refused by the provider: marked failed",
                extra={**extra, "reason": outcome.reason},
            )
        else:
            log.warning("notification not sent; will retry", extra={**extra, "reason": outcome.reason})
