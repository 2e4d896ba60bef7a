"""The simulator honours intake's shed answers (503 + Retry-After) as a webhook provider would."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from simulator.channels.base import WireRequest
from simulator.channels.encoders import Encoders
from simulator.clock import SimClock
from simulator.config import load_scenario
from simulator.ledger import Ledger
from simulator.runner import Counters, Runner, format_progress
from simulator.sender import Answer, HttpSender, classify, parse_retry_after


def _req() -> WireRequest:
    return WireRequest("order", "POST", "/v1/deliveries", {"Content-Type": "application/json"}, b"{}", "k-1")


# -- the sender ------------------------------------------------------------------------------------------


async def _answering(status: int, headers: dict[str, str], body: dict[str, Any]) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_post("/v1/deliveries", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("headers", "outcome", "retry_after", "reason"),
    [
        ({"Retry-After": "3"}, "shed", 3.0, "queue_depth"),
        ({}, "unknown", None, None),  # a 503 without Retry-After: storage trouble, outcome unknown
        ({"Retry-After": "later"}, "unknown", None, None),
    ],
)
async def test_a_503_with_retry_after_is_shed(
    headers: dict[str, str], outcome: str, retry_after: float | None, reason: str | None
) -> None:
    runner, port = await _answering(503, headers, {"error": "overloaded", "reason": "queue_depth"})
    try:
        async with HttpSender(f"http://127.0.0.1:{port}") as sender:
            answer = await sender.send(_req())
    finally:
        await runner.cleanup()
    assert (answer.outcome, answer.http_status, answer.retry_after_s, answer.reason) == (
        outcome,
        503,
        retry_after,
        reason,
    )
    assert answer.delivery_id is None


def test_classify_and_parse_retry_after() -> None:
    assert (
        classify(503, 1.0) == "shed" and classify(500, 1.0) == "unknown" and classify(429, 1.0) == "rejected"
    )
    assert parse_retry_after(" 7 ") == 7.0 and parse_retry_after("-1") is None


# -- the runner's retries ----------------------------------------------------------------------------------


class ScriptedSender:
    """Answers from a script, one per send; records when each send happened."""

    def __init__(self, script: list[Answer]) -> None:
        self.script = script
        self.sent_at: list[float] = []

    async def send(self, req: WireRequest) -> Answer:
        self.sent_at.append(asyncio.get_running_loop().time())
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


SHED = Answer("shed", 503, None, None, 1.0, retry_after_s=0.2, reason="queue_depth")
ACCEPTED = Answer("accepted", 202, "dlv_1", None, 1.0)


def _runner(tmp_path: Path, **sender: Any) -> Runner:
    sc = load_scenario("steady-quick")
    sc = sc.model_copy(update={"sender": sc.sender.model_copy(update=sender)})
    runner = Runner(sc, 3, "http://127.0.0.1:9", tmp_path)
    loop = asyncio.get_running_loop()
    runner._loop, runner._t0 = loop, loop.time()
    return runner


async def _play(runner: Runner, sender: ScriptedSender) -> tuple[Answer, list[dict[str, Any]]]:
    out = io.StringIO()
    order = next(iter(runner.generator))
    answer = await runner._send_retrying(Ledger(out), sender, order, _req(), "order", {})  # type: ignore[arg-type]
    return answer, [json.loads(line) for line in out.getvalue().splitlines()]


async def test_shed_requests_are_sent_again_after_retry_after_with_the_same_key(tmp_path: Path) -> None:
    runner = _runner(tmp_path, shed_jitter=0.5)
    sender = ScriptedSender([SHED, SHED, ACCEPTED])
    answer, records = await _play(runner, sender)
    assert answer.outcome == "accepted"
    assert [(r["kind"], r["attempt"]) for r in records] == [
        ("order_sent", 1), ("order_shed", 1), ("order_sent", 2), ("order_shed", 2), ("order_sent", 3),
        ("order_answer", 3),
    ]  # fmt: skip
    assert {r["key"] for r in records if r["kind"] == "order_sent"} == {"k-1"}
    shed = records[1]
    assert shed["retry_after_s"] == 0.2 and shed["reason"] == "queue_depth" and shed["http_status"] == 503
    gaps = [b - a for a, b in zip(sender.sent_at, sender.sent_at[1:], strict=False)]
    assert all(0.19 <= g <= 0.2 * 1.5 + 0.05 for g in gaps), gaps  # Retry-After, plus jitter of at most half
    assert (runner.counters.shed, runner.counters.given_up_shed) == (2, 0)


async def test_a_request_shed_every_time_is_given_up_and_recorded(tmp_path: Path) -> None:
    runner = _runner(tmp_path, shed_max_attempts=3, shed_jitter=0.0)
    answer, records = await _play(runner, ScriptedSender([SHED]))
    assert answer.outcome == "shed"
    assert [r["kind"] for r in records] == ["order_sent", "order_shed"] * 3 + ["order_given_up_shed"]
    last = records[-1]
    assert last["attempts"] == 3 and last["shed"] == 3 and last["why"] == "shed 3 times"
    assert last["reason"] == "queue_depth" and last["key"] == "k-1" and 0.35 < last["waited_s"] < 1.0
    assert (runner.counters.shed, runner.counters.given_up_shed) == (3, 1)


async def test_the_give_up_deadline_is_not_overrun(tmp_path: Path) -> None:
    runner = _runner(tmp_path, shed_give_up_s=1.0, shed_max_wait_s=30.0, shed_jitter=0.0)
    slow = Answer("shed", 503, None, None, 1.0, retry_after_s=5.0, reason="outbox_age")
    sender = ScriptedSender([slow])
    answer, records = await _play(runner, sender)
    assert answer.outcome == "shed" and len(sender.sent_at) == 1  # waiting 5 s would pass the 1-s deadline
    assert records[-1]["kind"] == "order_given_up_shed" and "give-up deadline" in records[-1]["why"]


async def test_retries_of_shed_requests_can_be_switched_off(tmp_path: Path) -> None:
    runner = _runner(tmp_path, honour_retry_after=False)
    _, records = await _play(runner, ScriptedSender([SHED]))
    assert [r["kind"] for r in records] == ["order_sent", "order_shed", "order_given_up_shed"]


async def test_the_run_ending_during_the_wait_is_recorded(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    out = io.StringIO()
    slow = Answer("shed", 503, None, None, 1.0, retry_after_s=10.0, reason="queue_depth")
    order = next(iter(runner.generator))
    task = asyncio.create_task(
        runner._send_retrying(Ledger(out), ScriptedSender([slow]), order, _req(), "order", {})  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    last = json.loads(out.getvalue().splitlines()[-1])
    assert last["kind"] == "order_given_up_shed" and last["why"].startswith("the run ended")


def test_shed_wait_is_capped_and_never_zero(tmp_path: Path) -> None:
    async def build() -> Runner:
        return _runner(tmp_path, shed_max_wait_s=4.0, shed_jitter=0.25)

    runner = asyncio.run(build())
    waits = [runner.shed_wait(2.0) for _ in range(200)]
    assert all(2.0 <= w <= 2.5 for w in waits) and len(set(waits)) > 1
    assert runner.shed_wait(100.0) == 4.0 and runner.shed_wait(0.0) == 0.1


def test_the_progress_line_shows_sheds_only_when_there_are_some() -> None:
    assert "shed" not in format_progress(1.0, 10.0, 10.0, Counters())
    assert format_progress(1.0, 10.0, 10.0, Counters(shed=4, given_up_shed=1)).endswith(
        " shed=4 given_up_shed=1"
    )


async def test_a_retailer_that_gave_up_on_a_shed_order_sends_nothing_more_about_it(tmp_path: Path) -> None:
    """double-load: an ePOS order given up after 12 sheds was then created by its order.updated (an
    update of an unknown order creates it), and the audit rightly called it failed yet observed."""
    runner = _runner(tmp_path, shed_max_attempts=2, shed_jitter=0.0)
    base = next(o for o in runner.generator if o.channel == "epos")
    order = dataclasses.replace(base, update=True, duplicate=True, cancel_after_s=0.0)
    out = io.StringIO()
    clock = SimClock.from_config(runner.scenario.clock, epoch=1_800_000_000.0)
    await runner._play(Ledger(out), ScriptedSender([SHED]), Encoders(clock), order, 1.0)  # type: ignore[arg-type]
    kinds = [json.loads(line)["kind"] for line in out.getvalue().splitlines()]
    assert kinds == ["order_sent", "order_shed"] * 2 + ["order_given_up_shed"]
