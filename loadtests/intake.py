"""Locustfile: retailers and their integrations driving the platform's intake API (docs/intake-api.md).

Run alone::

    locust -f loadtests/intake.py --host http://127.0.0.1:8080 --headless -u 50 -r 10 -t 60s

or from a drill with :func:`loadtests.runner.run_locust`. Three user classes, weighted like the
simulator's default channel mix (rest 5 : shopify 3 : epos 2):

* :class:`RestRetailer` — ``POST /v1/deliveries`` with ``Idempotency-Key``; now and then a deliberate
  retry of the same key and body (must answer the same id), a bad API key (401 expected), an invalid
  postcode (422 expected); tracking reads and cancels of its own accepted deliveries.
* :class:`ShopifyWebhooks` — signed ``orders/create`` webhooks, sometimes delivered twice with the same
  ``X-Shopify-Webhook-Id``, sometimes with a bad HMAC (401 expected); ``orders/cancelled``.
* :class:`EposWebhooks` — ``order.created``, sometimes followed by ``order.updated``, sometimes the
  update *first* (out of order); duplicate events; bad signatures; cancellation events.

Every user also reads back (``GET /v1/deliveries/{id}``) deliveries it got accepted. Requests are named
for the stats (``POST /v1/deliveries``, ``shopify orders/create``, ``epos order.created``, ...): a
name with ``[...]`` is a deliberate variant. An answer the contract allows is a success, including a
4xx the request was built to provoke; anything else is a failure with the reason.

Every request and its outcome goes to the ledger (:mod:`loadtests.ledger`) when ``DRILL_RUN_DIR`` is
set. Settings: :mod:`loadtests.settings`. Load shape: ``DRILL_SHAPE=steady|step|doubles|spike``
selects one of :mod:`loadtests.shapes` (else ``-u``/``-r``/``-t`` drive the run); the thin
locustfiles ``intake_<shape>.py`` do the same without the variable.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]
from locust import FastHttpUser, between, constant, constant_throughput, events, task

from loadtests import shapes
from loadtests.ledger import CONTRACT_NO_ID, NullLedger, Outcome, RequestLedger, outcome_of
from loadtests.settings import env_float, env_int, env_str
from loadtests.world import OrderFactory, for_channel, load_retailers, process_tag
from simulator.channels.base import ChannelEncoder, WireRequest, hmac_b64
from simulator.channels.epos import EposEncoder
from simulator.channels.rest import RestEncoder
from simulator.channels.shopify import ShopifyEncoder
from simulator.config import Channel
from simulator.orders import OrderSpec
from simulator.sender import parse_retry_after
from simulator.world import Retailer

HTTP_TIMEOUT = env_float("DRILL_HTTP_TIMEOUT", 10.0)
RETRY_UNKNOWN = env_int("DRILL_RETRY_UNKNOWN", 1)
# A shed create (503 + Retry-After) is sent again after the delay plus up to SHED_JITTER of it (at most
# SHED_MAX_WAIT_S), like a webhook provider; given up after SHED_MAX_ATTEMPTS shed sends or SHED_GIVE_UP_S.
SHED_MAX_ATTEMPTS = env_int("DRILL_SHED_MAX_ATTEMPTS", 12)
SHED_GIVE_UP_S = env_float("DRILL_SHED_GIVE_UP_S", 60.0)
SHED_MAX_WAIT_S = env_float("DRILL_SHED_MAX_WAIT_S", 30.0)
SHED_JITTER = env_float("DRILL_SHED_JITTER", 0.25)
#: Share of creates deliberately re-sent byte-identical (REST retry, webhook duplicate).
DUPLICATE_SHARE = env_float("DRILL_DUPLICATE_SHARE", 0.05)
#: Share of ePOS orders followed by an order.updated, and of those sent before the order.created.
UPDATE_SHARE = env_float("DRILL_UPDATE_SHARE", 0.2)
OUT_OF_ORDER_SHARE = env_float("DRILL_OUT_OF_ORDER_SHARE", 0.3)
#: Deliveries a user remembers for tracking reads and cancels.
REMEMBER = 256


def _wait_time() -> Any:
    """Think time: ``DRILL_USER_RPS`` (constant throughput per user, so users ∝ load) or a range."""
    rps = env_float("DRILL_USER_RPS", 0.0)
    if rps > 0:
        return constant_throughput(rps)
    lo, hi = env_float("DRILL_WAIT_MIN", 0.0), env_float("DRILL_WAIT_MAX", 0.2)
    return constant(lo) if hi <= lo else between(lo, hi)


# --- per-process state ------------------------------------------------------------------------------


class _Process:
    """What the users of one Locust process share: retailers, order factories, encoders, the ledger.

    Built lazily by the first user, so a master (which runs no users) never opens a ledger file.
    """

    def __init__(self) -> None:
        self.retailers = load_retailers()
        self.seed = env_int("DRILL_LOADTEST_SEED", env_int("DRILL_SEED", 42) + 1000)
        self.tag = process_tag()
        run_dir = env_str("DRILL_RUN_DIR")
        self.ledger: RequestLedger = RequestLedger.open(Path(run_dir)) if run_dir else NullLedger()
        self.factories: dict[Channel, OrderFactory] = {}
        self.encoders: dict[Channel, ChannelEncoder] = {}

    def factory(self, channel: Channel) -> tuple[OrderFactory, ChannelEncoder]:
        if channel not in self.factories:
            f = OrderFactory(for_channel(self.retailers, channel), channel, self.seed, self.tag)
            enc: ChannelEncoder
            if channel == "rest":
                enc = RestEncoder(f.clock)
            elif channel == "shopify":
                enc = ShopifyEncoder(f.clock)
            else:
                enc = EposEncoder(f.clock)
            self.factories[channel], self.encoders[channel] = f, enc
        return self.factories[channel], self.encoders[channel]


_PROCESS: _Process | None = None


def process_state() -> _Process:
    """This process's shared state (created on first use)."""
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = _Process()
    return _PROCESS


def _flush_ledger(**_kwargs: Any) -> None:
    if _PROCESS is not None:
        _PROCESS.ledger.flush()


def _close_ledger(**_kwargs: Any) -> None:
    if _PROCESS is not None:
        _PROCESS.ledger.close()


# test_stop: the run's records are on disk when Locust reports the end; quitting: the file is closed.
events.test_stop.add_listener(_flush_ledger)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_close_ledger)  # type: ignore[no-untyped-call]


# --- the users --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """What one request got: the ledger outcome, the status (None: no answer) and the delivery id."""

    outcome: Outcome
    status: int | None
    delivery_id: str | None
    state: str | None
    retry_after_s: float | None = None
    reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    """A delivery this user got accepted (for tracking reads and cancels)."""

    delivery_id: str
    order: OrderSpec
    retailer: Retailer


class IntakeUser(FastHttpUser):
    """What every intake user does: send a wire request, judge the answer, write the ledger."""

    abstract = True
    channel: ClassVar[Channel] = "rest"
    network_timeout = HTTP_TIMEOUT
    connection_timeout = HTTP_TIMEOUT
    # Retries are ours (with the ledger's attempt numbers), never the HTTP client's.
    max_retries = 0
    wait_time = _wait_time()

    def on_start(self) -> None:
        self.proc = process_state()
        self.factory, self.encoder = self.proc.factory(self.channel)
        self.accepted: deque[Accepted] = deque(maxlen=REMEMBER)
        self.rng = random.Random()

    # -- sending -------------------------------------------------------------------------------------

    def send(
        self,
        req: WireRequest,
        order: OrderSpec,
        retailer: Retailer,
        *,
        name: str,
        kind: str,
        expect: frozenset[int] = frozenset({200, 202}),
        attempt: int = 1,
        same_id: str | None = None,
        **extra: Any,
    ) -> Answer:
        """Send ``req``; ledger ``<kind>_sent`` then ``<kind>_answer``; stats: success iff expected.

        ``same_id``: the answer must name this delivery (an idempotent repeat).
        """
        led = self.proc.ledger
        rid = led.next_req()
        common = {"req": rid, "channel": self.channel, "retailer": retailer.id}
        led.write(
            f"{kind}_sent", order.ref, **common, attempt=attempt, key=req.key, bytes=len(req.body), **extra
        )
        t0 = time.perf_counter()
        with self.client.request(
            req.method,
            req.path,
            name=name,
            data=req.body,  # type: ignore[arg-type]  # bytes are sent as is (annotated str only)
            headers=req.headers,
            catch_response=True,
        ) as resp:
            latency_ms = round((time.perf_counter() - t0) * 1000.0, 3)
            status: int | None = resp.status_code or None
            delivery_id, state, error = _parse_answer(resp.content, status)
            if status is None:
                error = repr(getattr(resp, "error", None) or "no answer")
            retry_after = parse_retry_after(resp.headers.get("Retry-After")) if status == 503 else None
            outcome = outcome_of(status, retry_after)
            if outcome == "accepted" and delivery_id is None:
                error = CONTRACT_NO_ID
            if outcome == "shed":
                resp.success()  # a deliberate "not now" the contract allows: not a failure of the platform
            elif status not in expect:
                resp.failure(f"HTTP {status}, expected {sorted(expect)}")
            elif outcome == "accepted" and same_id is not None and delivery_id != same_id:
                resp.failure(f"idempotency: repeat answered {delivery_id!r}, first answer {same_id!r}")
            elif error == CONTRACT_NO_ID:
                resp.failure(CONTRACT_NO_ID)
            else:
                resp.success()
        if outcome == "shed":
            reason = _shed_reason(resp.content)
            led.write(f"{kind}_shed", order.ref, **common, attempt=attempt, key=req.key, http_status=status,
                      retry_after_s=retry_after, reason=reason, latency_ms=latency_ms)  # fmt: skip
            return Answer(outcome, status, None, None, retry_after, reason)
        led.write(
            f"{kind}_answer",
            order.ref,
            **common,
            outcome=outcome,
            http_status=status,
            delivery_id=delivery_id,
            error=error,
            latency_ms=latency_ms,
        )
        return Answer(outcome, status, delivery_id, state)

    def create(
        self, req: WireRequest, order: OrderSpec, retailer: Retailer, *, name: str, same_id: str | None = None
    ) -> Answer:
        """A create, retried with the same key while its outcome is unknown (as retailers do), and after
        ``Retry-After`` while it is shed (as webhook providers do) until the shed budget is spent."""
        first = time.monotonic()
        answer = self.send(req, order, retailer, name=name, kind="order", same_id=same_id)
        attempt, unknowns, sheds = 1, 0, 0
        while answer.outcome in ("unknown", "shed"):
            if answer.outcome == "unknown":
                unknowns += 1
                if unknowns > RETRY_UNKNOWN:
                    break
            else:
                sheds += 1
                wait = shed_wait(answer.retry_after_s or 0.0, self.rng.random())
                waited = time.monotonic() - first
                why = None
                if sheds >= SHED_MAX_ATTEMPTS:
                    why = f"shed {sheds} times"
                elif waited + wait > SHED_GIVE_UP_S:
                    why = f"the next try would leave after the {SHED_GIVE_UP_S:g}-s give-up deadline"
                if why is not None:
                    self.proc.ledger.write("order_given_up_shed", order.ref, channel=self.channel, key=req.key,
                                           attempts=attempt, shed=sheds, reason=answer.reason,
                                           retry_after_s=answer.retry_after_s, waited_s=round(waited, 3),
                                           why=why)  # fmt: skip
                    break
                gevent.sleep(wait)  # this user only: the others go on
            attempt += 1
            answer = self.send(
                req, order, retailer, name=name, kind="order", attempt=attempt, same_id=same_id
            )
        self.remember(answer, order, retailer)
        return answer

    def remember(self, answer: Answer, order: OrderSpec, retailer: Retailer) -> None:
        if answer.outcome == "accepted" and answer.delivery_id:
            self.accepted.append(Accepted(answer.delivery_id, order, retailer))

    def duplicate(
        self, req: WireRequest, order: OrderSpec, retailer: Retailer, first: Answer, name: str
    ) -> None:
        """Re-send ``req`` byte-identical; the platform must answer the first answer's id."""
        if first.outcome == "accepted":
            self.send(req, order, retailer, name=name, kind="duplicate", same_id=first.delivery_id)

    def order_maybe_twice(self, name: str, duplicate_name: str) -> None:
        """A new order; sometimes sent again, byte for byte, as providers and retrying clients do."""
        order, retailer = self.factory.next()
        req = self.encoder.encode_order(order, retailer)[0]
        answer = self.create(req, order, retailer, name=name)
        if self.rng.random() < DUPLICATE_SHARE:
            self.duplicate(req, order, retailer, answer, duplicate_name)

    def cancel_remembered(self, name: str, by_id: bool = False) -> None:
        """Cancel an order this user got accepted, on this user's channel (409 allowed: too late).

        ``by_id``: the request names the delivery id in its path (REST), so the ledger records it.
        """
        acc = self.take_accepted()
        if acc is None:
            return
        req = self.encoder.encode_cancel(acc.order, acc.retailer, acc.delivery_id)
        extra: dict[str, Any] = {"delivery_id_sent": acc.delivery_id} if by_id else {}
        if req is not None:
            self.send(
                req,
                acc.order,
                acc.retailer,
                name=name,
                kind="cancel",
                expect=frozenset({200, 202, 409}),
                **extra,
            )

    def badly_signed(self, header: str, name: str, probe: str) -> None:
        """A create whose signature header was made with the wrong secret: 401 expected."""
        order, retailer = self.factory.next()
        req = self.encoder.encode_order(order, retailer)[0]
        headers = {**req.headers, header: hmac_b64("not-the-secret", req.body)}
        self.send(
            dataclasses.replace(req, headers=headers),
            order,
            retailer,
            name=name,
            kind="order",
            expect=frozenset({401}),
            probe=probe,
        )

    def take_accepted(self) -> Accepted | None:
        """Remove and return one remembered delivery at random (None when there is none)."""
        if not self.accepted:
            return None
        i = self.rng.randrange(len(self.accepted))
        item = self.accepted[i]
        del self.accepted[i]
        return item

    # -- tracking (every retailer reads its deliveries back over REST) -------------------------------

    @task(4)
    def track(self) -> None:
        """``GET /v1/deliveries/{id}`` of a delivery this user got accepted (200 expected)."""
        if not self.accepted:
            return
        acc = self.accepted[self.rng.randrange(len(self.accepted))]
        headers = {"Authorization": f"Bearer {acc.retailer.credentials.api_key}"}
        t0 = time.perf_counter()
        with self.client.request(
            "GET",
            f"/v1/deliveries/{acc.delivery_id}",
            name="GET /v1/deliveries/{id}",
            headers=headers,
            catch_response=True,
        ) as resp:
            latency_ms = round((time.perf_counter() - t0) * 1000.0, 3)
            status: int | None = resp.status_code or None
            delivery_id, state, error = _parse_answer(resp.content, status)
            if status != 200:
                resp.failure(f"HTTP {status}, expected 200")
            elif delivery_id != acc.delivery_id:
                resp.failure(f"read {acc.delivery_id!r}, got {delivery_id!r}")
            else:
                resp.success()
        self.proc.ledger.write(
            "track_read",
            acc.order.ref,
            channel=self.channel,
            retailer=acc.retailer.id,
            outcome=outcome_of(status),
            http_status=status,
            delivery_id=acc.delivery_id,
            state=state,
            error=error,
            latency_ms=latency_ms,
        )


class RestRetailer(IntakeUser):
    """A retailer's backend calling ``POST /v1/deliveries`` (docs/intake-api.md §2.2)."""

    weight = 5
    channel = "rest"

    @task(20)
    def order(self) -> None:
        """A new delivery; sometimes retried on purpose with the same key and body."""
        self.order_maybe_twice("POST /v1/deliveries", "POST /v1/deliveries [retry]")

    @task(2)
    def cancel(self) -> None:
        """Cancel a remembered delivery: 202 (or 200 repeat), 409 when it is too late."""
        self.cancel_remembered("POST /v1/deliveries/{id}/cancel", by_id=True)

    @task(1)
    def bad_input(self) -> None:
        """A request built to be refused: a wrong API key (401) or an invalid postcode (422)."""
        order, retailer = self.factory.next()
        req = self.encoder.encode_order(order, retailer)[0]
        if self.rng.random() < 0.5:
            headers = {**req.headers, "Authorization": "Bearer sk_sim_not_a_key"}
            bad = dataclasses.replace(req, headers=headers)
            name, expect, probe = "POST /v1/deliveries [bad key]", 401, "bad_key"
        else:
            doc = json.loads(req.body)
            doc["dropoff"]["address"]["postcode"] = "NOT A POSTCODE"
            bad = dataclasses.replace(req, body=json.dumps(doc, separators=(",", ":")).encode())
            name, expect, probe = "POST /v1/deliveries [invalid]", 422, "invalid"
        self.send(bad, order, retailer, name=name, kind="order", expect=frozenset({expect}), probe=probe)


class ShopifyWebhooks(IntakeUser):
    """Shopify delivering ``orders/create`` / ``orders/cancelled`` webhooks (docs/intake-api.md §2.3)."""

    weight = 3
    channel = "shopify"

    @task(20)
    def order(self) -> None:
        """A signed ``orders/create``; sometimes delivered twice with the same webhook id."""
        self.order_maybe_twice("shopify orders/create", "shopify orders/create [duplicate]")

    @task(1)
    def cancel(self) -> None:
        """``orders/cancelled`` for a remembered order (409 allowed: too late)."""
        self.cancel_remembered("shopify orders/cancelled")

    @task(1)
    def bad_hmac(self) -> None:
        """A webhook whose HMAC was made with the wrong secret: 401 expected."""
        self.badly_signed("X-Shopify-Hmac-Sha256", "shopify orders/create [bad hmac]", "bad_hmac")


class EposWebhooks(IntakeUser):
    """An ePOS (Square-style) provider delivering order events (docs/intake-api.md §2.4)."""

    weight = 2
    channel = "epos"

    @task(20)
    def order(self) -> None:
        """``order.created``; maybe an ``order.updated`` too, maybe first; sometimes a duplicate."""
        order, retailer = self.factory.next()
        update = self.rng.random() < UPDATE_SHARE
        out_of_order = update and self.rng.random() < OUT_OF_ORDER_SHARE
        spec = dataclasses.replace(order, update=update, out_of_order=out_of_order)
        first: Answer | None = None
        created_req: WireRequest | None = None
        for req in self.encoder.encode_order(spec, retailer):
            # Whichever event arrives first creates the delivery; the other must answer the same id.
            same = first.delivery_id if first is not None and first.outcome == "accepted" else None
            if req.kind == "update":
                answer = self.send(
                    req,
                    order,
                    retailer,
                    name="epos order.updated",
                    kind="update",
                    same_id=same,
                    out_of_order=out_of_order,
                )
            else:
                created_req = req
                answer = self.create(req, order, retailer, name="epos order.created", same_id=same)
            if same is None:
                first = answer
        if created_req is not None and first is not None and self.rng.random() < DUPLICATE_SHARE:
            self.duplicate(created_req, order, retailer, first, "epos order.created [duplicate]")

    @task(1)
    def cancel(self) -> None:
        """``order.updated`` with the order CANCELED (version 3)."""
        self.cancel_remembered("epos order.updated [cancel]")

    @task(1)
    def bad_signature(self) -> None:
        """An event signed with the wrong key: 401 expected."""
        self.badly_signed("X-Epos-Signature", "epos order.created [bad signature]", "bad_signature")


def shed_wait(retry_after_s: float, draw: float) -> float:
    """The wait after a shed answer: ``Retry-After`` plus ``draw`` (0..1) × ``SHED_JITTER`` of it, at most
    ``SHED_MAX_WAIT_S``, at least 0.1 s.

    Example:
        >>> shed_wait(2.0, 0.0), shed_wait(2.0, 1.0), shed_wait(0.0, 0.5), shed_wait(1e6, 0.0)
        (2.0, 2.5, 0.1, 30.0)
    """
    return max(0.1, min(SHED_MAX_WAIT_S, retry_after_s * (1.0 + SHED_JITTER * draw)))


def _shed_reason(content: bytes | None) -> str:
    """The ``reason`` of a shed answer's JSON body (``unspecified`` when it has none)."""
    try:
        doc = json.loads(content) if content else None
    except ValueError:
        doc = None
    reason = doc.get("reason") if isinstance(doc, dict) else None
    return str(reason or "unspecified")


def _parse_answer(content: bytes | None, status: int | None) -> tuple[str | None, str | None, str | None]:
    """(delivery id, state, error) from an answer body; never raises (a bad body is an error string)."""
    if not content:
        return None, None, None
    try:
        doc = json.loads(content)
    except ValueError:
        return None, None, f"non-JSON answer ({len(content)} bytes)"
    if not isinstance(doc, dict):
        return None, None, "answer is not an object"
    did, state = doc.get("id"), doc.get("state")
    err = doc.get("error") if status is not None and status >= 400 else None
    if err is None and status is not None and status >= 400 and "errors" in doc:
        err = json.dumps(doc["errors"])[:200]
    return (str(did) if did else None), (str(state) if state else None), (str(err) if err else None)


# gevent's loop caches "now" and has not iterated since Locust imported (and patched) it; importing a
# locustfile takes 1-3 s on a busy machine, so a timer armed next — Locust's --run-time — would fire
# that much early (measured: a "-t 3s" run stopping after 50 ms). Refresh the loop's clock.
gevent.get_hub().loop.update_now()

# DRILL_SHAPE picks a load shape: Locust uses a LoadTestShape class it finds in the locustfile's globals.
_SHAPE = env_str("DRILL_SHAPE")
if _SHAPE:
    DrillShape = shapes.shape_class(_SHAPE)
