"""Provider answers: what is sent, retried or refused; the HTTP provider on a real socket; the recorder."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from system.notifications.providers import (
    HttpProvider,
    RecordingProvider,
    Refused,
    RetryLater,
    Sent,
    classify,
    parse_retry_after,
    provider_for,
)

BODY = {"notification_id": "ntf_1", "delivery_id": "dlv_1", "state": "picked_up", "to": "+44"}


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_sent(status: int) -> None:
    assert isinstance(classify(status, '{"status": "received"}', None), Sent)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_load_and_server_faults_are_retried(status: int) -> None:
    outcome = classify(status, "busy", "3")
    assert outcome == RetryLater(f"HTTP {status}", 3.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422, 301, 302])
def test_other_answers_are_permanent_with_the_reason(status: int) -> None:
    outcome = classify(status, '{"error":\n "bad phone"}', None)
    assert outcome == Refused(f'HTTP {status}: {{"error": "bad phone"}}')


def test_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after(None) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def server() -> AsyncIterator[Callable[[web.Application], asyncio.Future[str]]]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}/"

    yield start  # type: ignore[misc]
    for r in runners:
        await r.cleanup()


async def test_http_provider_against_a_real_server(server: Callable[[web.Application], object]) -> None:
    seen: list[dict[str, str]] = []
    answers = iter(
        [
            web.json_response({"status": "received"}, status=202),
            web.json_response({"status": "duplicate"}, status=200),
            web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "1"}),
            web.json_response({"error": "bad phone"}, status=400),
        ]
    )

    async def receive(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return next(answers)

    app = web.Application()
    app.router.add_post("/v1/notifications", receive)
    base = await server(app)  # type: ignore[misc]
    provider = HttpProvider(base, timeout_s=2.0)  # the trailing slash is tolerated
    try:
        got = [await provider.send(BODY) for _ in range(4)]
    finally:
        await provider.close()
    assert got == [
        Sent('202 {"status": "received"}'),
        Sent('200 {"status": "duplicate"}'),
        RetryLater("HTTP 503", 1.0),
        Refused('HTTP 400: {"error": "bad phone"}'),
    ]
    assert seen == [BODY] * 4


async def test_http_provider_timeout_and_refused_connection_are_retried(
    server: Callable[[web.Application], object],
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.json_response({}, status=202)

    app = web.Application()
    app.router.add_post("/v1/notifications", slow)
    base = await server(app)  # type: ignore[misc]
    provider = HttpProvider(base, timeout_s=0.1)
    refused = HttpProvider(f"http://127.0.0.1:{_free_port()}", timeout_s=2.0)
    try:
        timed_out = await provider.send(BODY)
        no_listener = await refused.send(BODY)
    finally:
        await provider.close()
        await refused.close()
    assert isinstance(timed_out, RetryLater) and "timeout" in timed_out.reason
    assert isinstance(no_listener, RetryLater) and "connection" in no_listener.reason


async def test_recording_provider_counts_every_send_per_id(tmp_path: Path) -> None:
    path = tmp_path / "run" / "notify-provider.db"
    provider = provider_for(None, path, 5.0)
    assert isinstance(provider, RecordingProvider)
    other = RecordingProvider(path)  # a second replica shares the file
    try:
        assert await provider.send(BODY) == Sent("recorded")
        assert await other.send(BODY) == Sent("recorded (duplicate, sent 2 times)")
        assert await provider.send({**BODY, "notification_id": "ntf_2"}) == Sent("recorded")
        assert isinstance(await provider.send({"state": "picked_up"}), Refused)
        assert await other.counts() == {"ntf_1": 2, "ntf_2": 1}
    finally:
        await provider.close()
        await other.close()
    assert isinstance(provider_for("http://x", path, 1.0), HttpProvider)
