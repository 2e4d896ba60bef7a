"""A fake platform intake for the simulator's network tests: a small aiohttp server per test."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web


@dataclass
class FakePlatform:
    """Records what it received; ``mode`` decides the answers (accept, reject, slow, error, no_id)."""

    mode: str = "accept"
    fail_first: int = 0  # answer 503 to this many requests first, then per ``mode``
    slow_s: float = 1.0
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((request.path, dict(request.headers), body))
        if len(self.received) <= self.fail_first:
            return web.json_response({"error": "warming up"}, status=503)
        if self.mode == "slow":
            await asyncio.sleep(self.slow_s)
        if self.mode == "reject":
            return web.json_response(
                {"errors": [{"field": "dropoff.address.postcode", "msg": "bad"}]}, status=422
            )
        if self.mode == "error":
            return web.json_response({"error": "boom"}, status=503)
        if self.mode == "no_id":
            return web.Response(status=202, text="ok")
        key = (
            request.headers.get("Idempotency-Key")
            or request.headers.get("X-Shopify-Webhook-Id")
            or json.loads(body).get("event_id", "")
        )
        dup = key in self.ids
        self.ids.setdefault(key, f"dlv_{len(self.ids) + 1:06d}")
        return web.json_response({"id": self.ids[key], "state": "requested"}, status=200 if dup else 202)


def free_port() -> int:
    """A TCP port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def unused_port() -> Callable[[], int]:
    """A function returning a TCP port nobody listens on."""
    return free_port


@pytest.fixture
async def platform() -> AsyncIterator[FakePlatform]:
    fake = FakePlatform()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()
