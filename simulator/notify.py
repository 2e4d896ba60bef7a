"""The customers' and drivers' phones: an HTTP receiver for the platform's notifications.

The platform delivers every notification (customer SMS/email/push, driver instructions) by
``POST /v1/notifications`` to the notification provider, which in a drill is this receiver (see
docs/intake-api.md). Each one is recorded in the ledger as ``notification_received``; it always answers
202 so the platform's own retries are not exercised by accident.
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
    """An aiohttp app recording notifications into ``ledger``; ``on_notification`` sees each body."""

    async def receive(request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(doc, dict):
            return web.json_response({"error": "body must be an object"}, status=400)
        ledger.write(
            "notification_received", doc.get("order_reference"),
            audience=doc.get("audience"), channel=doc.get("channel"), state=doc.get("state"),
            to=doc.get("to"), delivery_id=doc.get("delivery_id"), notification_id=doc.get("notification_id"),
        )  # fmt: skip
        if on_notification is not None:
            on_notification(doc)
        return web.json_response({"status": "received"}, status=202)

    app = web.Application()
    app.router.add_post(NOTIFY_PATH, receive)
    return app
