"""A fake platform intake, just enough of docs/intake-api.md to judge the load tests against.

It checks what a real intake checks (Bearer API key, Shopify / ePOS HMAC on the raw body, UK postcode),
is idempotent the way the contract says (``Idempotency-Key`` + body, webhook id, event id, and one
delivery per provider order whichever ePOS event comes first) and keeps its own account of what it
accepted, which the tests hold the load's ledger against. It can be told to fail (503 before storing
anything: outcome unknown for the client) or to be slow.

It runs an aiohttp server on its own asyncio loop in a thread of the test process, because the test
itself blocks while Locust runs in subprocesses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

#: The repository root and the locustfiles the tests run.
ROOT = Path(__file__).resolve().parents[3]
INTAKE = ROOT / "loadtests" / "intake.py"

_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$", re.IGNORECASE)


@dataclass
class Delivery:
    """One delivery the fake accepted (a 202 was answered for it)."""

    id: str
    retailer: str
    reference: str
    channel: str
    state: str = "requested"


@dataclass
class FakeIntake:
    """The fake's state; read it only after the load has stopped (it lives in the server thread)."""

    retailers_path: Path
    fail_share: float = 0.0  # answer 503 (storing nothing) to this share of POSTs, deterministically
    delay_s: float = 0.0  # answer every request this much later
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    url: str = ""
    # (retailer, Idempotency-Key) → (body hash, id); (retailer, webhook/event id) → id;
    # (channel, retailer, provider order id) → id
    _idem: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    _hooks: dict[tuple[str, str], str] = field(default_factory=dict)
    _orders: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _posts: int = 0

    def __post_init__(self) -> None:
        doc = json.loads(self.retailers_path.read_text())
        self.by_key = {r["api_key"]: r for r in doc["retailers"]}
        self.by_shop = {r["shop_domain"]: r for r in doc["retailers"]}
        self.by_merchant = {r["merchant_id"]: r for r in doc["retailers"]}

    # -- helpers --------------------------------------------------------------------------------------

    def _new(self, rid: str, reference: str, channel: str) -> str:
        did = f"dlv_{len(self.deliveries) + 1:07d}"
        self.deliveries[did] = Delivery(did, rid, reference, channel)
        return did

    def _answer(self, status: int, doc: dict[str, Any]) -> web.Response:
        self.by_status[status] = self.by_status.get(status, 0) + 1
        return web.json_response(doc, status=status)

    def _bearer(self, request: web.Request) -> dict[str, Any] | None:
        auth = request.headers.get("Authorization", "")
        return self.by_key.get(auth[7:]) if auth.startswith("Bearer ") else None

    @staticmethod
    def _signed(secret: str, body: bytes, signature: str) -> bool:
        mac = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        return hmac.compare_digest(mac, signature)

    def _should_fail(self) -> bool:
        self._posts += 1
        # Deterministic spread: every k-th POST fails, k = 1/share.
        return self.fail_share > 0 and self._posts % max(1, round(1 / self.fail_share)) == 0

    # -- handlers -------------------------------------------------------------------------------------

    async def _pre(self, request: web.Request) -> web.Response | None:
        self.requests += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if request.method == "POST" and self._should_fail():
            return self._answer(503, {"error": "told to fail"})
        return None

    async def rest_create(self, request: web.Request) -> web.Response:
        if (early := await self._pre(request)) is not None:
            return early
        r = self._bearer(request)
        if r is None:
            return self._answer(401, {"error": "bad API key"})
        body = await request.read()
        try:
            doc = json.loads(body)
            postcode = doc["dropoff"]["address"]["postcode"]
            reference = doc["reference"]
        except (ValueError, KeyError, TypeError):
            return self._answer(422, {"errors": [{"field": "", "message": "unreadable body"}]})
        if not _POSTCODE.match(postcode):
            return self._answer(
                422, {"errors": [{"field": "dropoff.address.postcode", "message": "not a UK postcode"}]}
            )
        key = request.headers.get("Idempotency-Key", "")
        digest = hashlib.sha256(body).hexdigest()
        if (seen := self._idem.get((r["id"], key))) is not None:
            if seen[0] != digest:
                return self._answer(409, {"error": "idempotency conflict", "id": seen[1]})
            return self._answer(200, {"id": seen[1], "state": self.deliveries[seen[1]].state})
        did = self._new(r["id"], reference, "rest")
        self._idem[(r["id"], key)] = (digest, did)
        return self._answer(202, {"id": did, "state": "requested"})

    async def rest_get(self, request: web.Request) -> web.Response:
        await self._pre(request)
        r = self._bearer(request)
        if r is None:
            return self._answer(401, {"error": "bad API key"})
        d = self.deliveries.get(request.match_info["id"])
        if d is None or d.retailer != r["id"]:
            return self._answer(404, {"error": "unknown delivery"})
        return self._answer(200, {"id": d.id, "state": d.state, "reference": d.reference})

    async def rest_cancel(self, request: web.Request) -> web.Response:
        if (early := await self._pre(request)) is not None:
            return early
        r = self._bearer(request)
        if r is None:
            return self._answer(401, {"error": "bad API key"})
        d = self.deliveries.get(request.match_info["id"])
        if d is None or d.retailer != r["id"]:
            return self._answer(404, {"error": "unknown delivery"})
        d.state = "cancelled"
        return self._answer(202, {"id": d.id, "state": "cancelled"})

    async def shopify(self, request: web.Request) -> web.Response:
        if (early := await self._pre(request)) is not None:
            return early
        r = self.by_shop.get(request.headers.get("X-Shopify-Shop-Domain", ""))
        if r is None:
            return self._answer(404, {"error": "unknown shop"})
        body = await request.read()
        if not self._signed(r["webhook_secret"], body, request.headers.get("X-Shopify-Hmac-Sha256", "")):
            return self._answer(401, {"error": "bad signature"})
        hook = (r["id"], request.headers.get("X-Shopify-Webhook-Id", ""))
        if hook in self._hooks:
            did = self._hooks[hook]
            return self._answer(200, {"id": did, "state": self.deliveries[did].state})
        doc = json.loads(body)
        okey = ("shopify", r["id"], str(doc["id"]))
        if request.headers.get("X-Shopify-Topic") == "orders/cancelled":
            if okey not in self._orders:
                return self._answer(404, {"error": "unknown order"})
            did = self._orders[okey]
            self.deliveries[did].state = "cancelled"
            self._hooks[hook] = did
            return self._answer(202, {"id": did, "state": "cancelled"})
        if okey in self._orders:
            did = self._orders[okey]
            self._hooks[hook] = did
            return self._answer(200, {"id": did, "state": self.deliveries[did].state})
        did = self._new(r["id"], doc["name"], "shopify")
        self._orders[okey] = self._hooks[hook] = did
        return self._answer(202, {"id": did, "state": "requested"})

    async def epos(self, request: web.Request) -> web.Response:
        if (early := await self._pre(request)) is not None:
            return early
        r = self.by_merchant.get(request.headers.get("X-Epos-Merchant-Id", ""))
        if r is None:
            return self._answer(404, {"error": "unknown merchant"})
        body = await request.read()
        if not self._signed(r["webhook_secret"], body, request.headers.get("X-Epos-Signature", "")):
            return self._answer(401, {"error": "bad signature"})
        doc = json.loads(body)
        hook = (r["id"], doc["event_id"])
        if hook in self._hooks:
            did = self._hooks[hook]
            return self._answer(200, {"id": did, "state": self.deliveries[did].state})
        order = doc["data"]["object"]["order"]
        okey = ("epos", r["id"], order["id"])
        if order["state"] == "CANCELED":
            if okey not in self._orders:
                return self._answer(404, {"error": "unknown order"})
            did = self._orders[okey]
            self.deliveries[did].state = "cancelled"
            self._hooks[hook] = did
            return self._answer(202, {"id": did, "state": "cancelled"})
        # Whichever of order.created / order.updated comes first creates the delivery.
        if okey in self._orders:
            did = self._orders[okey]
            self._hooks[hook] = did
            return self._answer(200, {"id": did, "state": self.deliveries[did].state})
        did = self._new(r["id"], order["reference_id"], "epos")
        self._orders[okey] = self._hooks[hook] = did
        return self._answer(202, {"id": did, "state": "requested"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/deliveries", self.rest_create)
        app.router.add_get("/v1/deliveries/{id}", self.rest_get)
        app.router.add_post("/v1/deliveries/{id}/cancel", self.rest_cancel)
        app.router.add_post("/v1/integrations/shopify/orders", self.shopify)
        app.router.add_post("/v1/integrations/epos/orders", self.epos)
        return app


class FakeIntakeServer:
    """Runs a :class:`FakeIntake` on ``127.0.0.1:<free port>`` in a thread; ``stop()`` ends it."""

    def __init__(self, fake: FakeIntake) -> None:
        self.fake = fake
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-intake", daemon=True)
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._cleanup())
        self._loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.fake.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]  # the port the OS picked for port 0
        self.fake.url = f"http://127.0.0.1:{port}"

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def start(self) -> FakeIntakeServer:
        self._thread.start()
        if not self._ready.wait(10.0):
            raise RuntimeError("fake intake did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"fake intake failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
