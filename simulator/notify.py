"""The customers' and drivers' phones: an HTTP receiver for the platform's notifications.

The platform delivers every notification (customer SMS/email/push, driver instructions) by
``POST /v1/notifications`` to the notification provider, which in a drill is this receiver (see
docs/intake-api.md). Every POST is recorded in the ledger as ``notification_received``. A notification
whose ``notification_id`` was already received by this receiver (this run) is a re-send of the same
notification (the platform retrying after a crash or a lost answer), not a second one: its ledger line
carries ``duplicate: true`` and the answer is ``200 {"status": "duplicate"}`` instead of ``202
{"status": "received"}``. Either is a success, so the platform's own retries are not exercised by
accident.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from simulator.ledger import Ledger

NOTIFY_PATH = "/v1/notifications"


def notification_app(
    ledger: Ledger, on_notification: Callable[[dict[str, Any]], None] | None = None
) -> web.Application:
    """An aiohttp app recording notifications into ``ledger``; ``on_notification`` sees each body once
    (not the re-sends of a notification_id already received)."""
    seen: set[str] = set()

    async def receive(request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(doc, dict):
            return web.json_response({"error": "body must be an object"}, status=400)
        nid = doc.get("notification_id")
        duplicate = isinstance(nid, str) and nid in seen
        extra: dict[str, Any] = {"duplicate": True} if duplicate else {}
        ledger.write(
            "notification_received", doc.get("order_reference"),
            audience=doc.get("audience"), channel=doc.get("channel"), state=doc.get("state"),
            to=doc.get("to"), delivery_id=doc.get("delivery_id"), notification_id=nid, **extra,
        )  # fmt: skip
        if duplicate:
            return web.json_response({"status": "duplicate"}, status=200)
        if isinstance(nid, str):
            seen.add(nid)
        if on_notification is not None:
            on_notification(doc)
        return web.json_response({"status": "received"}, status=202)

    app = web.Application()
    app.router.add_post(NOTIFY_PATH, receive)
    return app
