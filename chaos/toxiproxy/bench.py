"""Pass-through overhead of the proxy, measured against a direct connection in the same run.

``python -m chaos.toxiproxy.bench [--rounds 5000] [--stream-mb 200] [--amqp-url URL]`` (also
``drill bench proxy`` once mounted) measures, direct and through a proxy without toxics:

* request/response latency: ``rounds`` ping-pongs of small messages to an echo server, p50/p99;
* throughput: ``stream_mb`` MB streamed one way to a sink, MB/s (median of ``repeats`` runs);
* optionally, with ``--amqp-url`` (loopback broker), AMQP publish msgs/s with publisher confirms.

The proxy runs as a child process by default (as drills run it), so its event loop does not share
the GIL with the measuring client; the echo and sink servers are threads of this process. The last
line printed is the throughput ratio proxied/direct.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from chaos.toxiproxy.addresses import format_host_port
from chaos.toxiproxy.loopback import SINK_HEADER, LoopbackServer, recv_exact
from chaos.toxiproxy.server import ToxiproxyHandle, launch

_CHUNK = 64 * 1024


@dataclass
class PathFigures:
    """Figures for one path (direct or proxied)."""

    rtt_p50_ms: float
    rtt_p99_ms: float
    throughput_mb_s: float
    amqp_publish_msg_s: float | None = None


@dataclass
class BenchResult:
    direct: PathFigures
    proxied: PathFigures

    @property
    def rtt_p50_ratio(self) -> float:
        return self.proxied.rtt_p50_ms / self.direct.rtt_p50_ms

    @property
    def rtt_p99_ratio(self) -> float:
        return self.proxied.rtt_p99_ms / self.direct.rtt_p99_ms

    @property
    def throughput_ratio(self) -> float:
        return self.proxied.throughput_mb_s / self.direct.throughput_mb_s

    @property
    def amqp_ratio(self) -> float | None:
        d, p = self.direct.amqp_publish_msg_s, self.proxied.amqp_publish_msg_s
        return p / d if d and p else None

    def lines(self) -> list[str]:
        out = []
        for label, f in (("direct", self.direct), ("proxied", self.proxied)):
            amqp = f"  amqp publish {f.amqp_publish_msg_s:.0f} msg/s" if f.amqp_publish_msg_s else ""
            out.append(
                f"{label:8s} rtt p50 {f.rtt_p50_ms:.3f} ms  p99 {f.rtt_p99_ms:.3f} ms  "
                f"throughput {f.throughput_mb_s:.1f} MB/s{amqp}"
            )
        out.append(f"rtt ratio proxied/direct: p50 x{self.rtt_p50_ratio:.2f}  p99 x{self.rtt_p99_ratio:.2f}")
        if self.amqp_ratio is not None:
            out.append(f"amqp publish ratio proxied/direct: {self.amqp_ratio:.2f}")
        out.append(f"throughput ratio proxied/direct: {self.throughput_ratio:.2f}")
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "direct": asdict(self.direct),
            "proxied": asdict(self.proxied),
            "rtt_p50_ratio": self.rtt_p50_ratio,
            "rtt_p99_ratio": self.rtt_p99_ratio,
            "throughput_ratio": self.throughput_ratio,
            "amqp_ratio": self.amqp_ratio,
        }


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _ping_pong(port: int, rounds: int, size: int) -> list[float]:
    """Round-trip times in ms of ``rounds`` request/response exchanges of ``size`` bytes."""
    msg = b"x" * size
    out: list[float] = []
    with _connect(port) as sock:
        for _ in range(min(200, rounds)):  # warm-up: connection, caches, the proxy's code paths
            sock.sendall(msg)
            recv_exact(sock, size)
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            sock.sendall(msg)
            if len(recv_exact(sock, size)) != size:
                raise RuntimeError("echo connection closed")
            out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def _stream(port: int, total: int) -> float:
    """MB/s (1 MB = 10^6 bytes) of ``total`` bytes sent one way, until the sink acknowledges."""
    buf = memoryview(b"\0" * _CHUNK)
    with _connect(port) as sock:
        t0 = time.perf_counter()
        sock.sendall(SINK_HEADER.pack(total))
        sent = 0
        while sent < total:
            n = min(_CHUNK, total - sent)
            sock.sendall(buf[:n])
            sent += n
        if recv_exact(sock, 1) != b"k":
            raise RuntimeError("sink connection closed")
        return total / (time.perf_counter() - t0) / 1e6


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- proxy control (plain HTTP: works with this server or a real toxiproxy-server) -----------------


def _create_proxy(api: str, name: str, upstream: str) -> int:
    """Create a proxy on a free loopback port to ``upstream``; return that port."""
    body = json.dumps({"name": name, "listen": "127.0.0.1:0", "upstream": upstream})
    req = urllib.request.Request(
        f"{api}/proxies", data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            listen = str(json.loads(resp.read())["listen"])
    except urllib.error.HTTPError as exc:
        # e.g. a broker URL that is not on loopback: say why instead of "HTTP Error 400".
        raise RuntimeError(f"cannot create proxy {name!r} to {upstream}: {exc.read().decode()}") from exc
    return int(listen.rsplit(":", 1)[1])


def _delete_proxy(api: str, name: str) -> None:
    req = urllib.request.Request(f"{api}/proxies/{name}", method="DELETE")
    try:
        with urllib.request.urlopen(req, timeout=10):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise


# -- AMQP (optional) -------------------------------------------------------------------------------


async def _amqp_publish_rate(url: str, messages: int, window: int = 200) -> float:
    """Publish msgs/s with publisher confirms, ``window`` unconfirmed at a time, to a temporary queue."""
    import aio_pika  # only needed with --amqp-url

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        body = b"x" * 512
        t0 = time.perf_counter()
        for start in range(0, messages, window):
            batch = [
                channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue.name)
                for _ in range(min(window, messages - start))
            ]
            await asyncio.gather(*batch)
        elapsed = time.perf_counter() - t0
        await queue.delete(if_unused=False, if_empty=False)
        return messages / elapsed
    finally:
        await connection.close()


def _via_proxy(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{userinfo}127.0.0.1:{port}", parts.path, parts.query, ""))


# -- entry points ----------------------------------------------------------------------------------


def bench_proxy(
    rounds: int = 5000,
    message_size: int = 64,
    stream_mb: int = 200,
    repeats: int = 3,
    mode: Literal["subprocess", "thread"] = "subprocess",
    api_url: str | None = None,
    amqp_url: str | None = None,
    amqp_messages: int = 5000,
) -> BenchResult:
    """Measure direct vs proxied latency and throughput (and AMQP publish rate if ``amqp_url``).

    ``api_url`` uses an already running Toxiproxy-compatible server instead of starting one.
    """
    echo, sink = LoopbackServer("echo"), LoopbackServer("sink")
    handle: ToxiproxyHandle = launch(api_url, binary=None, mode=mode)
    suffix = f"{int(time.time() * 1000) % 100000}"
    names = [f"bench_{kind}_{suffix}" for kind in ("echo", "sink", "amqp")]
    try:
        echo_proxy = _create_proxy(handle.url, names[0], f"127.0.0.1:{echo.port}")
        sink_proxy = _create_proxy(handle.url, names[1], f"127.0.0.1:{sink.port}")
        total = stream_mb * 1_000_000
        rtt: dict[str, list[float]] = {"direct": [], "proxied": []}
        tput: dict[str, list[float]] = {"direct": [], "proxied": []}
        # Interleaved so that drift of the machine (other load, CPU frequency) hits both paths alike.
        for _ in range(repeats):
            rtt["direct"] += _ping_pong(echo.port, rounds // repeats, message_size)
            rtt["proxied"] += _ping_pong(echo_proxy, rounds // repeats, message_size)
            tput["direct"].append(_stream(sink.port, total))
            tput["proxied"].append(_stream(sink_proxy, total))
        amqp: dict[str, float | None] = {"direct": None, "proxied": None}
        if amqp_url:
            host = urlsplit(amqp_url).hostname or "127.0.0.1"
            port = urlsplit(amqp_url).port or 5672
            amqp_proxy = _create_proxy(handle.url, names[2], format_host_port(host, port))
            amqp["direct"] = asyncio.run(_amqp_publish_rate(amqp_url, amqp_messages))
            amqp["proxied"] = asyncio.run(_amqp_publish_rate(_via_proxy(amqp_url, amqp_proxy), amqp_messages))
        figures = {
            path: PathFigures(
                rtt_p50_ms=_percentile(rtt[path], 0.50),
                rtt_p99_ms=_percentile(rtt[path], 0.99),
                throughput_mb_s=statistics.median(tput[path]),
                amqp_publish_msg_s=amqp[path],
            )
            for path in ("direct", "proxied")
        }
        return BenchResult(figures["direct"], figures["proxied"])
    finally:
        if handle.kind == "external":
            # Someone else's server: leave it as found.
            for name in names:
                _delete_proxy(handle.url, name)
        handle.stop()
        echo.close()
        sink.close()


def main(argv: list[str] | None = None) -> BenchResult:
    parser = argparse.ArgumentParser(prog="python -m chaos.toxiproxy.bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5000, help="ping-pong round trips per path")
    parser.add_argument("--message-size", type=int, default=64, help="bytes per ping-pong message")
    parser.add_argument("--stream-mb", type=int, default=200, help="MB streamed per throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per path")
    parser.add_argument("--mode", choices=["subprocess", "thread"], default="subprocess")
    parser.add_argument("--api-url", help="use this running Toxiproxy API instead of starting one")
    parser.add_argument("--amqp-url", help="also measure AMQP publish msgs/s (loopback broker)")
    parser.add_argument("--amqp-messages", type=int, default=5000)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line first")
    args = parser.parse_args(argv)
    result = bench_proxy(
        rounds=args.rounds,
        message_size=args.message_size,
        stream_mb=args.stream_mb,
        repeats=args.repeats,
        mode=args.mode,
        api_url=args.api_url,
        amqp_url=args.amqp_url,
        amqp_messages=args.amqp_messages,
    )
    if args.json:
        print(json.dumps(result.to_json()))
    for line in result.lines():
        print(line)
    return result


if __name__ == "__main__":
    main()
