"""Each toxic has its observable effect on real loopback connections, including live ones.

Timing bounds are generous (the machine is shared); each test also checks the control case (no
toxic: fast) so that a toxic doing nothing fails it. Waits are socket timeouts, i.e. deadlines.
"""

from __future__ import annotations

import errno
import random
import socket
import threading
import time

import pytest
from toxiproxy import Proxy, Toxiproxy
from toxiproxy.api import APIConsumer

from chaos.toxiproxy import ToxiproxyThread
from chaos.toxiproxy.loopback import LoopbackServer, recv_exact

# Real sockets and processes, no broker: the cluster fixture is not used.
pytestmark = pytest.mark.integration


# server, tp and echo come from conftest.py.


@pytest.fixture
def proxy(tp: Toxiproxy, echo: LoopbackServer) -> Proxy:
    return tp.create(upstream=echo.address, name="echo")


def _connect(listen: str, timeout: float = 5.0) -> socket.socket:
    host, port = listen.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Seconds for ``payload`` to come back from the echo server."""
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exact(sock, len(payload)) == payload
    return time.monotonic() - start


def _closed(sock: socket.socket, timeout: float = 5.0) -> tuple[str, float, bytes]:
    """Wait (deadline ``timeout``) for the peer to close: ("eof"|"reset", seconds, data read)."""
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return "reset", time.monotonic() - start, data
    return "eof", time.monotonic() - start, data


def _silent(sock: socket.socket, window: float) -> bool:
    """True if nothing arrives and the connection stays open during ``window`` seconds."""
    sock.settimeout(window)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    return False


# -- latency ---------------------------------------------------------------------------------------


def test_latency_delays_each_round_trip(proxy: Proxy) -> None:
    with _connect(proxy.listen) as sock:
        assert _round_trip(sock) < 0.1
        proxy.add_toxic(type="latency", stream="downstream", attributes={"latency": 200})
        # Added on a live connection: it applies to that connection at once.
        assert 0.19 <= _round_trip(sock) < 1.0
    with _connect(proxy.listen) as sock:
        assert 0.19 <= _round_trip(sock) < 1.0
    proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 100})
    with _connect(proxy.listen) as sock:
        assert 0.29 <= _round_trip(sock) < 1.2  # both directions add up


def test_two_latency_toxics_on_one_stream_add_up(proxy: Proxy) -> None:
    proxy.add_toxic(type="latency", name="a", attributes={"latency": 150})
    proxy.add_toxic(type="latency", name="b", attributes={"latency": 150})
    with _connect(proxy.listen) as sock:
        assert 0.29 <= _round_trip(sock) < 1.5


def test_latency_pipelines_a_stream(proxy: Proxy) -> None:
    """Latency delays data, it does not cap throughput: 20 writes take ~1 latency, not 20."""
    proxy.add_toxic(type="latency", attributes={"latency": 150})
    with _connect(proxy.listen) as sock:
        start = time.monotonic()
        for _ in range(20):
            sock.sendall(b"x" * 1000)
            time.sleep(0.005)
        assert recv_exact(sock, 20_000) == b"x" * 20_000
        assert 0.15 <= time.monotonic() - start < 1.0


def test_removing_latency_releases_held_data(proxy: Proxy) -> None:
    proxy.add_toxic(type="latency", attributes={"latency": 10_000})
    with _connect(proxy.listen) as sock:
        start = time.monotonic()
        sock.sendall(b"held")
        assert _silent(sock, 0.2)
        proxy.destroy_toxic("latency_downstream")
        sock.settimeout(5)
        assert recv_exact(sock, 4) == b"held"
        assert time.monotonic() - start < 2.0


def test_updating_a_toxic_applies_to_held_data(proxy: Proxy) -> None:
    """``POST /proxies/{p}/toxics/{t}`` (no toxiproxy-python method): held data is re-timed."""
    proxy.add_toxic(type="latency", name="slow", attributes={"latency": 10_000})
    with _connect(proxy.listen) as sock:
        start = time.monotonic()
        sock.sendall(b"held")
        assert _silent(sock, 0.2)
        APIConsumer.post("/proxies/echo/toxics/slow", json={"attributes": {"latency": 300}})
        sock.settimeout(5)
        assert recv_exact(sock, 4) == b"held"
        assert 0.29 <= time.monotonic() - start < 2.0
        assert 0.29 <= _round_trip(sock) < 1.5  # and later data gets the new latency


def test_toxicity_zero_never_applies(proxy: Proxy) -> None:
    proxy.add_toxic(type="latency", toxicity=0.0, attributes={"latency": 1000})
    with _connect(proxy.listen) as sock:
        assert _round_trip(sock) < 0.5


# -- bandwidth -------------------------------------------------------------------------------------


def test_bandwidth_limits_throughput_on_a_live_connection(proxy: Proxy) -> None:
    payload = b"b" * 50_000
    with _connect(proxy.listen) as sock:
        assert _round_trip(sock, payload) < 0.3
        proxy.add_toxic(type="bandwidth", stream="upstream", attributes={"rate": 100})  # 100 KB/s
        elapsed = _round_trip(sock, payload)
        assert 0.35 <= elapsed < 2.0, elapsed  # 50 KB at 100 KB/s = 0.5 s
        proxy.destroy_toxic("bandwidth_upstream")
        assert _round_trip(sock, payload) < 0.3


# -- timeout ---------------------------------------------------------------------------------------


def test_timeout_zero_stalls_until_removed(proxy: Proxy) -> None:
    with _connect(proxy.listen) as sock:
        assert _round_trip(sock) < 0.1
        proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 0})
        sock.sendall(b"lost")
        assert _silent(sock, 0.5)  # nothing through, connection kept open
        with _connect(proxy.listen) as other:  # new connections stall too
            other.sendall(b"lost")
            assert _silent(other, 0.2)
            proxy.destroy_toxic("timeout_upstream")
            # As Toxiproxy: the stalled connections had data dropped, removal closes them...
            assert _closed(other)[0] == "eof"
        assert _closed(sock)[0] == "eof"
    # ... and the link works again for new connections.
    with _connect(proxy.listen) as sock:
        assert _round_trip(sock) < 0.5


def test_timeout_closes_the_connection_after_the_delay(proxy: Proxy) -> None:
    proxy.add_toxic(type="timeout", attributes={"timeout": 300})
    with _connect(proxy.listen) as sock:
        sock.sendall(b"x")
        kind, elapsed, data = _closed(sock)
        assert (kind, data) == ("eof", b"")
        assert 0.25 <= elapsed < 2.0


# -- reset_peer ------------------------------------------------------------------------------------


def test_reset_peer_resets_the_connection(proxy: Proxy) -> None:
    proxy.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 0})
    with _connect(proxy.listen) as sock:
        sock.sendall(b"x")
        with pytest.raises(ConnectionResetError) as err:
            sock.settimeout(5)
            while sock.recv(1):
                pass
        assert err.value.errno == errno.ECONNRESET


def test_reset_peer_waits_for_its_timeout(proxy: Proxy) -> None:
    proxy.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 300})
    with _connect(proxy.listen) as sock:
        sock.sendall(b"x")
        kind, elapsed, _ = _closed(sock)
        assert kind == "reset"
        assert 0.25 <= elapsed < 2.0


# -- slicer ----------------------------------------------------------------------------------------


def test_slicer_splits_data_into_small_delayed_pieces(proxy: Proxy) -> None:
    payload = bytes(range(256)) * 4  # 1024 bytes
    with _connect(proxy.listen) as sock:
        sock.sendall(payload)
        assert recv_exact(sock, len(payload)) == payload  # control: one read gets it all
        proxy.add_toxic(
            type="slicer", attributes={"average_size": 100, "size_variation": 20, "delay": 20_000}
        )
        sock.sendall(payload)
        pieces: list[bytes] = []
        while sum(map(len, pieces)) < len(payload):
            pieces.append(sock.recv(65536))
            assert pieces[-1]
    assert b"".join(pieces) == payload
    assert len(pieces) >= 5  # ~10 pieces 20 ms apart arrive in separate reads
    assert max(map(len, pieces)) <= 240


# -- limit_data ------------------------------------------------------------------------------------


def test_limit_data_closes_after_n_bytes(proxy: Proxy) -> None:
    proxy.add_toxic(type="limit_data", attributes={"bytes": 100})
    with _connect(proxy.listen) as sock:
        sock.sendall(b"d" * 300)
        kind, _, data = _closed(sock)
    assert (kind, data) == ("eof", b"d" * 100)


# -- slow_close ------------------------------------------------------------------------------------


def test_slow_close_delays_the_close(tp: Toxiproxy) -> None:
    with LoopbackServer("hello") as hello:  # an upstream that closes right away
        proxy = tp.create(upstream=hello.address, name="hello")
        with _connect(proxy.listen) as sock:
            kind, fast, data = _closed(sock)
            assert (kind, data) == ("eof", b"hello")
            assert fast < 0.2
        proxy.add_toxic(type="slow_close", attributes={"delay": 500})
        with _connect(proxy.listen) as sock:
            kind, slow, data = _closed(sock)
        assert (kind, data) == ("eof", b"hello")
        assert 0.45 <= slow < 2.5


# -- disabled proxy --------------------------------------------------------------------------------


def test_disabled_proxy_refuses_connections(proxy: Proxy) -> None:
    with _connect(proxy.listen) as sock:
        proxy.disable()
        assert _closed(sock)[0] == "eof"
    with pytest.raises(ConnectionRefusedError):
        _connect(proxy.listen)
    proxy.enable()
    with _connect(proxy.listen) as sock:
        assert _round_trip(sock) < 0.5


# -- integrity and clean-up ------------------------------------------------------------------------


def test_many_connections_through_a_toxic_chain_keep_every_byte_in_order(
    proxy: Proxy, server: ToxiproxyThread
) -> None:
    proxy.add_toxic(type="latency", attributes={"latency": 20, "jitter": 10})
    proxy.add_toxic(type="slicer", attributes={"average_size": 500, "size_variation": 200, "delay": 0})
    proxy.add_toxic(type="bandwidth", stream="upstream", attributes={"rate": 20_000})
    errors: list[BaseException] = []

    def one(seed: int) -> None:
        payload = random.Random(seed).randbytes(100_000)
        try:
            with _connect(proxy.listen, timeout=10) as sock:
                sender = threading.Thread(target=sock.sendall, args=(payload,))
                sender.start()
                received = recv_exact(sock, len(payload))
                sender.join()
            assert received == payload
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert errors == []
    # Every proxied connection is forgotten once its client closed (nothing leaks).
    live = server.server.registry.get("echo").connections
    deadline = time.monotonic() + 5
    while live and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not live


def test_ipv6_loopback(tp: Toxiproxy, echo: LoopbackServer) -> None:
    proxy = tp.create(upstream=echo.address, name="v6", listen="[::1]:0")
    assert proxy.listen.startswith("[::1]:")
    host, port = proxy.listen.rsplit(":", 1)
    with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as sock:
        assert _round_trip(sock) < 0.5


def test_upstream_down_closes_the_client_at_once(tp: Toxiproxy) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    dead = f"127.0.0.1:{probe.getsockname()[1]}"
    probe.close()  # nothing listens there any more: like a killed broker node
    proxy = tp.create(upstream=dead, name="dead")
    with _connect(proxy.listen) as sock:
        kind, elapsed, data = _closed(sock)
    assert (kind, data) == ("eof", b"")
    assert elapsed < 2.0
