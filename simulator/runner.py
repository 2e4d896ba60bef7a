"""A simulation run: plays the scenario's orders against the platform and keeps the ledger.

The order stream is open-loop: orders leave at their planned times whatever the platform does (a slow
platform does not slow the offered load, as with real retailers), up to ``sender.concurrency`` requests
in flight; beyond that they wait in a backlog of at most ``sender.max_backlog`` orders, after which
the generator itself waits (the lag is recorded per order as ``lag_s``).

Per order: the create request(s) (with retries of unknown outcomes reusing the same key, and of shed
answers — ``503`` + ``Retry-After`` — after the delay the platform asked for), a duplicate delivery for
webhooks when the order is marked so, and the customer's cancellation when it is due before the end of
the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

import rundir
from simulator.channels.base import WireRequest
from simulator.channels.encoders import Encoders
from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.courier_amqp import CourierAmqpAdapter
from simulator.courier_desk import CourierDesk, Outgoing
from simulator.couriers import Quote
from simulator.ledger import Ledger
from simulator.notify import notification_app
from simulator.orders import OrderGenerator, OrderSpec
from simulator.plan import suitable
from simulator.sender import Answer, HttpSender
from simulator.world import Retailer, apply_secrets_file, build_retailers, write_retailers_file


@dataclass
class Counters:
    """Running counts shown on the progress line (per order, from its create request's final answer)."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    unknown: int = 0
    delivered: int = 0
    duplicates: int = 0
    cancels: int = 0
    inflight: int = 0
    requests: int = 0
    shed: int = 0  # shed answers (503 + Retry-After), every request kind and attempt
    given_up_shed: int = 0  # orders given up after their create request was shed, attempt after attempt


@dataclass
class RunSummary:
    """What a run did; written to ``<run>/simulator/summary.json``."""

    seed: int
    scenario: str
    duration_s: float
    orders: int
    counts: dict[str, int]
    orders_digest: str
    wall_s: float
    max_lag_s: float
    offered: list[tuple[float, float, int]] = field(default_factory=list)  # (run_s, offered rate, sent in s)


#: Written into the simulator's directory (with its PID) once a ``hold_receiver`` run is over and only
#: the notification receiver is still up, waiting for SIGINT/SIGTERM.
HOLDING_MARKER = rundir.RECEIVER_HOLDING.name


def format_progress(run_s: float, offered: float, rate: float, c: Counters) -> str:
    """The live progress line."""
    line = (
        f"t={run_s:6.1f}s offered={offered:7.1f}/s rate={rate:7.1f}/s sent={c.sent} accepted={c.accepted} "
        f"rejected={c.rejected} unknown={c.unknown} delivered={c.delivered} dup={c.duplicates} "
        f"inflight={c.inflight}"
    )
    if c.shed or c.given_up_shed:
        line += f" shed={c.shed} given_up_shed={c.given_up_shed}"
    return line


class Runner:
    """One run of a scenario against ``target`` (base URL of the platform's intake)."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        target: str,
        run_dir: Path,
        duration_s: float | None = None,
        retailers_file: Path | None = None,
        progress: Callable[[str], None] | None = None,
        notify_listen: tuple[str, int] | None = None,
        progress_every_s: float = 1.0,
        amqp_url: str | None = None,
        linger_s: float = 0.0,
        settle_s: float = 5.0,
        hold_receiver: bool = False,
    ) -> None:
        """``hold_receiver``: once the run is over (couriers idle or the linger's cap), keep the notification
        receiver — the customers' phones — up until SIGINT/SIGTERM (see :meth:`_hold`)."""
        self.scenario = scenario
        self.hold_receiver = hold_receiver
        self.linger_s = linger_s
        self.settle_s = settle_s
        self._notifications_received = 0
        #: every order played, by reference (the couriers' quotes are judged against its retailer's rules)
        self._orders: dict[str, OrderSpec] = {}
        self.desk: CourierDesk | None = None
        self.seed = seed
        self.target = target
        self.dir = run_dir / rundir.SIMULATOR_DIR
        self.duration = duration_s if duration_s is not None else scenario.duration_s
        self.progress = progress
        self.notify_listen = notify_listen
        self.progress_every_s = progress_every_s
        self.amqp_url = amqp_url
        retailers = build_retailers(seed, scenario)
        if retailers_file is None:
            retailers_file = run_dir / rundir.SIMULATOR_RETAILERS
            write_retailers_file(retailers_file, seed, retailers)
        else:
            retailers = apply_secrets_file(retailers_file, retailers)
        self.retailers_file = retailers_file
        self.retailers: dict[str, Retailer] = {r.id: r for r in retailers}
        self.generator = OrderGenerator(scenario, seed, retailers)
        self.counters = Counters()
        self._delivered: set[str] = set()
        self._uncounted: set[str] = set()  # orders sent whose final outcome is not counted yet
        self._max_lag = 0.0
        self._sem = asyncio.Semaphore(scenario.sender.concurrency)
        self._t0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        # Jitter of the waits after a shed answer: seeded, but apart from the order plan's generator.
        self._jitter = random.Random(f"shed-{seed}")

    def run_s(self) -> float:
        """Wall seconds since the start of the run."""
        assert self._loop is not None
        return self._loop.time() - self._t0

    # --- per order -----------------------------------------------------------------------------

    async def _send(
        self, led: Ledger, sender: HttpSender, o: OrderSpec, req: WireRequest, kind: str, attempt: int,
        extra: dict[str, Any],
    ) -> Answer:  # fmt: skip
        try:
            await self._sem.acquire()
        except asyncio.CancelledError:
            if kind == "order" and attempt == 1:
                # Generated but still queued behind a slow platform when the run ended: never sent.
                led.write("order_not_sent", o.ref, channel=o.channel, reason="run ended while queued")
            raise
        try:
            if kind == "order" and attempt == 1:
                self.counters.sent += 1
                self._uncounted.add(o.ref)
            self.counters.requests += 1
            req_no = self.counters.requests
            self.counters.inflight += 1
            led.write(f"{kind}_sent", o.ref, req=req_no, attempt=attempt, channel=o.channel, key=req.key,
                      retailer=o.retailer_id, bytes=len(req.body), **extra)  # fmt: skip
            try:
                ans = await sender.send(req)
            except asyncio.CancelledError:
                # The run ended with this request in flight: its outcome is unknown, and says so.
                led.write(f"{kind}_answer", o.ref, req=req_no, attempt=attempt, channel=o.channel,
                          outcome="unknown", http_status=None, delivery_id=None,
                          error="run ended before the answer", latency_ms=None)  # fmt: skip
                raise
            finally:
                self.counters.inflight -= 1
            if ans.outcome == "shed":
                # Not an answer to the order: the platform asked to be asked again (nothing stored).
                self.counters.shed += 1
                led.write(f"{kind}_shed", o.ref, req=req_no, attempt=attempt, channel=o.channel, key=req.key,
                          http_status=ans.http_status, retry_after_s=ans.retry_after_s, reason=ans.reason,
                          latency_ms=ans.latency_ms)  # fmt: skip
                return ans
            led.write(f"{kind}_answer", o.ref, req=req_no, attempt=attempt, channel=o.channel,
                      outcome=ans.outcome, http_status=ans.http_status, delivery_id=ans.delivery_id,
                      error=ans.error, latency_ms=ans.latency_ms)  # fmt: skip
            return ans
        finally:
            self._sem.release()

    async def _send_retrying(
        self,
        led: Ledger,
        sender: HttpSender,
        o: OrderSpec,
        req: WireRequest,
        kind: str,
        extra: dict[str, Any],
    ) -> Answer:
        """Send ``req`` until it has an answer: unknown outcomes up to ``max_attempts`` times (backoff),
        shed answers again after their ``Retry-After`` until the shed budget is spent (then one
        ``<kind>_given_up_shed`` record: a shed request never silently vanishes)."""
        cfg = self.scenario.sender
        assert self._loop is not None
        first = self._loop.time()
        attempt = unknowns = sheds = 0
        while True:
            attempt += 1
            ans = await self._send(led, sender, o, req, kind, attempt, extra)
            if ans.outcome == "shed":
                sheds += 1
                wait = self.shed_wait(ans.retry_after_s or 0.0)
                waited = self._loop.time() - first
                why = None
                if not cfg.honour_retry_after:
                    why = "retries of shed requests are off"
                elif sheds >= cfg.shed_max_attempts:
                    why = f"shed {sheds} times"
                elif waited + wait > cfg.shed_give_up_s:
                    why = f"the next try would leave after the {cfg.shed_give_up_s:g}-s give-up deadline"
                if why is not None:
                    self._given_up(led, o, req, kind, attempt, sheds, ans, waited, why)
                    return ans
                try:
                    await asyncio.sleep(wait)
                except asyncio.CancelledError:
                    why = "the run ended while waiting to send it again"
                    self._given_up(led, o, req, kind, attempt, sheds, ans, self._loop.time() - first, why)
                    raise
                continue
            if ans.outcome != "unknown":
                return ans
            unknowns += 1
            if unknowns >= cfg.max_attempts:
                return ans
            await asyncio.sleep(cfg.retry_backoff_s * 2 ** (unknowns - 1))

    def shed_wait(self, retry_after_s: float) -> float:
        """How long to wait after a shed answer: ``Retry-After`` plus up to ``shed_jitter`` of it, at
        most ``shed_max_wait_s`` (and at least a tenth of a second: a ``0`` must not spin)."""
        cfg = self.scenario.sender
        wait = retry_after_s * (1.0 + cfg.shed_jitter * self._jitter.random())
        return max(0.1, min(cfg.shed_max_wait_s, wait))

    def _given_up(
        self, led: Ledger, o: OrderSpec, req: WireRequest, kind: str, attempts: int, sheds: int,
        last: Answer, waited_s: float, why: str,
    ) -> None:  # fmt: skip
        if kind == "order":
            self.counters.given_up_shed += 1
        led.write(f"{kind}_given_up_shed", o.ref, channel=o.channel, key=req.key, attempts=attempts,
                  shed=sheds, reason=last.reason, retry_after_s=last.retry_after_s,
                  waited_s=round(waited_s, 3), why=why)  # fmt: skip

    async def _play(
        self, led: Ledger, sender: HttpSender, encoders: Encoders, o: OrderSpec, offered: float
    ) -> None:
        r = self.retailers[o.retailer_id]
        self._orders[o.ref] = o
        enc = encoders.for_channel(o.channel)
        reqs = enc.encode_order(o, r)
        lag = max(0.0, self.run_s() - o.at)
        self._max_lag = max(self._max_lag, lag)
        delivery_id: str | None = None
        create: WireRequest | None = None
        c = self.counters
        for req in reqs:
            if req.kind == "order":
                create = req
                extra = {"at": round(o.at, 6), "lag_s": round(lag, 4), "offered_rate": round(offered, 3)}
                try:
                    ans = await self._send_retrying(led, sender, o, req, "order", extra)
                except asyncio.CancelledError:
                    if o.ref in self._uncounted:  # sent, then the run ended: its outcome is unknown
                        self._uncounted.discard(o.ref)
                        c.unknown += 1
                    raise
                self._uncounted.discard(o.ref)
                delivery_id = ans.delivery_id
                if ans.outcome == "accepted":
                    c.accepted += 1
                elif ans.outcome == "rejected":
                    c.rejected += 1
                elif ans.outcome == "shed":
                    # Given up after shed answers (counted in given_up_shed, its own record says so). The
                    # retailer was told no: it sends nothing more about this order (an ePOS update of it
                    # would create the delivery after all, an order the retailer had given up).
                    return
                else:
                    c.unknown += 1
            else:
                await self._send_retrying(led, sender, o, req, "update", {"out_of_order": o.out_of_order})
        if o.duplicate and create is not None:
            await asyncio.sleep(self.scenario.webhooks.duplicate_delay_s)
            c.duplicates += 1
            ans = await self._send(led, sender, o, create, "duplicate", 1, {"of_key": create.key})
            delivery_id = delivery_id or ans.delivery_id
        if o.cancel_after_s is not None:
            due = o.at + o.cancel_after_s / self.scenario.clock.compression
            if due >= self.duration:
                return  # the customer would cancel after the run: nothing to send
            await asyncio.sleep(max(0.0, due - self.run_s()))
            cancel = enc.encode_cancel(o, r, delivery_id)
            if cancel is not None:
                c.cancels += 1
                await self._send_retrying(led, sender, o, cancel, "cancel", {"delivery_id": delivery_id})

    def _retailer_accepts(self, ref: str, quote: Quote) -> bool | None:
        """The world's judgement of a quote: does the order's retailer's rules allow it (plan.suitable)?"""
        o = self._orders.get(ref)
        return None if o is None else suitable(quote, self.retailers[o.retailer_id], o)

    # --- the run -------------------------------------------------------------------------------

    def _seen_delivered(self, ref: object) -> None:
        # "delivered" counts orders the outside world saw delivered: a notification or the courier's status.
        if isinstance(ref, str) and ref not in self._delivered:
            self._delivered.add(ref)
            self.counters.delivered += 1

    def _on_notification(self, doc: dict[str, Any]) -> None:
        self._notifications_received += 1
        if doc.get("state") == "delivered":
            self._seen_delivered(doc.get("order_reference"))

    def _on_courier_published(self, out: Outgoing) -> None:
        if out.canonical == "delivered":
            self._seen_delivered(out.order_ref)

    async def _progress_loop(self, led: Ledger, offered: list[tuple[float, float, int]]) -> None:
        last_sent, last_t = 0, 0.0
        while True:
            await asyncio.sleep(self.progress_every_s)
            now = self.run_s()
            c = self.counters
            rate = (c.sent - last_sent) / max(1e-9, now - last_t)
            off = self.generator.arrivals.rate(min(now, self.duration))
            offered.append((round(now, 3), round(off, 3), c.sent - last_sent))
            last_sent, last_t = c.sent, now
            led.write("progress", None, run_s=round(now, 3), offered_rate=round(off, 3), sent_rate=round(rate, 3),
                      sent=c.sent, accepted=c.accepted, rejected=c.rejected, unknown=c.unknown,
                      delivered=c.delivered, inflight=c.inflight, shed=c.shed)  # fmt: skip
            led.flush()
            if self.progress is not None:
                self.progress(format_progress(now, off, rate, c))

    async def _linger(self, led: Ledger) -> None:
        """After the last order: keep the couriers and the notification receiver up until the couriers
        are idle (nothing scheduled, nothing still being published — a publish stuck behind a frozen
        node is not idle — and no request from the platform for ``settle_s``) and no
        notification arrived for as long, or ``linger_s`` has passed, so deliveries accepted near the
        end still run to their end and the customers hear of it. (Without the notifications in the
        quiet test, a courier's last status made the run idle while the platform was still sending
        that state's notifications: the receiver was gone, and the audit found one missing.)"""
        t_end = self.run_s() + self.linger_s
        led.write("linger_started", None, linger_s=self.linger_s, settle_s=self.settle_s)
        desk = self.desk
        idle = desk is None or await self._until_quiet(
            lambda: (desk.handled, self._notifications_received), lambda: not desk.idle(), t_end
        )
        if not idle and desk is not None:
            # A courier's last status sent just before the cut is still on its way to the customer: keep
            # the receiver up until notifications are quiet. (Seen in partition-halves: "delivered" sent
            # 0.2 s before the cut, processed by the platform 60 ms later, its notifications refused by a
            # receiver already gone, and the order counted lost.)
            await self._until_quiet(
                lambda: self._notifications_received, lambda: False, self.run_s() + 3 * self.settle_s
            )
            # The run ends while couriers still have deliveries under way: those orders are in flight at
            # the cut (the audit's "inflight"), not lost. Taken at the cut itself, after that wait: the
            # couriers kept taking bookings meanwhile (a freeze drill booked orders in those last seconds,
            # and a snapshot taken before them counted them lost). An order the platform dropped has
            # nothing scheduled here, so it stays unexplained.
            for ref in sorted(desk.pending_orders()):
                led.write(
                    "inflight", ref, flow="orders", reason="couriers still delivering when the run ended"
                )
        led.write("linger_finished", None, idle=idle)

    async def _until_quiet(self, state: Callable[[], object], busy: Callable[[], bool], until: float) -> bool:
        """Until ``state()`` stayed the same, and ``busy()`` false, for ``settle_s``: True; False when the
        run time ``until`` came first."""
        last, quiet_since = state(), self.run_s()
        while self.run_s() < until:
            await asyncio.sleep(0.25)
            now = state()
            if now != last or busy():
                last, quiet_since = now, self.run_s()
            elif self.run_s() - quiet_since >= self.settle_s:
                return True
        return False

    async def run(self) -> RunSummary:
        """Play the scenario for the duration; returns the summary (also written as JSON)."""
        self._loop = asyncio.get_running_loop()
        led = Ledger.open(self.dir / rundir.SIMULATOR_LEDGER.name)
        wall0 = time.time()
        clock = SimClock.from_config(self.scenario.clock, epoch=float(int(wall0)))
        encoders = Encoders(clock)
        cfg = self.scenario.sender
        digest = hashlib.sha256()
        n = 0
        runner_site: web.AppRunner | None = None
        adapter: CourierAmqpAdapter | None = None
        if self.amqp_url is not None:
            desk = self.desk = CourierDesk(
                self.seed, self.scenario, clock, led, retailer_accepts=self._retailer_accepts
            )
            adapter = CourierAmqpAdapter(
                self.amqp_url, desk, led, self.run_s, on_published=self._on_courier_published
            )
        led.write("run_started", None, seed=self.seed, scenario=self.scenario.name, target=self.target,
                  duration_s=self.duration, compression=self.scenario.clock.compression, epoch=clock.epoch,
                  rate=self.scenario.arrivals.rate, retailers_file=str(self.retailers_file))  # fmt: skip
        offered: list[tuple[float, float, int]] = []
        tasks: set[asyncio.Task[None]] = set()
        prog: asyncio.Task[None] | None = None
        # Past the end, in-flight requests get their full timeout(s) before the run gives up on them.
        base_grace: float = cfg.timeout_s * cfg.max_attempts + cfg.retry_backoff_s * 2**cfg.max_attempts + 2.0
        shed_grace: float = cfg.shed_give_up_s + cfg.timeout_s if cfg.honour_retry_after else 0.0

        def grace() -> float:
            # A request shed near the end is sent again until its give-up deadline (then recorded); only
            # a run that was shed waits for that, or a slow platform's backlog would wait a minute more.
            return base_grace + (shed_grace if self.counters.shed else 0.0)

        completed = False
        try:
            if self.notify_listen is not None:
                runner_site = web.AppRunner(notification_app(led, self._on_notification), access_log=None)
                await runner_site.setup()
                await web.TCPSite(runner_site, *self.notify_listen).start()
            self._t0 = self._loop.time()
            if adapter is not None:
                await adapter.start()
            prog = asyncio.create_task(self._progress_loop(led, offered))
            async with HttpSender(self.target, cfg.concurrency, cfg.timeout_s) as sender:
                for o in self.generator.until(self.duration):
                    delay = o.at - self.run_s()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif self.run_s() > self.duration + grace():
                        break  # hopelessly behind: stop generating, the rest is never sent
                    while len(tasks) >= cfg.max_backlog:
                        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    n += 1
                    digest.update(repr(o.canonical()).encode())
                    t = asyncio.create_task(
                        self._play(led, sender, encoders, o, self.generator.arrivals.rate(o.at))
                    )
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                if tasks:
                    _, pending = await asyncio.wait(
                        tasks, timeout=max(0.1, self.duration + grace() - self.run_s())
                    )
                    for t in pending:
                        t.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
            if self.linger_s > 0:
                await self._linger(led)
            completed = True
        except BaseException as exc:
            led.write("run_aborted", None, error=repr(exc))
            raise
        finally:
            for t in list(tasks):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if prog is not None:
                prog.cancel()
                await asyncio.gather(prog, return_exceptions=True)
            holding = completed and self.hold_receiver and runner_site is not None
            if runner_site is not None and not holding:
                await runner_site.cleanup()
            if adapter is not None:
                await adapter.stop()
            led.flush()
        counts = {k: v for k, v in asdict(self.counters).items() if k != "inflight"}
        summary = RunSummary(self.seed, self.scenario.name, self.duration, n, counts, digest.hexdigest(),
                             round(self.run_s(), 3), round(self._max_lag, 4), offered)  # fmt: skip
        led.write("run_finished", None, orders=n, orders_digest=summary.orders_digest, max_lag_s=summary.max_lag_s,
                  **counts)  # fmt: skip
        (self.dir / rundir.SIMULATOR_SUMMARY.name).write_text(
            json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8"
        )
        if runner_site is not None and self.hold_receiver:
            await self._hold(led, runner_site)
        led.close()
        return summary

    async def _hold(self, led: Ledger, site: web.AppRunner) -> None:
        """Keep the notification receiver up until SIGINT or SIGTERM, then stop it.

        The traffic is over, but the platform may still owe the customers notifications: a courier's last
        status that waited in a retry tier after a fault, a state change processed after a broker came
        back. A drill stops the receiver only once it has drained the platform, so what the platform sends
        reaches the customers and a notification owed but never sent is a real loss — not one refused by a
        receiver already gone (the demo once counted such a ``returned`` notification missing). The
        marker :data:`HOLDING_MARKER` (this PID) tells the drill that the run itself is over."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        led.write("receiver_holding", None, received=self._notifications_received)
        led.flush()
        marker = self.dir / HOLDING_MARKER
        marker.write_text(f"{os.getpid()}\n", encoding="utf-8")
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await site.cleanup()
            led.write("receiver_stopped", None, received=self._notifications_received)
