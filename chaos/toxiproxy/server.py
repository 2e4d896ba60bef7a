"""Running the proxy server: in the caller's event loop, in a background thread, or as a process.

* :class:`ToxiproxyServer` — ``await server.start()`` / ``await server.stop()`` or
  ``async with ToxiproxyServer(port=0) as server:``; ``server.url`` is the API address.
* :class:`ToxiproxyThread` — for synchronous callers (tests, Locust, the CLI): its own loop in a
  daemon thread; ``start()`` returns once the API answers.
* :func:`start_subprocess` — ``python -m chaos.toxiproxy`` as a child process; survives the caller's
  event loop being blocked, and is killed cleanly with ``stop()``.
* :func:`launch` — the drill's choice: an existing server given by URL, else a real
  ``toxiproxy-server`` found on PATH, else this implementation. All three speak the same API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from aiohttp import web

from chaos.toxiproxy.addresses import AddressPolicy, format_host_port
from chaos.toxiproxy.api import IMPLEMENTATION, VERSION, create_app
from chaos.toxiproxy.errors import ApiError
from chaos.toxiproxy.proxy import ProxyRegistry, ProxySpec

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8474


class ToxiproxyServer:
    """The API server and its proxies, in the running event loop.

    ``port=0`` picks a free port (read it back from :attr:`port` after ``start``). The API host must
    pass the same loopback policy as the proxies.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        policy: AddressPolicy | None = None,
    ) -> None:
        self.policy = policy or AddressPolicy()
        if not self.policy.host_allowed(host):
            raise ValueError(f"API host {host!r} is not a loopback address")
        self.host = host
        self.port = port
        self.registry = ProxyRegistry(self.policy)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{format_host_port(self.host, self.port)}"

    async def start(self) -> None:
        runner = web.AppRunner(create_app(self.registry), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        # With port 0 the OS chose: read the port actually bound.
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        """Close every proxy and connection, then the API."""
        await self.registry.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def populate(self, proxies: list[dict[str, object]]) -> None:
        """Create proxies from Toxiproxy ``-config`` style dicts (name, listen, upstream, enabled)."""
        specs = [
            ProxySpec(
                str(p["name"]),
                str(p.get("listen") or "127.0.0.1:0"),
                str(p["upstream"]),
                bool(p.get("enabled", True)),
            )
            for p in proxies
        ]
        await self.registry.populate(specs)

    async def serve_forever(self) -> None:
        """Run until cancelled (or SIGINT/SIGTERM when used from ``__main__``)."""
        await asyncio.Event().wait()

    async def __aenter__(self) -> ToxiproxyServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class ToxiproxyThread:
    """A :class:`ToxiproxyServer` on its own event loop in a daemon thread, for synchronous code.

    >>> with ToxiproxyThread(port=0) as srv:  # doctest: +SKIP
    ...     Toxiproxy().update_api_consumer(srv.host, srv.port)
    """

    def __init__(
        self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, policy: AddressPolicy | None = None
    ) -> None:
        self.server = ToxiproxyServer(host, port, policy)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def start(self, timeout: float = 10.0) -> ToxiproxyThread:
        self._thread = threading.Thread(target=self._run, name="toxiproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("toxiproxy thread did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()

    def stop(self, timeout: float = 10.0) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout)
        self._thread = None

    def __enter__(self) -> ToxiproxyThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class ToxiproxyHandle:
    """A running Toxiproxy-compatible API at ``url``, and how to stop it (if we started it)."""

    url: str
    kind: Literal["external", "toxiproxy-server", "subprocess", "thread"]
    process: subprocess.Popen[bytes] | None = None
    thread: ToxiproxyThread | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].rstrip("/"))

    def stop(self, timeout: float = 10.0) -> None:
        if self.thread is not None:
            self.thread.stop(timeout)
            self.thread = None
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ToxiproxyHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def api_alive(url: str, timeout: float = 1.0) -> bool:
    """True if ``GET {url}/version`` answers 200."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/version", timeout=timeout) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _wait_alive(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"toxiproxy process exited with code {proc.returncode}")
        if api_alive(url, timeout=0.5):
            return
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise TimeoutError(f"toxiproxy API at {url} did not answer in time")


def start_subprocess(
    host: str = DEFAULT_HOST,
    port: int = 0,
    timeout: float = 15.0,
    log_path: str | None = None,
) -> ToxiproxyHandle:
    """Start ``python -m chaos.toxiproxy`` and return once its API answers.

    With ``port=0`` the child binds a free port and reports it on its first stdout line (a JSON
    object with ``url``). Its JSON-line logs go to ``log_path`` (or are discarded).
    """
    cmd = [sys.executable, "-m", "chaos.toxiproxy", "--host", host, "--port", str(port)]
    stderr = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - child owns it
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, env=env)
    if log_path and not isinstance(stderr, int):
        stderr.close()
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        part = os.read(proc.stdout.fileno(), 4096)
        if not part:
            break
        line += part
    try:
        url = str(json.loads(line.decode())["url"])
    except (ValueError, KeyError) as exc:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"toxiproxy subprocess did not report its URL (got {line!r})") from exc
    _wait_alive(url, proc, deadline)
    return ToxiproxyHandle(url, "subprocess", process=proc)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def launch(
    url: str | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    binary: str | None = "toxiproxy-server",
    mode: Literal["thread", "subprocess"] = "subprocess",
    timeout: float = 15.0,
) -> ToxiproxyHandle:
    """A Toxiproxy API to drive: ``url`` if given (must answer), else a real ``toxiproxy-server``
    found on PATH (``binary=None`` skips it), else this implementation in a thread or a subprocess.
    """
    if url:
        if not api_alive(url, timeout=2.0):
            raise RuntimeError(f"no Toxiproxy API answers at {url}")
        return ToxiproxyHandle(url.rstrip("/"), "external")
    exe = shutil.which(binary) if binary else None
    if exe:
        chosen = port or _free_port(host)
        proc = subprocess.Popen(
            [exe, "-host", host, "-port", str(chosen)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        real_url = f"http://{format_host_port(host, chosen)}"
        _wait_alive(real_url, proc, time.monotonic() + timeout)
        return ToxiproxyHandle(real_url, "toxiproxy-server", process=proc)
    if mode == "thread":
        thread = ToxiproxyThread(host, port).start(timeout)
        return ToxiproxyHandle(thread.url, "thread", thread=thread)
    return start_subprocess(host, port, timeout)


async def run_server(host: str, port: int, config: str | None = None) -> None:
    """Serve until SIGINT/SIGTERM; print ``{"url": ...}`` on stdout once listening (see __main__)."""
    try:
        server = ToxiproxyServer(host, port)
        await server.start()
    except (ValueError, OSError) as exc:
        raise SystemExit(f"toxiproxy: cannot serve the API on {host}:{port}: {exc}") from exc
    try:
        if config:
            # Read once at start-up, before serving: blocking the loop here harms nobody.
            with open(config, encoding="utf-8") as fh:  # noqa: ASYNC230
                await server.populate(json.load(fh))
        print(json.dumps({"url": server.url, "api": VERSION, "implementation": IMPLEMENTATION}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    except (ApiError, OSError, ValueError, KeyError) as exc:
        detail = exc.message if isinstance(exc, ApiError) else repr(exc)
        raise SystemExit(f"toxiproxy: {detail}") from exc
    finally:
        await server.stop()
