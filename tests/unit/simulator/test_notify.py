"""The notification receiver: every POST in the ledger; a notification_id seen before is a re-send,
marked ``duplicate: true`` and answered 200 "duplicate" instead of 202."""

from __future__ import annotations

import io
import json
import socket
from typing import Any

import aiohttp
from aiohttp import web

from simulator.ledger import Ledger
from simulator.notify import NOTIFY_PATH, notification_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _body(nid: str | None, state: str = "picked_up") -> dict[str, Any]:
    doc = {
        "delivery_id": "dlv_1",
        "order_reference": "s42-0000001",
        "audience": "customer",
        "channel": "sms",
        "to": "+447700900786",
        "state": state,
        "text": "Your order is on its way",
    }
    return doc if nid is None else {"notification_id": nid, **doc}


async def test_resends_are_marked_duplicate_and_new_ones_received() -> None:
    buf = io.StringIO()
    seen: list[dict[str, Any]] = []
    runner = web.AppRunner(notification_app(Ledger(buf, clock=lambda: 1.0), seen.append), access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    answers = []
    try:
        async with aiohttp.ClientSession() as s:
            for body in (
                _body("ntf_a"),
                _body("ntf_a"),  # the platform re-sent it (same id)
                _body("ntf_b", "delivered"),
                _body("ntf_a"),
                _body(None),  # no id: cannot be recognised, recorded as received each time
                _body(None),
            ):
                async with s.post(f"http://127.0.0.1:{port}{NOTIFY_PATH}", json=body) as r:
                    answers.append((r.status, (await r.json())["status"]))
            async with s.post(f"http://127.0.0.1:{port}{NOTIFY_PATH}", data=b"nope") as r:
                assert r.status == 400
    finally:
        await runner.cleanup()
    assert answers == [
        (202, "received"),
        (200, "duplicate"),
        (202, "received"),
        (200, "duplicate"),
        (202, "received"),
        (202, "received"),
    ]
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [r["kind"] for r in lines] == ["notification_received"] * 6  # every POST is in the ledger
    assert [r.get("duplicate") for r in lines] == [None, True, None, True, None, None]
    assert [r["notification_id"] for r in lines] == ["ntf_a", "ntf_a", "ntf_b", "ntf_a", None, None]
    assert lines[1]["state"] == "picked_up" and lines[1]["order_ref"] == "s42-0000001"
    # the callback (the runner's delivered counter) sees each notification once
    assert [d.get("notification_id") for d in seen] == ["ntf_a", "ntf_b", None, None]
