"""Locustfile: raw broker load — persistent, confirmed, mandatory publishes to a quorum queue.

Run alone::

    DRILL_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ locust -f loadtests/amqp_user.py --headless -u 20 -r 20 -t 30s

Each publish is reported to Locust through ``events.request`` (request_type ``AMQP``, name
``publish <queue>``, response_time = publish → broker confirm, response_length = body size,
exception = why it is not confirmed), so the CSV/HTML reports, shapes and distributed mode work as
for HTTP users.

Why the odd plumbing: Locust monkey-patches the standard library with gevent, and aio-pika needs a real
asyncio loop. So each Locust process runs ONE asyncio loop in a real OS thread (started with the
*original* ``_thread.start_new_thread``, with an epoll selector that gevent did not patch), holding one
connection and one confirm channel. A user greenlet hands a publish to that loop with
``asyncio.run_coroutine_threadsafe`` and waits on a ``gevent.event.AsyncResult``; the loop thread
completes the result through ``hub.loop.run_callback_threadsafe`` (gevent's thread-safe wake-up), so
waiting never blocks the gevent hub and every user can have a publish in flight: the channel carries
as many unconfirmed messages as there are users.

Outcomes (the BRIEF's reliability facts): ``Basic.Ack`` = confirmed; ``Basic.Nack`` (e.g. a quorum
queue electing a leader), a return (unroutable: ``mandatory``), a confirm timeout or a closed
connection = not confirmed; the next publish reconnects. Every message has a unique ``message_id``
(``<tag>-<n>``) and goes to a generic op file ``<run>/locust/amqp-<pid>.jsonl`` (flow
``locust_amqp``: ``attempt`` before, then ``ack`` / ``fail`` (nack, return) / ``unknown`` (timeout,
connection lost)), so a consumer that drains the queue can prove lost = acked − dequeued is empty.

Settings: ``DRILL_AMQP_URL`` (or ``--host``), ``DRILL_AMQP_QUEUE`` (``loadtest.publish``),
``DRILL_AMQP_SIZE`` (512 bytes), ``DRILL_AMQP_TIMEOUT`` (5 s), ``DRILL_RUN_DIR``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import gevent  # type: ignore[import-untyped]  # no stubs shipped; the few calls are checked by tests
import gevent.event  # type: ignore[import-untyped]
import gevent.monkey  # type: ignore[import-untyped]
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.exceptions import DeliveryError, PublishError
from locust import User, constant, events, task
from pamqp.common import FieldTable

import rundir
from loadtests.ledger import INTERRUPTED, NullLedger, RequestLedger
from loadtests.settings import env_float, env_int, env_str
from loadtests.world import process_tag

T = TypeVar("T")

FLOW: Final = "locust_amqp"
QUORUM: Final[FieldTable] = {"x-queue-type": "quorum"}


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor: runs the call inline.

    asyncio's default executor would start (monkey-patched) threads, i.e. greenlets of a hub that never
    runs in the loop thread: anything sent there (DNS lookups) would hang forever. Host names are
    resolved before connecting, so this is only a safety net.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def _resolved(url: str) -> str:
    """``url`` with its host name replaced by an address, looked up with the unpatched resolver."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    getaddrinfo = gevent.monkey.get_original("socket", "getaddrinfo")
    addr: str = getaddrinfo(host, parts.port or 5672, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    netloc = parts.netloc.rsplit("@", 1)
    hostport = addr + (f":{parts.port}" if parts.port else "")
    new_netloc = f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport
    return urlunsplit((parts.scheme, new_netloc, parts.path, parts.query, parts.fragment))


class AmqpBridge:
    """One asyncio loop in a real thread, one connection and confirm channel, shared by a process's users."""

    def __init__(self, url: str, queue: str, timeout: float) -> None:
        self.url = _resolved(url)
        self.queue = queue
        self.timeout = timeout
        self._hub = gevent.get_hub()  # the hub of the Locust thread, woken from the loop thread
        selector_cls = gevent.monkey.get_original("selectors", "EpollSelector")
        self._loop = asyncio.SelectorEventLoop(selector_cls())
        self._loop.set_default_executor(_InlineExecutor(max_workers=1))
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._reconnect: asyncio.Lock | None = None
        self._thread_done = gevent.event.AsyncResult()
        start_new_thread = gevent.monkey.get_original("_thread", "start_new_thread")
        start_new_thread(self._run, ())

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()
            self._hub.loop.run_callback_threadsafe(self._thread_done.set, True)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread; wait for it cooperatively (other greenlets keep running)."""
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)

        def done(f: concurrent.futures.Future[T]) -> None:
            # Runs in the loop thread: hand the outcome to the gevent hub's thread.
            exc = f.exception() if not f.cancelled() else asyncio.CancelledError()
            if exc is not None:
                self._hub.loop.run_callback_threadsafe(result.set_exception, exc)
            else:
                self._hub.loop.run_callback_threadsafe(result.set, f.result())

        fut.add_done_callback(done)
        value: T = result.get()
        return value

    async def _connect(self) -> AbstractExchange:
        # Many publishes may find the channel gone at once: one reconnects, the others use its result.
        if self._reconnect is None:
            self._reconnect = asyncio.Lock()
        async with self._reconnect:
            if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
                return self._exchange
            return await self._open()

    async def _open(self) -> AbstractExchange:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._connection = await aio_pika.connect(self.url, timeout=self.timeout)
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._channel.declare_queue(self.queue, durable=True, arguments=QUORUM)
        self._exchange = self._channel.default_exchange
        return self._exchange

    async def _publish(self, body: bytes, message_id: str) -> None:
        exchange = self._exchange
        if exchange is None or self._channel is None or self._channel.is_closed:
            exchange = await self._connect()
        message = aio_pika.Message(
            body,
            message_id=message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/octet-stream",
        )
        try:
            await exchange.publish(message, routing_key=self.queue, mandatory=True, timeout=self.timeout)
        except (DeliveryError, PublishError):
            raise
        except BaseException:
            # Timeout or connection trouble: the channel's state is unknown, start afresh next time.
            self._exchange = None
            raise

    def publish(self, body: bytes, message_id: str) -> None:
        """Publish and wait for the confirm; raises when it is not confirmed."""
        self.call(self._publish(body, message_id))

    async def _close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()

    def close(self) -> None:
        """Close the connection and stop the loop thread (waits up to 5 s)."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):  # closing a broken connection: nothing left to save
            self.call(asyncio.wait_for(self._close(), 5.0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread_done.wait(5.0)


_BRIDGE: AmqpBridge | None = None
_LEDGER: RequestLedger | None = None


def _bridge(url: str) -> AmqpBridge:
    global _BRIDGE
    if _BRIDGE is None:
        queue = env_str("DRILL_AMQP_QUEUE", "loadtest.publish")
        _BRIDGE = AmqpBridge(url, queue, env_float("DRILL_AMQP_TIMEOUT", 5.0))
    return _BRIDGE


def _ledger() -> RequestLedger:
    global _LEDGER
    if _LEDGER is None:
        run_dir = env_str("DRILL_RUN_DIR")
        if run_dir:
            path = Path(run_dir) / rundir.LOCUST_DIR / f"amqp-{os.getpid()}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            _LEDGER = RequestLedger(path.open("a", encoding="utf-8", buffering=1 << 16))
        else:
            _LEDGER = NullLedger()
    return _LEDGER


def _flush(**_kwargs: Any) -> None:
    if _LEDGER is not None:
        _LEDGER.flush()


def _quit(**_kwargs: Any) -> None:
    if _BRIDGE is not None:
        _BRIDGE.close()
    if _LEDGER is not None:
        _LEDGER.close()


events.test_stop.add_listener(_flush)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_quit)  # type: ignore[no-untyped-call]


class AmqpPublisher(User):
    """Publishes persistent messages with confirms + mandatory to a quorum queue, back to back."""

    wait_time = constant(0)
    _seq = 0

    def on_start(self) -> None:
        url = env_str("DRILL_AMQP_URL") or self.host or ""
        if not url:
            raise RuntimeError("no broker: set DRILL_AMQP_URL (or --host amqp://...)")
        self.bridge = _bridge(url)
        self.ledger = _ledger()
        self.tag = process_tag()
        self.size = env_int("DRILL_AMQP_SIZE", 512)
        self.name = f"publish {self.bridge.queue}"

    def _next_id(self) -> str:
        AmqpPublisher._seq += 1  # greenlets of one thread: no lock needed
        return f"{self.tag}-{AmqpPublisher._seq}"

    @task
    def publish(self) -> None:
        """One confirmed publish, reported to Locust and to the op file."""
        message_id = self._next_id()
        body = (message_id + " ").encode().ljust(self.size, b".")
        self.ledger.write("attempt", None, id=message_id, flow=FLOW)
        start = time.perf_counter()
        exc: BaseException | None = None
        try:
            self.bridge.publish(body, message_id)
        except Exception as e:
            exc = e
        except gevent.GreenletExit:
            # Locust ends the run by killing users mid-publish: the outcome is unknown and Locust no
            # longer counts requests, so only the op file can say so.
            self.ledger.write("unknown", None, id=message_id, flow=FLOW, error=INTERRUPTED)
            raise
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if exc is None:
            kind = "ack"
        elif isinstance(exc, DeliveryError | PublishError):
            kind = "fail"  # nacked or returned: the broker said no
        else:
            kind = "unknown"  # timeout or connection lost: maybe stored, maybe not
        self.ledger.write(
            kind, None, id=message_id, flow=FLOW, error=None if exc is None else repr(exc)[:200]
        )
        self.environment.events.request.fire(
            request_type="AMQP",
            name=self.name,
            response_time=elapsed_ms,
            response_length=len(body),
            exception=exc,
            context={},
        )


# gevent's loop caches "now" and has not iterated since Locust imported (and patched) it; importing a
# locustfile takes 1-3 s on a busy machine, so a timer armed next — Locust's --run-time — would fire
# that much early (measured: a "-t 3s" run stopping after 50 ms). Refresh the loop's clock.
gevent.get_hub().loop.update_now()
