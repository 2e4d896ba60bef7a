"""The Toxiproxy REST API as an aiohttp application.

Routes, status codes and JSON shapes follow Toxiproxy 2.x (``api.go``):

=========================================  ====================================================
``GET /version``                           ``{"version": ...}``
``POST /reset``                            204; enables every proxy, removes every toxic
``GET /proxies``                           ``{name: proxy}``
``POST /proxies``                          201 proxy; 409 if the name exists
``POST /populate``                         201 ``{"proxies": [...]}``; create or replace a list
``GET|POST|DELETE /proxies/{proxy}``       show / update (``enabled``, ``listen``, ``upstream``) / 204
``GET|POST /proxies/{proxy}/toxics``       list / create (200 toxic)
``GET|POST|DELETE .../toxics/{toxic}``     show / update (``toxicity``, ``attributes``) / 204
=========================================  ====================================================

A proxy is ``{"name", "listen", "upstream", "enabled", "toxics": [toxic]}`` and a toxic
``{"name", "type", "stream", "toxicity", "attributes"}``. Errors are ``{"error": msg, "status": code}``.
Like Toxiproxy, requests from browsers (``User-Agent: Mozilla/...``) are refused with 403, so a web
page cannot drive the proxy through the visitor's browser.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from chaos.toxiproxy.errors import BAD_REQUEST_BODY, MISSING_FIELD, ApiError
from chaos.toxiproxy.proxy import ProxyRegistry, ProxySpec
from chaos.toxiproxy.toxics import toxic_from_json

log = logging.getLogger("chaos.toxiproxy.api")

# The Toxiproxy API level implemented; ``implementation`` tells this server from the Go one.
VERSION = "2.12.0"
IMPLEMENTATION = "rabbit-drill chaos.toxiproxy (python asyncio)"
DEFAULT_LISTEN = "127.0.0.1:0"

REGISTRY_KEY: web.AppKey[ProxyRegistry] = web.AppKey("registry", ProxyRegistry)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _registry(request: web.Request) -> ProxyRegistry:
    return request.app[REGISTRY_KEY]


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise BAD_REQUEST_BODY.with_detail("empty body, expected a JSON document")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BAD_REQUEST_BODY.with_detail(f"invalid JSON: {exc}") from exc


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BAD_REQUEST_BODY.with_detail(f"expected a JSON object, got {type(body).__name__}")
    return body


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BAD_REQUEST_BODY.with_detail(f"{key} must be a string, got {value!r}")
    return value


def _opt_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise BAD_REQUEST_BODY.with_detail(f"{key} must be true or false, got {value!r}")
    return value


def _spec(body: Any, where: str = "") -> ProxySpec:
    obj = _object(body)
    name = _opt_str(obj, "name")
    upstream = _opt_str(obj, "upstream")
    if not name:
        raise MISSING_FIELD.with_detail(f"name{where}")
    if not upstream:
        raise MISSING_FIELD.with_detail(f"upstream{where}")
    listen = _opt_str(obj, "listen") or DEFAULT_LISTEN
    enabled = _opt_bool(obj, "enabled")
    return ProxySpec(name, listen, upstream, True if enabled is None else enabled)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


# -- handlers -------------------------------------------------------------------------------------


async def version(request: web.Request) -> web.Response:
    return _json({"version": VERSION, "implementation": IMPLEMENTATION})


async def reset(request: web.Request) -> web.Response:
    await _registry(request).reset()
    return web.Response(status=204)


async def proxy_index(request: web.Request) -> web.Response:
    return _json({name: p.to_json() for name, p in _registry(request).proxies.items()})


async def proxy_create(request: web.Request) -> web.Response:
    proxy = await _registry(request).create(_spec(await _json_body(request)))
    return _json(proxy.to_json(), status=201)


async def populate(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, list):
        raise BAD_REQUEST_BODY.with_detail("expected a JSON array of proxies")
    specs = [_spec(item, f" at proxy {i + 1}") for i, item in enumerate(body)]
    proxies = await _registry(request).populate(specs)
    return _json({"proxies": [p.to_json() for p in proxies]}, status=201)


async def proxy_show(request: web.Request) -> web.Response:
    return _json(_registry(request).get(request.match_info["proxy"]).to_json())


async def proxy_update(request: web.Request) -> web.Response:
    registry = _registry(request)
    name = request.match_info["proxy"]
    registry.get(name)  # 404 before 400, as Toxiproxy looks the proxy up first
    body = _object(await _json_body(request))
    proxy = await registry.update(
        name, _opt_str(body, "listen"), _opt_str(body, "upstream"), _opt_bool(body, "enabled")
    )
    return _json(proxy.to_json())


async def proxy_delete(request: web.Request) -> web.Response:
    await _registry(request).delete(request.match_info["proxy"])
    return web.Response(status=204)


async def toxic_index(request: web.Request) -> web.Response:
    return _json(_registry(request).get(request.match_info["proxy"]).toxics_json())


async def toxic_create(request: web.Request) -> web.Response:
    proxy = _registry(request).get(request.match_info["proxy"])
    toxic = toxic_from_json(await _json_body(request))
    proxy.add_toxic(toxic)
    return _json(toxic.to_json())


async def toxic_show(request: web.Request) -> web.Response:
    proxy = _registry(request).get(request.match_info["proxy"])
    return _json(proxy.get_toxic(request.match_info["toxic"]).to_json())


async def toxic_update(request: web.Request) -> web.Response:
    proxy = _registry(request).get(request.match_info["proxy"])
    proxy.get_toxic(request.match_info["toxic"])
    toxic = proxy.update_toxic(request.match_info["toxic"], await _json_body(request))
    return _json(toxic.to_json())


async def toxic_delete(request: web.Request) -> web.Response:
    proxy = _registry(request).get(request.match_info["proxy"])
    proxy.remove_toxic(request.match_info["toxic"])
    return web.Response(status=204)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.headers.get("User-Agent", "").startswith("Mozilla/"):
        return web.Response(status=403, text="User agent not allowed\n")
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.status >= 500:
            log.error("request failed", extra={"path": request.path, "error": exc.message})
        return _json(exc.to_json(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Unknown route or method: same error shape as everything else.
        return _json({"error": (exc.reason or "error").lower(), "status": exc.status}, status=exc.status)
    except Exception as exc:
        log.exception("unexpected error", extra={"path": request.path})
        return _json({"error": f"internal error: {exc!r}", "status": 500}, status=500)


def create_app(registry: ProxyRegistry) -> web.Application:
    """The aiohttp application serving ``registry`` (its lifecycle stays with the caller)."""
    app = web.Application(middlewares=[_errors])
    app[REGISTRY_KEY] = registry
    r = app.router
    r.add_get("/version", version)
    r.add_post("/reset", reset)
    r.add_get("/proxies", proxy_index)
    r.add_post("/proxies", proxy_create)
    r.add_post("/populate", populate)
    r.add_get("/proxies/{proxy}", proxy_show)
    r.add_post("/proxies/{proxy}", proxy_update)
    r.add_patch("/proxies/{proxy}", proxy_update)
    r.add_delete("/proxies/{proxy}", proxy_delete)
    r.add_get("/proxies/{proxy}/toxics", toxic_index)
    r.add_post("/proxies/{proxy}/toxics", toxic_create)
    r.add_get("/proxies/{proxy}/toxics/{toxic}", toxic_show)
    r.add_post("/proxies/{proxy}/toxics/{toxic}", toxic_update)
    r.add_patch("/proxies/{proxy}/toxics/{toxic}", toxic_update)
    r.add_delete("/proxies/{proxy}/toxics/{toxic}", toxic_delete)
    return app
