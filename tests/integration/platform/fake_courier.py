"""A scripted courier company for the platform's integration tests, and the small helpers those tests share.

:class:`FakeCourier` plays the couriers of docs/intake-api.md §3 on a real broker, as the admin of the
test vhost: it consumes ``courier.<c>.requests`` for every scripted courier and answers each request per
its :class:`Plan` (quote a price, decline, stay silent; accept or reject a booking, possibly late; accept
cancels), publishing to ``courier.events`` with routing key ``<c>.<type>`` and the §3 bodies
(``in_reply_to`` = ``correlation_id`` = the request's id, headers ``x-courier`` / ``x-dialect``). It
records every request it received, so a test can assert on what the platform sent.

The helpers: :class:`ServiceProcess` (a platform service as a real OS process, ready marker, SIGTERM or
SIGKILL), :func:`wait_until` (poll a condition with a deadline), :class:`QueueReader` (a test queue bound
to an exchange), :func:`publish`, :class:`LifecycleReader` (what reached the tracking shards),
:func:`parked` (a work queue's parking lot) and :func:`rows` (read a service's SQLite file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage

from system.domain.marketplace import load_marketplace
from system.messaging import (
    ConfirmingPublisher,
    MessagingSettings,
    OutgoingMessage,
    ParkedMessage,
    ParkingLot,
)
from system.platform.topology import COURIER_EVENTS, DEFAULT_SHARDS, courier_request_queue, tracking_shard

REPO = Path(__file__).resolve().parents[3]
_DIALECTS = {c.id: c.dialect for c in load_marketplace().couriers}


def iso(at: datetime) -> str:
    """ISO-8601 UTC with a ``Z``."""
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def wait_until(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]],
    what: str,
    within: float = 15.0,
    every: float = 0.05,
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; that value. Fails naming ``what``."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(every)


# -- the scripted courier ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What one courier does (for every order, or for one delivery).

    ``quote``: a price in minor units, ``"decline"`` or ``"silent"`` (an outage: no answer at all).
    ``booking``: ``"accept"``, ``"reject"`` or ``"silent"``, after ``booking_delay_s``.
    """

    quote: int | Literal["decline", "silent"] = "silent"
    booking: Literal["accept", "reject", "silent"] = "silent"
    booking_delay_s: float = 0.0
    cancel: Literal["accept", "reject", "silent"] = "accept"
    vehicle: str = "bike"


@dataclass
class Received:
    """A request the courier got."""

    routing_key: str
    message_id: str | None
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeCourier:
    """Couriers answering per a script (see the module docstring); use as ``async with``."""

    def __init__(
        self,
        url: str,
        plans: Mapping[str, Plan],
        per_delivery: Mapping[tuple[str, str], Plan] | None = None,
    ) -> None:
        self.url = url
        self.plans = dict(plans)
        self.per_delivery = dict(per_delivery or {})
        self.received: list[Received] = []
        self.published: list[dict[str, Any]] = []
        self._connection: AbstractConnection | None = None
        self._events: AbstractExchange | None = None
        self._later: set[asyncio.Task[None]] = set()
        self._seq = 0

    @property
    def couriers(self) -> list[str]:
        """Every courier this script plays."""
        return sorted(set(self.plans) | {c for c, _ in self.per_delivery})

    def plan(self, courier: str, delivery_id: str) -> Plan:
        """The plan for one courier and order."""
        return self.per_delivery.get((courier, delivery_id), self.plans.get(courier, Plan()))

    async def __aenter__(self) -> FakeCourier:
        self._connection = await aio_pika.connect(self.url)
        publishing = await self._connection.channel(publisher_confirms=True)
        self._events = await publishing.get_exchange(COURIER_EVENTS, ensure=False)
        consuming: AbstractChannel = await self._connection.channel()
        for courier in self.couriers:
            queue = await consuming.get_queue(courier_request_queue(courier), ensure=False)
            await queue.consume(self._on_request)
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self._later:
            task.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()

    def requests(self, kind: str | None = None, courier: str | None = None, delivery_id: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """The bodies of the requests received, optionally filtered."""
        return [
            r.body
            for r in self.received
            if (kind is None or r.body.get("type") == kind)
            and (courier is None or r.body.get("courier") == courier)
            and (delivery_id is None or r.body.get("delivery_id") == delivery_id)
        ]

    async def publish_raw(self, routing_key: str, body: dict[str, Any] | bytes, message_id: str) -> None:
        """Publish anything to ``courier.events`` (to feed the platform bad input)."""
        assert self._events is not None
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        message = aio_pika.Message(
            raw, content_type="application/json", message_id=message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )  # fmt: skip
        await self._events.publish(message, routing_key, mandatory=True)

    async def _answer(self, courier: str, kind: str, body: dict[str, Any]) -> None:
        assert self._events is not None
        self._seq += 1
        body = {"type": kind, "courier": courier, "dialect": _DIALECTS.get(courier, "uber"), **body}
        body.setdefault("message_id", f"{courier}:{body.get('order_reference')}:{kind}:{self._seq}")
        message = aio_pika.Message(
            json.dumps(body).encode(), content_type="application/json", message_id=body["message_id"],
            correlation_id=body.get("in_reply_to"), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={"x-courier": courier, "x-dialect": body["dialect"]},
        )  # fmt: skip
        await self._events.publish(message, f"{courier}.{kind}", mandatory=True)
        self.published.append(body)

    def _answer_later(self, delay: float, courier: str, kind: str, body: dict[str, Any]) -> None:
        async def later() -> None:
            await asyncio.sleep(delay)
            await self._answer(courier, kind, body)

        task = asyncio.create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _on_request(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            body = json.loads(message.body)
            self.received.append(Received(message.routing_key or "", message.message_id, body))
            courier, delivery_id = body["courier"], body["delivery_id"]
            plan = self.plan(courier, delivery_id)
            common = {
                "delivery_id": delivery_id,
                "order_reference": body["order_reference"],
                "in_reply_to": body["message_id"],
            }
            now = datetime.now(UTC)
            if body["type"] == "quote_request":
                if plan.quote == "silent":
                    return
                if plan.quote == "decline":
                    await self._answer(courier, "quote_declined", {**common, "reason": "out_of_area"})
                    return
                await self._answer(courier, "quote", {
                    **common, "quote_id": f"q-{courier}-{delivery_id}",
                    "price": {"amount_minor": plan.quote, "currency": "GBP"}, "vehicle": plan.vehicle,
                    "pickup_eta": iso(now + timedelta(minutes=10)), "dropoff_eta": iso(now + timedelta(minutes=30)),
                    "expires_at": iso(now + timedelta(minutes=15)),
                })  # fmt: skip
            elif body["type"] == "booking_request":
                if plan.booking == "silent":
                    return
                answer = {**common, "quote_id": body["quote_id"]}
                if plan.booking == "accept":
                    answer |= {
                        "courier_job_id": f"{courier}-job-{delivery_id}",
                        "driver": {"id": f"{courier}-drv-1", "vehicle": plan.vehicle},
                    }
                    kind = "booking_accepted"
                else:
                    answer["reason"] = "no_driver_available"
                    kind = "booking_rejected"
                if plan.booking_delay_s > 0:
                    self._answer_later(plan.booking_delay_s, courier, kind, answer)
                else:
                    await self._answer(courier, kind, answer)
            elif body["type"] == "cancel_request" and plan.cancel != "silent":
                answer = {**common, "courier_job_id": body["courier_job_id"]}
                if plan.cancel == "reject":
                    answer["reason"] = "too_late:picked_up"
                await self._answer(courier, f"cancel_{plan.cancel}ed", answer)


# -- platform services as processes --------------------------------------------------------------------


class ServiceProcess:
    """``python -m system.<service>`` as a real process in a test vhost; ``with`` starts and stops it."""

    def __init__(
        self, service: str, run_dir: Path, secrets: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.service = service
        self.run_dir = run_dir
        self.secrets = secrets
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        """Where the current process writes its JSON log lines."""
        return self.run_dir / f"{self.service}.{self.starts}.log"

    @property
    def db(self) -> Path:
        """The service's SQLite file."""
        return self.run_dir / f"{self.service}.db"

    def start(self) -> None:
        """Start a (new) process of replica 0."""
        self.starts += 1
        env = {
            **os.environ,
            "DRILL_SERVICE": self.service,
            "DRILL_REPLICA": "0",
            "DRILL_RUN_DIR": str(self.run_dir),
            "DRILL_PLATFORM_SECRETS": str(self.secrets),
            "DRILL_RELAY_LEASE_S": "1",  # a SIGKILLed replica's relay lease expires quickly
            **self.env,
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"system.{self.service}"], env=env, cwd=REPO, stdout=log, stderr=log
            )

    def log_tail(self, lines: int = 30) -> str:
        """The end of the current process's log (for failure messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def wait_ready(self, within: float = 30.0) -> None:
        """Until the ready marker names this process (a SIGKILLed predecessor leaves its marker behind)."""
        assert self.proc is not None
        marker = self.run_dir / "ready" / f"{self.service}.0"
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{self.service} exited with {proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                return marker.read_text().strip() == str(proc.pid)
            return False

        await wait_until(ready, f"{self.service} ready", within)

    def kill(self) -> None:
        """SIGKILL: no graceful anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of a query on a service's SQLite file (read-only; the service may be writing)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the service has not created its schema yet
            return []
        raise
    finally:
        conn.close()


# -- the broker, as the admin ------------------------------------------------------------------------------


async def publish(urls: list[str], *messages: OutgoingMessage) -> None:
    """Publish with confirms (and ``mandatory``) as the admin, the way the services' relays do."""
    publisher = ConfirmingPublisher(MessagingSettings(amqp_urls=urls, random_start_node=False), name="test")
    try:
        for m in messages:
            await publisher.publish(m)
    finally:
        await publisher.close()


class QueueReader:
    """A test queue bound to ``exchange`` with ``routing_key``; collects what arrives (``async with``)."""

    def __init__(self, url: str, exchange: str, routing_key: str) -> None:
        self.url = url
        self.exchange = exchange
        self.routing_key = routing_key
        self.messages: list[AbstractIncomingMessage] = []
        self._connection: AbstractConnection | None = None

    async def __aenter__(self) -> QueueReader:
        self._connection = await aio_pika.connect(self.url)
        channel = await self._connection.channel()
        queue = await channel.declare_queue(f"test.{uuid.uuid4().hex[:8]}", exclusive=True)
        await queue.bind(self.exchange, self.routing_key)
        await queue.consume(self._collect, no_ack=True)
        return self

    async def _collect(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)

    async def __aexit__(self, *_: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies received so far."""
        return [json.loads(m.body) for m in self.messages]


class LifecycleReader:
    """Consumes the tracking shards (no tracking service runs in a test vhost) and keeps the lifecycle
    events among what arrives. ``lifecycle`` is a consistent-hash exchange: each delivery lands on one
    shard, so reading every shard sees each event once. The shards have a single active consumer:
    ``basic.get`` is refused on them, so this consumes (``async with``)."""

    def __init__(self, url: str, shards: int = DEFAULT_SHARDS) -> None:
        self.url = url
        self.shards = shards
        self.events: list[dict[str, Any]] = []
        self._connection: AbstractConnection | None = None

    async def __aenter__(self) -> LifecycleReader:
        self._connection = await aio_pika.connect(self.url)
        channel = await self._connection.channel()
        for i in range(self.shards):
            queue = await channel.get_queue(tracking_shard(i), ensure=False)
            await queue.consume(self._collect, no_ack=True)
        return self

    async def _collect(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        if body.get("type") == "lifecycle":
            self.events.append(body)

    async def __aexit__(self, *_: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    def of(self, delivery_id: str) -> list[tuple[str, str]]:
        """(event, source) of one delivery's lifecycle events, in arrival order."""
        return [(e["event"], e["source"]) for e in self.events if e["delivery_id"] == delivery_id]

    def bodies(self, delivery_id: str, event: str) -> list[dict[str, Any]]:
        """The bodies of one delivery's events of one kind."""
        return [e for e in self.events if e["delivery_id"] == delivery_id and e["event"] == event]


async def parked(urls: list[str], work_queue: str) -> list[ParkedMessage]:
    """What is in ``work_queue``'s parking lot now (left there)."""
    return await ParkingLot(MessagingSettings(amqp_urls=urls, random_start_node=False), work_queue).list()
