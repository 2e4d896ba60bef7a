"""The REST API of the Toxiproxy-compatible server: routes, JSON shapes, errors, state changes.

The server runs in the test's event loop on an ephemeral loopback port; requests go over real HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from chaos.toxiproxy import ToxiproxyServer
from chaos.toxiproxy.loopback import LoopbackServer


@pytest.fixture
def echo() -> Iterator[LoopbackServer]:
    with LoopbackServer("echo") as server:
        yield server


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with ToxiproxyServer(port=0) as server, aiohttp.ClientSession(server.url) as session:
        yield Api(session, server)


class Api:
    def __init__(self, session: aiohttp.ClientSession, server: ToxiproxyServer) -> None:
        self.session = session
        self.server = server

    async def call(
        self, method: str, path: str, body: Any = None, data: bytes | None = None
    ) -> tuple[int, Any]:
        async with self.session.request(method, path, json=body, data=data) as resp:
            text = await resp.text()
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, text

    async def create(self, name: str, upstream: str, **extra: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "/proxies", {"name": name, "upstream": upstream, **extra})
        assert status == 201, body
        assert isinstance(body, dict)
        return body


async def _echoes(listen: str) -> bool:
    """True if a connection to ``listen`` relays a message to the echo server and back."""
    host, port = listen.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"ping")
        return await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    finally:
        writer.close()


async def test_version_is_json(api: Api) -> None:
    status, body = await api.call("GET", "/version")
    assert status == 200
    assert body["version"].startswith("2.")


async def test_create_show_and_list_proxy(api: Api, echo: LoopbackServer) -> None:
    created = await api.create("rabbit1", echo.address)
    assert set(created) == {"name", "listen", "upstream", "enabled", "toxics"}
    assert created["name"] == "rabbit1"
    assert created["upstream"] == echo.address
    assert created["enabled"] is True
    assert created["toxics"] == []
    # The default listen address 127.0.0.1:0 is replaced by the port actually bound.
    assert created["listen"].startswith("127.0.0.1:")
    assert not created["listen"].endswith(":0")
    assert await _echoes(created["listen"])
    assert await api.call("GET", "/proxies/rabbit1") == (200, created)
    assert await api.call("GET", "/proxies") == (200, {"rabbit1": created})


async def test_duplicate_proxy_is_409(api: Api, echo: LoopbackServer) -> None:
    await api.create("dup", echo.address)
    status, body = await api.call("POST", "/proxies", {"name": "dup", "upstream": echo.address})
    assert (status, body) == (409, {"error": "proxy already exists", "status": 409})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"upstream": "127.0.0.1:1"}, "missing required field: name"),
        ({"name": "x"}, "missing required field: upstream"),
        ({"name": "x", "upstream": "127.0.0.1:1", "enabled": "yes"}, "bad request body: enabled must be"),
        ({"name": 5, "upstream": "127.0.0.1:1"}, "bad request body: name must be a string"),
        ([], "bad request body: expected a JSON object"),
    ],
)
async def test_invalid_proxy_bodies_are_400(api: Api, body: Any, message: str) -> None:
    status, answer = await api.call("POST", "/proxies", body)
    assert status == 400
    assert answer["status"] == 400
    assert answer["error"].startswith(message)


@pytest.mark.parametrize(
    "path",
    ["/proxies", "/populate", "/proxies/p", "/proxies/p/toxics", "/proxies/p/toxics/latency_downstream"],
)
@pytest.mark.parametrize("payload", [b"{not json", b"", b"\xff\xfe"])
async def test_malformed_json_is_400_with_a_clear_message(
    api: Api, echo: LoopbackServer, path: str, payload: bytes
) -> None:
    await api.create("p", echo.address)
    await api.call("POST", "/proxies/p/toxics", {"type": "latency"})
    status, body = await api.call("POST", path, data=payload)
    assert status == 400
    assert body["status"] == 400
    assert body["error"].startswith("bad request body: ")
    assert "JSON" in body["error"]


@pytest.mark.parametrize(
    ("field", "address"),
    [
        ("listen", "0.0.0.0:0"),
        ("listen", "[::]:0"),
        ("listen", "10.1.2.3:5000"),
        ("upstream", "10.1.2.3:5672"),
        ("upstream", "example.com:5672"),
        ("upstream", "192.168.0.1:5672"),
    ],
)
async def test_non_loopback_addresses_are_refused(
    api: Api, echo: LoopbackServer, field: str, address: str
) -> None:
    body = {"name": "bad", "upstream": echo.address, "listen": "127.0.0.1:0", field: address}
    status, answer = await api.call("POST", "/proxies", body)
    assert status == 400
    assert "not a loopback address" in answer["error"]
    assert address in answer["error"]
    assert await api.call("GET", "/proxies") == (200, {})
    # Same rule when updating an existing proxy; the proxy is left as it was.
    created = await api.create("good", echo.address)
    status, answer = await api.call("POST", "/proxies/good", {field: address})
    assert status == 400
    assert "not a loopback address" in answer["error"]
    assert await api.call("GET", "/proxies/good") == (200, created)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/proxies/missing", None),
        ("POST", "/proxies/missing", {"enabled": False}),
        ("DELETE", "/proxies/missing", None),
        ("GET", "/proxies/missing/toxics", None),
        ("POST", "/proxies/missing/toxics", {"type": "latency"}),
        ("GET", "/proxies/missing/toxics/t", None),
        ("DELETE", "/proxies/missing/toxics/t", None),
    ],
)
async def test_unknown_proxy_is_404(api: Api, method: str, path: str, body: Any) -> None:
    assert await api.call(method, path, body) == (404, {"error": "proxy not found", "status": 404})


async def test_unknown_route_is_a_json_404(api: Api) -> None:
    status, body = await api.call("GET", "/nothing/here")
    assert (status, body["status"]) == (404, 404)


async def test_browsers_are_refused(api: Api) -> None:
    async with api.session.get("/proxies", headers={"User-Agent": "Mozilla/5.0"}) as resp:
        assert resp.status == 403


async def test_toxic_lifecycle(api: Api, echo: LoopbackServer) -> None:
    await api.create("p", echo.address)
    status, toxic = await api.call(
        "POST", "/proxies/p/toxics", {"type": "latency", "stream": "upstream", "attributes": {"latency": 5}}
    )
    assert (status, toxic) == (
        200,
        {
            "name": "latency_upstream",
            "type": "latency",
            "stream": "upstream",
            "toxicity": 1.0,
            "attributes": {"latency": 5, "jitter": 0},
        },
    )
    dup = await api.call("POST", "/proxies/p/toxics", {"type": "latency", "stream": "upstream"})
    assert dup == (409, {"error": "toxic already exists", "status": 409})
    await api.call(
        "POST", "/proxies/p/toxics", {"type": "bandwidth", "name": "bw", "attributes": {"rate": 9}}
    )
    status, listed = await api.call("GET", "/proxies/p/toxics")
    assert [t["name"] for t in listed] == ["latency_upstream", "bw"]
    assert (await api.call("GET", "/proxies/p"))[1]["toxics"] == listed

    status, updated = await api.call(
        "POST", "/proxies/p/toxics/latency_upstream", {"toxicity": 0.5, "attributes": {"jitter": 2}}
    )
    assert status == 200
    assert updated["toxicity"] == 0.5
    assert updated["attributes"] == {"latency": 5, "jitter": 2}
    assert await api.call("GET", "/proxies/p/toxics/latency_upstream") == (200, updated)

    assert (await api.call("DELETE", "/proxies/p/toxics/latency_upstream"))[0] == 204
    missing = {"error": "toxic not found", "status": 404}
    assert await api.call("GET", "/proxies/p/toxics/latency_upstream") == (404, missing)
    assert await api.call("DELETE", "/proxies/p/toxics/latency_upstream") == (404, missing)
    assert await api.call("POST", "/proxies/p/toxics/latency_upstream", {"toxicity": 1}) == (404, missing)
    assert [t["name"] for t in (await api.call("GET", "/proxies/p/toxics"))[1]] == ["bw"]


async def test_invalid_toxic_is_400(api: Api, echo: LoopbackServer) -> None:
    await api.create("p", echo.address)
    status, body = await api.call("POST", "/proxies/p/toxics", {"type": "teleport"})
    assert status == 400
    assert body["error"].startswith("invalid toxic type")
    status, body = await api.call("POST", "/proxies/p/toxics", {"type": "latency", "stream": "up"})
    assert (status, body["error"]) == (400, "stream was invalid, can be either upstream or downstream")


async def test_disable_enable_and_move_a_proxy(api: Api, echo: LoopbackServer) -> None:
    created = await api.create("p", echo.address)
    status, body = await api.call("POST", "/proxies/p", {"enabled": False})
    assert (status, body["enabled"]) == (200, False)
    host, port = created["listen"].rsplit(":", 1)
    with pytest.raises(OSError):
        await asyncio.open_connection(host, int(port))
    status, body = await api.call("POST", "/proxies/p", {"enabled": True})
    assert (status, body["enabled"], body["listen"]) == (200, True, created["listen"])
    assert await _echoes(body["listen"])
    # A new listen address: the proxy moves, the old port stops answering.
    status, moved = await api.call("PATCH", "/proxies/p", {"listen": "127.0.0.2:0"})
    assert status == 200
    assert moved["listen"].startswith("127.0.0.2:")
    assert await _echoes(moved["listen"])
    with pytest.raises(OSError):
        await asyncio.open_connection(host, int(port))


async def test_delete_proxy_stops_listening(api: Api, echo: LoopbackServer) -> None:
    created = await api.create("p", echo.address)
    assert (await api.call("DELETE", "/proxies/p"))[0] == 204
    assert (await api.call("GET", "/proxies/p"))[0] == 404
    host, port = created["listen"].rsplit(":", 1)
    with pytest.raises(OSError):
        await asyncio.open_connection(host, int(port))


async def test_populate_creates_keeps_and_replaces(api: Api, echo: LoopbackServer) -> None:
    other = LoopbackServer("echo")
    try:
        kept = await api.create("kept", echo.address, listen="127.0.0.1:0")
        await api.call("POST", "/proxies/kept/toxics", {"type": "latency"})
        await api.create("replaced", echo.address)
        await api.call("POST", "/proxies/replaced/toxics", {"type": "latency"})
        status, body = await api.call(
            "POST",
            "/populate",
            [
                {"name": "kept", "listen": kept["listen"], "upstream": echo.address},
                {"name": "replaced", "listen": "127.0.0.1:0", "upstream": other.address},
                {"name": "new", "upstream": echo.address, "enabled": False},
            ],
        )
        assert status == 201
        by_name = {p["name"]: p for p in body["proxies"]}
        assert list(by_name) == ["kept", "replaced", "new"]
        assert len(by_name["kept"]["toxics"]) == 1  # unchanged proxy kept with its toxics
        assert by_name["replaced"]["upstream"] == other.address
        assert by_name["replaced"]["toxics"] == []
        assert by_name["new"]["enabled"] is False
        assert await _echoes(by_name["replaced"]["listen"])
    finally:
        other.close()


async def test_populate_is_all_or_nothing(api: Api, echo: LoopbackServer) -> None:
    status, body = await api.call(
        "POST",
        "/populate",
        [{"name": "a", "upstream": echo.address}, {"name": "b", "upstream": "8.8.8.8:53"}],
    )
    assert status == 400
    assert "not a loopback address" in body["error"]
    status, body = await api.call(
        "POST", "/populate", [{"name": "a", "upstream": echo.address}, {"name": "b"}]
    )
    assert (status, body["error"]) == (400, "missing required field: upstream at proxy 2")
    assert await api.call("GET", "/proxies") == (200, {})


async def test_reset_enables_everything_and_removes_toxics(api: Api, echo: LoopbackServer) -> None:
    await api.create("a", echo.address)
    await api.create("b", echo.address, enabled=False)
    await api.call("POST", "/proxies/a/toxics", {"type": "timeout", "attributes": {"timeout": 0}})
    status, _ = await api.call("POST", "/reset")
    assert status == 204
    _, proxies = await api.call("GET", "/proxies")
    assert {n: (p["enabled"], p["toxics"]) for n, p in proxies.items()} == {"a": (True, []), "b": (True, [])}
    assert await _echoes(proxies["a"]["listen"])
    assert await _echoes(proxies["b"]["listen"])


async def test_changing_the_upstream_moves_new_connections(api: Api, echo: LoopbackServer) -> None:
    created = await api.create("p", echo.address)
    assert await _echoes(created["listen"])
    with LoopbackServer("echo") as other:
        status, moved = await api.call("POST", "/proxies/p", {"upstream": other.address})
        assert (status, moved["upstream"], moved["enabled"]) == (200, other.address, True)
        before = echo.accepted
        assert await _echoes(moved["listen"])
        assert (echo.accepted, other.accepted) == (before, 1)


async def test_upstream_equal_to_listen_is_refused(api: Api) -> None:
    status, body = await api.call(
        "POST", "/proxies", {"name": "loop", "listen": "127.0.0.1:4999", "upstream": "127.0.0.1:4999"}
    )
    assert status == 400
    assert "own listen address" in body["error"]


async def test_populate_from_python_like_a_config_file(api: Api, echo: LoopbackServer) -> None:
    await api.server.populate(
        [
            {"name": "cfg", "upstream": echo.address},
            {"name": "off", "upstream": echo.address, "enabled": False},
        ]
    )
    _, proxies = await api.call("GET", "/proxies")
    assert {n: p["enabled"] for n, p in proxies.items()} == {"cfg": True, "off": False}
    assert await _echoes(proxies["cfg"]["listen"])
