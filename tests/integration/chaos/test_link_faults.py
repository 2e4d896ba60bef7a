"""Client ↔ broker link faults through the Toxiproxy-compatible proxy, against real broker nodes.

Each fault is observed on a raw AMQP handshake through the node's proxy: the client sends the
protocol header, the broker answers with a Connection.Start frame (a few hundred bytes).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from chaos.faults import (
    LinkBandwidth,
    LinkDown,
    LinkLatency,
    LinkLimitData,
    LinkResetPeer,
    LinkSlicer,
    LinkSlowClose,
    LinkTimeout,
)
from chaos.faults.base import Fault
from chaos.injector import FaultInjector
from chaos.journal import Journal
from chaos.links import LinkProxies
from rig.cluster import LocalCluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def links(local_cluster: LocalCluster) -> Iterator[LinkProxies]:
    lp = LinkProxies.start(local_cluster)
    try:
        yield lp
    finally:
        lp.stop()


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.jsonl")


def proxy_addr(links: LinkProxies, node: int) -> tuple[str, int]:
    host, port = links.state.proxies[f"rabbit{node}"].rsplit(":", 1)
    return host, int(port)


def handshake(
    addr: tuple[str, int], header: bytes = b"AMQP\x00\x00\x09\x01", timeout: float = 5.0
) -> tuple[float, int, bytes, str]:
    """(seconds to the end, chunks received, bytes, how it ended: frame | eof | reset | timeout)."""
    t0 = time.monotonic()
    data, chunks = b"", 0
    with socket.create_connection(addr, timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(header)
        while True:
            try:
                part = s.recv(65536)
            except TimeoutError:
                return time.monotonic() - t0, chunks, data, "timeout"
            except ConnectionResetError:
                return time.monotonic() - t0, chunks, data, "reset"
            if not part:
                return time.monotonic() - t0, chunks, data, "eof"
            data += part
            chunks += 1
            if (
                header.startswith(b"AMQP")
                and len(data) >= 7
                and len(data) >= 8 + int.from_bytes(data[3:7], "big")
            ):
                return time.monotonic() - t0, chunks, data, "frame"


def journaled(journal: Journal, kind: str) -> bool:
    events = [(r["event"], r["kind"]) for r in journal.records()]
    return ("applied", kind) in events and ("undo", kind) in events and not journal.open_faults()


def test_real_amqp_through_the_proxies(links: LinkProxies) -> None:
    async def roundtrip() -> bytes:
        conn = await aio_pika.connect(links.amqp_urls[0])
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue("", exclusive=True)
            await ch.default_exchange.publish(aio_pika.Message(b"through the proxy"), q.name)
            msg = await q.get(timeout=5)
            await msg.ack()
            return msg.body

    assert asyncio.run(roundtrip()) == b"through the proxy"
    took, _, _, end = handshake(proxy_addr(links, 1))
    assert end == "frame" and took < 0.5


def run(inj: FaultInjector, fault: Fault, probe_node: int = 1, **kw: object) -> tuple[float, int, bytes, str]:
    with inj.applied(fault):
        return handshake(proxy_addr_of(inj, probe_node), **kw)  # type: ignore[arg-type]


def proxy_addr_of(inj: FaultInjector, node: int) -> tuple[str, int]:
    assert isinstance(inj.cluster, LocalCluster)
    lp = LinkProxies.attach(inj.cluster.spec.run_dir)
    assert lp is not None
    return proxy_addr(lp, node)


@pytest.fixture
def inj(local_cluster: LocalCluster, links: LinkProxies, journal: Journal) -> FaultInjector:
    return FaultInjector(local_cluster, journal)


def test_link_down_refuses_then_recovers(inj: FaultInjector, links: LinkProxies, journal: Journal) -> None:
    with inj.applied(LinkDown("2")), pytest.raises(ConnectionRefusedError):
        handshake(proxy_addr(links, 2))
    assert handshake(proxy_addr(links, 1))[3] == "frame"  # the other links were untouched
    assert handshake(proxy_addr(links, 2))[3] == "frame"
    assert journaled(journal, "link_down")


def test_latency(inj: FaultInjector, links: LinkProxies, journal: Journal) -> None:
    took, _, _, end = run(inj, LinkLatency("1", latency=400))
    assert end == "frame" and took >= 0.4
    assert handshake(proxy_addr(links, 1))[0] < 0.3
    assert journaled(journal, "link_latency")


def test_bandwidth(inj: FaultInjector, journal: Journal) -> None:
    took, _, data, end = run(inj, LinkBandwidth("1", rate=1))  # 1 KB/s
    assert end == "frame" and took >= 0.8 * len(data) / 1000 - 0.05, (took, len(data))
    assert journaled(journal, "link_bandwidth")


def test_timeout_stalls_the_link(inj: FaultInjector, links: LinkProxies, journal: Journal) -> None:
    _, _, data, end = run(inj, LinkTimeout("1", timeout=0), timeout=1.0)
    assert end == "timeout" and data == b""
    assert handshake(proxy_addr(links, 1))[3] == "frame"
    assert journaled(journal, "link_timeout")


def test_reset_peer(inj: FaultInjector, journal: Journal) -> None:
    _, _, data, end = run(inj, LinkResetPeer("1", timeout=0, stream="upstream"))
    assert end in ("reset", "eof") and data == b""
    assert journaled(journal, "link_reset_peer")


def test_slicer(inj: FaultInjector, journal: Journal) -> None:
    _, chunks, data, end = run(inj, LinkSlicer("1", average_size=8, size_variation=4, delay=2000))
    assert end == "frame" and chunks >= len(data) // 16, (chunks, len(data))
    assert journaled(journal, "link_slicer")


def test_limit_data(inj: FaultInjector, journal: Journal) -> None:
    _, _, data, end = run(inj, LinkLimitData("1", bytes=100))
    assert end == "eof" and len(data) <= 100
    assert journaled(journal, "link_limit_data")


def close_after_half_close(addr: tuple[str, int]) -> float:
    """Handshake, then close our sending side: seconds until the connection is closed to us."""
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        data = b""
        while len(data) < 8 or len(data) < 8 + int.from_bytes(data[3:7], "big"):
            data += s.recv(65536)
        s.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass  # the broker resets when its peer goes away mid-handshake: closed all the same
        return time.monotonic() - t0


def test_slow_close(inj: FaultInjector, links: LinkProxies, journal: Journal) -> None:
    assert close_after_half_close(proxy_addr(links, 1)) < 0.5
    # upstream: our FIN reaches the proxy at once, its close towards us is held back
    with inj.applied(LinkSlowClose("1", delay=800, stream="upstream")):
        assert close_after_half_close(proxy_addr(links, 1)) >= 0.8
    assert journaled(journal, "link_slow_close")


def test_unknown_toxic_attribute_is_refused(inj: FaultInjector) -> None:
    from chaos.faults import FaultError

    with pytest.raises(FaultError, match="unknown attribute"):
        inj.inject(LinkLatency("1", latnecy=100))


def test_sigkilled_runner_leaves_a_link_down_that_heal_restores(
    local_cluster: LocalCluster, links: LinkProxies, journal: Journal
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos", "apply", "link_down", "3", "--duration", "300",
         "--run-dir", str(local_cluster.spec.run_dir), "--journal", str(journal.path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not any(r["event"] == "applied" for r in journal.records()):
        assert time.monotonic() < deadline and proc.poll() is None, "the runner never applied its fault"
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=10)
    with pytest.raises(ConnectionRefusedError):
        handshake(proxy_addr(links, 3))
    heal = subprocess.run(
        [sys.executable, "-m", "harness", "chaos", "heal", "--run-dir", str(local_cluster.spec.run_dir),
         "--journal", str(journal.path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert heal.returncode == 0, heal.stderr
    assert "undid link_down" in heal.stdout
    assert handshake(proxy_addr(links, 3))[3] == "frame"
    assert journal.open_faults() == []
