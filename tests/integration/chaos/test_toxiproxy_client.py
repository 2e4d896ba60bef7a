"""Every toxiproxy-python (0.1.1) call against this server, over real loopback sockets.

The server runs in a background thread (as a synchronous drill would use it); the upstream is a
threaded echo server. No broker is needed.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from toxiproxy import Proxy, Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from chaos.toxiproxy import ToxiproxyThread, api_alive, launch, start_subprocess
from chaos.toxiproxy.loopback import LoopbackServer, recv_exact

# Real sockets and processes, no broker: the cluster fixture is not used.
pytestmark = pytest.mark.integration


# server, tp and echo come from conftest.py.


def _connect(listen: str) -> socket.socket:
    host, port = listen.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _echoes(listen: str) -> bool:
    with _connect(listen) as sock:
        sock.sendall(b"ping")
        return recv_exact(sock, 4) == b"ping"


def _wait_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the peer closes; return what was read. Fails on timeout."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_update_api_consumer_running_and_version(tp: Toxiproxy, server: ToxiproxyThread) -> None:
    assert (APIConsumer.host, APIConsumer.port) == (server.host, server.port)
    assert tp.running() is True
    version = tp.version()
    assert isinstance(version, bytes)
    assert b'"version"' in version


def test_create_proxies_and_get_proxy(tp: Toxiproxy, echo: LoopbackServer) -> None:
    proxy = tp.create(upstream=echo.address, name="rabbit1")
    assert isinstance(proxy, Proxy)
    assert (proxy.name, proxy.upstream, proxy.enabled) == ("rabbit1", echo.address, True)
    assert proxy.listen.startswith("127.0.0.1:")
    assert _echoes(proxy.listen)

    listed = tp.proxies()
    assert list(listed) == ["rabbit1"]
    assert listed["rabbit1"].listen == proxy.listen
    got = tp.get_proxy("rabbit1")
    assert got is not None
    assert (got.name, got.listen, got.upstream) == ("rabbit1", proxy.listen, echo.address)
    assert tp.get_proxy("nope") is None


def test_create_existing_raises_proxy_exists(tp: Toxiproxy, echo: LoopbackServer) -> None:
    tp.create(upstream=echo.address, name="dup")
    with pytest.raises(ProxyExists):
        tp.create(upstream=echo.address, name="dup")  # the client checks the list first
    with pytest.raises(ProxyExists):  # and the server answers 409 on its own
        APIConsumer.post("/proxies", json={"name": "dup", "upstream": echo.address})


def test_create_disabled_and_explicit_listen(tp: Toxiproxy, echo: LoopbackServer) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proxy = tp.create(upstream=echo.address, name="cold", listen=f"127.0.0.1:{port}", enabled=False)
    assert (proxy.listen, proxy.enabled) == (f"127.0.0.1:{port}", False)
    with pytest.raises(ConnectionRefusedError):
        _connect(proxy.listen)
    proxy.enable()
    assert _echoes(proxy.listen)


def test_disable_drops_connections_and_refuses_new_ones(tp: Toxiproxy, echo: LoopbackServer) -> None:
    proxy = tp.create(upstream=echo.address, name="link")
    with _connect(proxy.listen) as live:
        live.sendall(b"a")
        assert recv_exact(live, 1) == b"a"

        proxy.disable()
        assert proxy.enabled is False
        assert tp.get_proxy("link").enabled is False
        assert _wait_eof(live) == b""  # the existing connection was closed
    with pytest.raises(ConnectionRefusedError):
        _connect(proxy.listen)

    proxy.enable()
    assert tp.get_proxy("link").enabled is True
    assert _echoes(proxy.listen)

    with proxy.down(), pytest.raises(ConnectionRefusedError):
        _connect(proxy.listen)
    assert _echoes(proxy.listen)


def test_add_toxic_toxics_get_toxic_destroy_toxic(tp: Toxiproxy, echo: LoopbackServer) -> None:
    proxy = tp.create(upstream=echo.address, name="tox")
    proxy.add_toxic(type="latency", attributes={"latency": 50, "jitter": 5})
    proxy.add_toxic(type="bandwidth", stream="upstream", name="bw", toxicity=0.5, attributes={"rate": 1000})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream", "bw"}
    lat = toxics["latency_downstream"]
    assert (lat.type, lat.stream, lat.toxicity) == ("latency", "downstream", 1.0)
    assert lat.attributes == {"latency": 50, "jitter": 5}
    bw = proxy.get_toxic("bw")
    assert bw is not None
    assert (bw.type, bw.stream, bw.toxicity, bw.attributes) == ("bandwidth", "upstream", 0.5, {"rate": 1000})
    assert proxy.get_toxic("nope") is None

    assert proxy.destroy_toxic("bw") is True
    assert set(proxy.toxics()) == {"latency_downstream"}
    with pytest.raises(NotFound):
        proxy.destroy_toxic("bw")
    with pytest.raises(ProxyExists):  # 409 for a toxic name in use, mapped by the client
        proxy.add_toxic(type="latency")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="teleport")


def test_toxics_of_a_missing_proxy_is_not_found(tp: Toxiproxy) -> None:
    ghost = Proxy(name="ghost", upstream="127.0.0.1:1", enabled=True, listen="127.0.0.1:1")
    with pytest.raises(NotFound):
        ghost.toxics()


def test_destroy_and_destroy_all(tp: Toxiproxy, echo: LoopbackServer) -> None:
    one = tp.create(upstream=echo.address, name="one")
    tp.create(upstream=echo.address, name="two")
    assert tp.destroy(one) is True
    assert tp.destroy("not a proxy") is False
    assert tp.get_proxy("one") is None
    with pytest.raises(ConnectionRefusedError):
        _connect(one.listen)
    tp.destroy_all()
    assert tp.proxies() == {}


def test_populate(tp: Toxiproxy, echo: LoopbackServer) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    spec = {"name": "pop", "upstream": echo.address, "listen": f"127.0.0.1:{port}"}
    created = tp.populate([spec])
    assert [p.name for p in created] == ["pop"]
    assert _echoes(f"127.0.0.1:{port}")
    # Same definition again: nothing to create (the client keeps the existing proxy).
    assert tp.populate([spec]) == []
    other = LoopbackServer("echo")
    try:
        # A changed upstream: the client destroys and re-creates it.
        changed = tp.populate([{**spec, "upstream": other.address}])
        assert [p.upstream for p in changed] == [other.address]
        assert tp.get_proxy("pop").upstream == other.address
        assert _echoes(f"127.0.0.1:{port}")
    finally:
        other.close()


def test_reset_enables_proxies_and_removes_toxics(tp: Toxiproxy, echo: LoopbackServer) -> None:
    proxy = tp.create(upstream=echo.address, name="r")
    proxy.add_toxic(type="latency", attributes={"latency": 1000})
    proxy.disable()
    assert tp.reset() is True
    again = tp.get_proxy("r")
    assert again.enabled is True
    assert again.toxics() == {}
    with _connect(proxy.listen) as sock:
        start = time.monotonic()
        sock.sendall(b"x")
        assert recv_exact(sock, 1) == b"x"
        assert time.monotonic() - start < 0.5  # the 1 s latency toxic is gone


def test_subprocess_server_and_launch(echo: LoopbackServer) -> None:
    handle = start_subprocess(port=0)
    try:
        assert handle.kind == "subprocess"
        proc = handle.process
        assert proc is not None
        assert api_alive(handle.url)
        client = Toxiproxy()
        client.update_api_consumer(handle.host, handle.port)
        proxy = client.create(upstream=echo.address, name="sub")
        assert _echoes(proxy.listen)
        # launch() with a URL reuses the running server instead of starting one.
        reused = launch(handle.url)
        assert (reused.kind, reused.url, reused.process) == ("external", handle.url, None)
        reused.stop()
        assert api_alive(handle.url)
    finally:
        handle.stop()
    assert proc.poll() is not None  # the child exited
    assert not api_alive(handle.url)
    with pytest.raises(ConnectionRefusedError):
        _connect(proxy.listen)  # the proxies went with the process


def test_launch_in_a_thread_without_a_binary(echo: LoopbackServer) -> None:
    with launch(binary=None, mode="thread") as handle:
        assert handle.kind == "thread"
        assert api_alive(handle.url)
    assert not api_alive(handle.url)
    with pytest.raises(RuntimeError, match="no Toxiproxy API"):
        launch(handle.url)


def test_subprocess_logs_json_lines(tmp_path: Path, echo: LoopbackServer) -> None:
    log_path = tmp_path / "toxiproxy.log"
    handle = start_subprocess(port=0, log_path=str(log_path))
    try:
        client = Toxiproxy()
        client.update_api_consumer(handle.host, handle.port)
        proxy = client.create(upstream=echo.address, name="logged")
        proxy.add_toxic(type="latency", attributes={"latency": 1})
        proxy.destroy()
    finally:
        handle.stop()
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert records
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    messages = [(r["msg"], r.get("proxy")) for r in records]
    for expected in ("proxy created", "toxic added", "proxy deleted"):
        assert (expected, "logged") in messages
