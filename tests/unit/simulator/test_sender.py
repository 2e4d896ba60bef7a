"""The HTTP sender against real local sockets: replicas in turn, failover only when nothing was sent."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from simulator.channels.base import WireRequest
from simulator.sender import HttpSender


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there once the socket is closed


async def _server(hits: list[str], name: str) -> tuple[web.AppRunner, int]:
    async def ok(request: web.Request) -> web.Response:
        hits.append(name)
        return web.json_response({"id": f"dlv-{name}", "state": "requested"}, status=202)

    app = web.Application()
    app.router.add_post("/v1/deliveries", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


def _req() -> WireRequest:
    return WireRequest("order", "POST", "/v1/deliveries", {"Content-Type": "application/json"}, b"{}", "k1")


async def test_requests_alternate_and_a_refused_replica_fails_over_to_the_next() -> None:
    hits: list[str] = []
    a, port_a = await _server(hits, "a")
    b, port_b = await _server(hits, "b")
    dead = _closed_port()
    try:
        async with HttpSender(f"http://127.0.0.1:{port_a},http://127.0.0.1:{port_b}") as sender:
            answers = [await sender.send(_req()) for _ in range(4)]
        assert [x.outcome for x in answers] == ["accepted"] * 4 and hits == ["a", "b", "a", "b"]
        hits.clear()
        async with HttpSender(f"http://127.0.0.1:{dead},http://127.0.0.1:{port_b}") as sender:
            answers = [await sender.send(_req()) for _ in range(3)]
        assert [x.outcome for x in answers] == ["accepted"] * 3 and hits == ["b", "b", "b"]
        async with HttpSender(f"http://127.0.0.1:{dead}") as sender:
            lone = await sender.send(_req())
        assert lone.outcome == "unknown" and lone.error is not None and lone.error.startswith("connect:")
    finally:
        await a.cleanup()
        await b.cleanup()


async def _dropper(seen: list[bytes]) -> tuple[asyncio.Server, int]:
    """Reads a request and closes the connection without a word: a replica shutting down."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(65536))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_replica_that_disconnects_before_answering_gets_the_request_once_more_elsewhere() -> None:
    hits: list[str] = []
    seen: list[bytes] = []
    b, port_b = await _server(hits, "b")
    drop, port_d = await _dropper(seen)
    try:
        async with HttpSender(f"http://127.0.0.1:{port_d},http://127.0.0.1:{port_b}") as sender:
            answer = await sender.send(_req())
        # The same request (same idempotency key) reached the dropper, then b, which answered.
        assert answer.outcome == "accepted" and answer.delivery_id == "dlv-b", answer
        assert len(seen) == 1 and b"POST /v1/deliveries" in seen[0] and hits == ["b"]
        seen.clear()
        async with HttpSender(f"http://127.0.0.1:{port_d}") as sender:
            lone = await sender.send(_req())
        # Once more only: a replica that keeps dropping gets an honest "unknown".
        assert lone.outcome == "unknown" and lone.error is not None and "ServerDisconnected" in lone.error
        assert len(seen) == 2
    finally:
        await b.cleanup()
        drop.close()
        await drop.wait_closed()
