"""The HTTP sender: sends :class:`~simulator.channels.base.WireRequest` and classifies the answer.

Bounded concurrency (a connector limit plus the caller's semaphore) and a per-request total timeout.
Classification, the rule the audit relies on:

* 2xx → ``accepted`` (with the ``id`` of the JSON body as ``delivery_id``);
* 4xx → ``rejected`` (the platform said no: 401 bad key, 409 idempotency conflict, 422 field errors…);
* 503 with a ``Retry-After`` header → ``shed``: intake's admission control did not take the order and
  stored nothing (docs/intake-api.md §2.6); send it again after the delay (``retry_after_s``; the
  body's ``reason`` says why);
* other 5xx, other statuses, timeout, refused or reset connection → ``unknown``: the platform may or may
  not have kept the order. Never ``accepted``.

Failover between intake replicas: a refused connection (nothing was sent) goes to the next replica; a
server that disconnects before answering (a replica shutting down) gets the request once more, on the
next replica — safe because every request is a read or carries its idempotency key.

Example:
    >>> classify(202), classify(422), classify(503), classify(503, retry_after_s=2.0)
    ('accepted', 'rejected', 'unknown', 'shed')
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from types import TracebackType

import aiohttp

from simulator.channels.base import WireRequest


def classify(status: int, retry_after_s: float | None = None) -> str:
    """The outcome of an HTTP status (and of its ``Retry-After``, parsed: :func:`parse_retry_after`)."""
    if 200 <= status < 300:
        return "accepted"
    if 400 <= status < 500:
        return "rejected"
    if status == 503 and retry_after_s is not None:
        return "shed"
    return "unknown"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date (None: absent or
    unreadable — then the answer is not a shed one).

    Example:
        >>> parse_retry_after("3"), parse_retry_after(None), parse_retry_after("soon")
        (3.0, None, None)
        >>> parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0)
        6.0
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    base = time.time() if now is None else now
    return max(0.0, when.timestamp() - base)


@dataclass(frozen=True, slots=True)
class Answer:
    """The platform's answer to one request, as the ledger records it."""

    outcome: str
    http_status: int | None
    delivery_id: str | None
    error: str | None
    latency_ms: float
    #: a shed answer's ``Retry-After`` (seconds) and the ``reason`` of its body
    retry_after_s: float | None = None
    reason: str | None = None


class HttpSender:
    """An aiohttp client session towards the platform's base URL(s) (``async with``).

    ``target`` may list several replicas, comma separated (``http://h:8080,http://h:8081``): requests go
    round-robin, and a request that could not even connect (nothing was sent, so nothing can have
    happened) goes to the next replica at once — what a retailer behind a load balancer sees when one
    replica dies. Any other failure is an unknown outcome, as before.
    """

    def __init__(self, target: str, concurrency: int = 64, timeout_s: float = 5.0) -> None:
        self.targets = [t.strip().rstrip("/") for t in target.split(",") if t.strip()]
        if not self.targets:
            raise ValueError("no target URL")
        self.target = self.targets[0]
        self._next = 0
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpSender:
        connector = aiohttp.TCPConnector(limit=self.concurrency, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            # The body is sent exactly as signed: no automatic compression or header rewriting.
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "rabbit-drill-simulator/0.1"},
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, req: WireRequest) -> Answer:
        """Send ``req`` and classify the answer; never raises for network trouble."""
        if self._session is None:
            raise RuntimeError("HttpSender used outside 'async with'")
        t0 = time.perf_counter()

        def ms() -> float:
            return round((time.perf_counter() - t0) * 1000.0, 2)

        first = self._next
        self._next = (self._next + 1) % len(self.targets)
        resent = False
        i = 0
        while True:
            base = self.targets[(first + i) % len(self.targets)]
            try:
                async with self._session.request(
                    req.method, base + req.path, data=req.body, headers=req.headers
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                break
            except TimeoutError:
                return Answer("unknown", None, None, f"timeout after {self.timeout_s}s", ms())
            except aiohttp.ClientConnectorError as exc:
                i += 1
                if i < len(self.targets):
                    continue  # nothing was sent: the next replica
                return Answer("unknown", None, None, f"connect: {exc.os_error or exc}", ms())
            except aiohttp.ServerDisconnectedError as exc:
                # A replica shutting down closes its idle keep-alive connections; a request already on
                # the way meets a closed socket. Every request carries its idempotency key (or is a read),
                # so it is safe to send it once more, to the next replica — as a real client would.
                if not resent:
                    resent = True
                    i += 1
                    continue
                return Answer("unknown", None, None, f"{type(exc).__name__}: {exc}", ms())
            except (aiohttp.ClientError, OSError) as exc:
                return Answer("unknown", None, None, f"{type(exc).__name__}: {exc}", ms())
        outcome = classify(status, retry_after)
        delivery_id: str | None = None
        error: str | None = None
        if outcome == "shed":
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = None
            reason = doc.get("reason") if isinstance(doc, dict) else None
            return Answer(outcome, status, None, None, ms(), retry_after, str(reason or "unspecified"))
        if outcome == "accepted":
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("id"), str | int):
                delivery_id = str(doc["id"])
            else:
                error = "contract: 2xx without id"
        elif raw:
            error = raw[:300].decode("utf-8", "replace")
        return Answer(outcome, status, delivery_id, error, ms())


async def wait_for_port(host: str, port: int, deadline_s: float = 5.0) -> bool:
    """True once a TCP connect to (host, port) succeeds, False at the deadline (a helper for tests)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while loop.time() < end:
        try:
            _, w = await asyncio.open_connection(host, port)
            w.close()
            return True
        except OSError:
            await asyncio.sleep(0.02)
    return False
