"""The intake HTTP API (docs/intake-api.md §2): REST, Shopify-style and ePOS-style order intake.

Every handler checks, in this order: credentials (API key, or shop/merchant + HMAC of the raw body),
then the body (pydantic models of :mod:`system.domain.intake`), then hands one normalised
:class:`DeliveryRequest` to :class:`IntakeStore`, which decides and commits in one transaction. The
broker is never on this path: an order is accepted when its row and its outbox row are committed, so
intake keeps answering 202 while every broker node is down.

Bad input never escapes as an exception: the error middleware turns every failure into a JSON body
(4xx for the client's mistakes, 503 when storage or the retailers file is unavailable, 500 otherwise).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from system.domain.intake import (
    EposAction,
    FieldError,
    IntakeInvalid,
    UnknownStore,
    epos_action,
    idempotency_fingerprint,
    normalise_epos,
    normalise_rest,
    normalise_shopify,
    parse_epos,
    parse_rest,
    parse_rest_cancel,
    parse_shopify,
    verify_epos_signature,
    verify_shopify_hmac,
)
from system.domain.retailers import Retailer
from system.logs import get_logger
from system.platform.retailers import RetailerRegistry, RetailersUnavailable

from .settings import IntakeSettings
from .store import Answer, IntakeStore

log = get_logger(__name__)

STORE: Final = web.AppKey("store", IntakeStore)
RETAILERS: Final = web.AppKey("retailers", RetailerRegistry)
SETTINGS: Final = web.AppKey("settings", IntakeSettings)

MAX_KEY_LEN: Final = 255  # Idempotency-Key, webhook ids: longer values are refused, not truncated
SHOPIFY_CREATE: Final = "orders/create"
SHOPIFY_CANCELLED: Final = "orders/cancelled"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A request refused with ``status`` and JSON ``body`` (raised by the checks, answered by the
    middleware)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _error(status: int, message: str) -> Refused:
    return Refused(status, {"error": message})


def _invalid(errors: list[FieldError] | tuple[FieldError, ...]) -> Refused:
    return Refused(422, IntakeInvalid(errors).wire())


def _answer(answer: Answer) -> web.Response:
    return web.json_response(answer.body, status=answer.status, headers=answer.headers or None)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON answer; nothing a client sends can crash the process."""
    try:
        return await handler(request)
    except Refused as exc:
        log.info(
            "request refused",
            extra={"path": request.path, "status": exc.status, "error": exc.body.get("error", "invalid")},
        )
        return web.json_response(exc.body, status=exc.status)
    except IntakeInvalid as exc:
        return web.json_response(exc.wire(), status=422)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (unknown route, wrong method, body over client_max_size): JSON too.
        return web.json_response({"error": exc.reason}, status=exc.status)
    except RetailersUnavailable as exc:
        log.error("retailers unavailable", extra={"path": request.path, "error": str(exc)})
        return web.json_response({"error": "retailers not loaded; try again"}, status=503)
    except sqlite3.Error as exc:
        # Nothing was committed (the transaction rolled back): the outcome is a clean "try again".
        log.error("storage error", extra={"path": request.path, "error": repr(exc)})
        return web.json_response({"error": "storage unavailable; try again"}, status=503)
    except Exception:
        log.exception("unexpected error", extra={"path": request.path})
        return web.json_response({"error": "internal error"}, status=500)


# -- checks ---------------------------------------------------------------------------------------------


def _bearer_retailer(request: web.Request) -> Retailer:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _error(401, "missing or malformed Authorization: Bearer <api key>")
    retailer = request.app[RETAILERS].by_api_key(token.strip())
    if retailer is None:
        raise _error(401, "unknown API key")
    return retailer


def _key_header(request: web.Request, name: str) -> str:
    value = request.headers.get(name, "").strip()
    if not value:
        raise _invalid([FieldError(name, "header required")])
    if len(value) > MAX_KEY_LEN:
        raise _invalid([FieldError(name, f"at most {MAX_KEY_LEN} characters")])
    return value


async def _body(request: web.Request) -> bytes:
    # read() enforces client_max_size (413 through the middleware) before any parsing.
    return await request.read()


# -- handlers ----------------------------------------------------------------------------------------------


async def create_delivery(request: web.Request) -> web.Response:
    """``POST /v1/deliveries``."""
    retailer = _bearer_retailer(request)
    key = _key_header(request, "Idempotency-Key")
    raw = await _body(request)
    body = parse_rest(raw)
    try:
        delivery = normalise_rest(body, retailer)
    except UnknownStore as exc:
        raise _error(404, f"unknown store {exc.store_id!r}") from None
    return _answer(await request.app[STORE].submit_rest(delivery, key, idempotency_fingerprint(raw)))


async def cancel_delivery(request: web.Request) -> web.Response:
    """``POST /v1/deliveries/{id}/cancel``."""
    retailer = _bearer_retailer(request)
    key = _key_header(request, "Idempotency-Key")
    raw = await _body(request)
    body = parse_rest_cancel(raw)
    delivery_id = request.match_info["delivery_id"]
    answer = await request.app[STORE].cancel_rest(
        retailer.id, delivery_id, key, idempotency_fingerprint(raw), body.reason
    )
    return _answer(answer)


async def get_delivery(request: web.Request) -> web.Response:
    """``GET /v1/deliveries/{id}``: state, courier, driver, ETA and history (the owner's only)."""
    retailer = _bearer_retailer(request)
    delivery_id = request.match_info["delivery_id"]
    found = await request.app[STORE].view(delivery_id)
    if found is None or found[0].retailer_id != retailer.id:
        raise _error(404, f"unknown delivery {delivery_id}")
    d, history = found
    return web.json_response(
        {
            "id": d.id,
            "reference": d.reference,
            "channel": d.channel,
            "state": str(d.state),
            "courier": {"name": d.courier, "job_id": d.courier_job_id} if d.courier else None,
            "driver": {"id": d.driver_id, "vehicle": d.driver_vehicle} if d.driver_id else None,
            "eta": d.eta,
            "history": history,
        }
    )


def _webhook_retailer(
    request: web.Request, header: str, lookup: Callable[[str], Retailer | None], what: str
) -> Retailer:
    name = request.headers.get(header, "").strip()
    if not name:
        raise _error(401, f"missing {header}")
    retailer = lookup(name)
    if retailer is None:
        raise _error(404, f"unknown {what}")
    return retailer


async def shopify_orders(request: web.Request) -> web.Response:
    """``POST /v1/integrations/shopify/orders`` (topics orders/create and orders/cancelled)."""
    retailers = request.app[RETAILERS]
    retailer = _webhook_retailer(request, "X-Shopify-Shop-Domain", retailers.by_shop_domain, "shop")
    raw = await _body(request)
    if not verify_shopify_hmac(raw, request.headers.get("X-Shopify-Hmac-Sha256"), retailer.webhook_secret):
        raise _error(401, "bad X-Shopify-Hmac-Sha256")
    webhook_id = _key_header(request, "X-Shopify-Webhook-Id")
    topic = request.headers.get("X-Shopify-Topic", "").strip()
    if topic not in (SHOPIFY_CREATE, SHOPIFY_CANCELLED):
        # Another topic this endpoint does not handle: acknowledged, so the provider does not retry it.
        return web.json_response({"id": None, "state": "ignored"})
    order = parse_shopify(raw)
    try:
        delivery = normalise_shopify(order, retailer)
    except UnknownStore as exc:
        raise _error(404, f"unknown location_id {exc.store_id!r}") from None
    answer = await request.app[STORE].submit_shopify(
        delivery, webhook_id, cancel=topic == SHOPIFY_CANCELLED, reason=order.cancel_reason or "customer"
    )
    return _answer(answer)


async def epos_orders(request: web.Request) -> web.Response:
    """``POST /v1/integrations/epos/orders`` (order.created / order.updated, deduplicated on event_id)."""
    retailers = request.app[RETAILERS]
    retailer = _webhook_retailer(request, "X-Epos-Merchant-Id", retailers.by_merchant_id, "merchant")
    raw = await _body(request)
    if not verify_epos_signature(raw, request.headers.get("X-Epos-Signature"), retailer.webhook_secret):
        raise _error(401, "bad X-Epos-Signature")
    event = parse_epos(raw)
    if event.merchant_id != retailer.merchant_id:
        raise _error(401, "merchant_id of the body does not match X-Epos-Merchant-Id")
    if len(event.event_id) > MAX_KEY_LEN:
        raise _invalid([FieldError("event_id", f"at most {MAX_KEY_LEN} characters")])
    action = epos_action(event)
    delivery = None
    if action is not EposAction.IGNORE:
        try:
            delivery = normalise_epos(event, retailer)
        except UnknownStore as exc:
            raise _error(404, f"unknown location_id {exc.store_id!r}") from None
    return _answer(await request.app[STORE].submit_epos(retailer.id, event.event_id, action, delivery))


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers (with admission control's state and counts)."""
    gate = request.app[STORE].admission
    if gate is None:
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "ok", "admission": gate.snapshot()})


async def readyz(request: web.Request) -> web.Response:
    """Ready to accept orders: the DB is writable and the retailers are loaded (the broker is NOT
    checked: intake accepts orders while every broker node is down; shedding is not unreadiness either —
    a shed is an answer)."""
    problems = []
    if not await request.app[STORE].writable():
        problems.append("intake DB not writable")
    registry = request.app[RETAILERS]
    if not registry.loaded:
        problems.append(f"retailers not loaded: {registry.error}")
    if problems:
        return web.json_response({"status": "unavailable", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


@web.middleware
async def slow_release_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """TEST ONLY (``test_answer_delay_s``): hold every order answer back, as a slow release would."""
    delay = request.app[SETTINGS].test_answer_delay_s
    if request.method == "POST":
        await asyncio.sleep(delay)
    return await handler(request)


def build_app(settings: IntakeSettings, store: IntakeStore, retailers: RetailerRegistry) -> web.Application:
    """The aiohttp application (``store`` must be opened by the caller)."""
    middlewares = [error_middleware]
    if settings.test_answer_delay_s > 0:
        middlewares.insert(0, slow_release_middleware)
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[STORE] = store
    app[RETAILERS] = retailers
    app[SETTINGS] = settings
    app.router.add_post("/v1/deliveries", create_delivery)
    app.router.add_get("/v1/deliveries/{delivery_id}", get_delivery)
    app.router.add_post("/v1/deliveries/{delivery_id}/cancel", cancel_delivery)
    app.router.add_post("/v1/integrations/shopify/orders", shopify_orders)
    app.router.add_post("/v1/integrations/epos/orders", epos_orders)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
