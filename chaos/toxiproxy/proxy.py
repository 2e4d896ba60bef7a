"""TCP forwarding: a :class:`Proxy` listens, relays each client to the upstream, through its toxics.

Each accepted client gets a :class:`Connection` with two :class:`Link` s, one per direction. A link
runs two tasks: a reader that stamps chunks with their arrival time, and a writer that passes each
chunk through the toxic chain (one stage per toxic acting on that direction) to the destination.
With no active toxic and nothing queued the reader writes straight to the destination: the plain
pass-through pays for no queue hop.

Toxics are added, updated and removed on live connections: a chunk already inside a toxic is woken
(``sleep_until`` returns False) and re-evaluated, later chunks see the new chain. When either
direction ends (EOF, error, or a toxic closing) both sockets are closed, as Toxiproxy does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import struct
from collections.abc import Iterable
from typing import Any

from chaos.toxiproxy.addresses import AddressPolicy, HostPort
from chaos.toxiproxy.errors import (
    BAD_REQUEST_BODY,
    PROXY_EXISTS,
    PROXY_NOT_FOUND,
    TOXIC_EXISTS,
    TOXIC_NOT_FOUND,
    ApiError,
)
from chaos.toxiproxy.toxics import Chunk, StageState, Stream, Toxic, apply_update

log = logging.getLogger("chaos.toxiproxy.proxy")

READ_SIZE = 64 * 1024
# Chunks read ahead of the toxic chain. Bounded so a stalled destination pushes back on the source
# (TCP flow control) instead of buffering without limit; large enough that arrival timestamps stay
# close to the real arrival while a latency toxic holds earlier chunks.
QUEUE_CHUNKS = 32
UPSTREAM_CONNECT_TIMEOUT = 5.0
# After a graceful close, a peer that never reads would keep the socket (and its buffer) forever.
CLOSE_GRACE = 5.0
_LINGER_RST = struct.pack("ii", 1, 0)
_conn_ids = itertools.count(1)


class _Stage:
    """One toxic acting on one link."""

    __slots__ = ("active", "removed", "state", "timer", "toxic", "waiter")

    def __init__(self, toxic: Toxic) -> None:
        self.toxic = toxic
        # Toxicity is the probability that the toxic acts on a given connection, drawn once.
        self.active = random.random() < toxic.toxicity
        self.removed = False
        self.state = StageState()
        self.timer: asyncio.TimerHandle | None = None
        self.waiter: asyncio.Future[bool] | None = None

    def wake(self) -> None:
        """Interrupt a ``sleep_until`` in progress so the toxic re-reads its attributes."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(False)


def _resolve(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


class _Ctx:
    """The :class:`~chaos.toxiproxy.toxics.ToxicContext` handed to a toxic for one stage."""

    __slots__ = ("chain", "index", "link", "stage")

    def __init__(self, link: Link, stage: _Stage, chain: list[_Stage], index: int) -> None:
        self.link = link
        self.stage = stage
        self.chain = chain
        self.index = index

    @property
    def removed(self) -> bool:
        return self.stage.removed or not self.stage.active

    @property
    def state(self) -> StageState:
        return self.stage.state

    def now(self) -> float:
        return self.link.loop.time()

    async def emit(self, chunk: Chunk) -> None:
        await self.link.through(chunk, self.chain, self.index + 1)

    async def sleep_until(self, deadline: float) -> bool:
        loop = self.link.loop
        delay = deadline - loop.time()
        if delay <= 0:
            return True
        fut: asyncio.Future[bool] = loop.create_future()
        handle = loop.call_later(delay, _resolve, fut) if delay != float("inf") else None
        self.stage.waiter = fut
        try:
            return await fut
        finally:
            self.stage.waiter = None
            if handle is not None:
                handle.cancel()

    def close(self, reason: str) -> None:
        self.link.conn.close(reason)

    def reset(self, reason: str) -> None:
        self.link.conn.close(reason, reset=True)

    def set_timer(self, delay: float, reason: str) -> None:
        self.cancel_timer()
        self.stage.timer = self.link.loop.call_later(delay, self.link.conn.close, reason)

    def cancel_timer(self) -> None:
        if self.stage.timer is not None:
            self.stage.timer.cancel()
            self.stage.timer = None


class Link:
    """One direction of a connection: source reader → toxic stages → destination writer."""

    def __init__(
        self, conn: Connection, stream: Stream, source: asyncio.StreamReader, dest: asyncio.StreamWriter
    ) -> None:
        self.conn = conn
        self.stream = stream
        self.source = source
        self.dest = dest
        self.loop = asyncio.get_running_loop()
        self.stages: list[_Stage] = []
        self.queue: asyncio.Queue[Chunk | None] = asyncio.Queue(QUEUE_CHUNKS)
        self.busy = False

    # -- toxic chain changes -----------------------------------------------------------------------

    def _ctx(self, stage: _Stage) -> _Ctx:
        return _Ctx(self, stage, self.stages, self.stages.index(stage) if stage in self.stages else 0)

    def _direct(self) -> bool:
        """True when data may skip the queue: no toxic acts here and nothing is queued or in flight."""
        return not self.busy and self.queue.empty() and not any(s.active for s in self.stages)

    def add_toxic(self, toxic: Toxic) -> None:
        stage = _Stage(toxic)
        self.stages.append(stage)
        if stage.active:
            toxic.on_activate(self._ctx(stage))

    def _find(self, name: str) -> _Stage | None:
        return next((s for s in self.stages if s.toxic.name == name), None)

    def update_toxic(self, toxic: Toxic, toxicity_changed: bool) -> None:
        stage = self._find(toxic.name)
        if stage is None:
            return
        was_active = stage.active
        if toxicity_changed:
            stage.active = random.random() < toxic.toxicity
        ctx = self._ctx(stage)
        if was_active and stage.active:
            toxic.on_update(ctx)
        elif was_active:
            toxic.on_remove(ctx)  # stopped acting on this connection: same as removed
        elif stage.active:
            toxic.on_activate(ctx)
        stage.wake()

    def remove_toxic(self, name: str) -> None:
        stage = self._find(name)
        if stage is None:
            return
        ctx = self._ctx(stage)
        self.stages.remove(stage)
        stage.removed = True
        if stage.active:
            stage.toxic.on_remove(ctx)
        if stage.timer is not None:
            stage.timer.cancel()
        stage.wake()

    # -- data path ---------------------------------------------------------------------------------

    async def read_loop(self) -> None:
        source, dest, loop = self.source, self.dest, self.loop
        try:
            while True:
                data = await source.read(READ_SIZE)
                if not data:
                    break
                if self._direct():
                    dest.write(data)
                    await dest.drain()
                else:
                    await self.queue.put(Chunk(data, loop.time()))
        except OSError as exc:
            self.conn.close(f"{self.stream} source error: {exc!r}")
            return
        except Exception:
            log.exception("link read failed", extra={"proxy": self.conn.proxy.name, "conn": self.conn.id})
            self.conn.close(f"{self.stream} internal error")
            return
        if self._direct():
            self.conn.close(f"{self._source_name()} closed")
        else:
            await self.queue.put(None)

    async def write_loop(self) -> None:
        try:
            while True:
                chunk = await self.queue.get()
                self.busy = True
                chain = list(self.stages)
                if chunk is None:
                    await self._eof(chain)
                    return
                await self.through(chunk, chain, 0)
                self.busy = False
        except OSError as exc:
            self.conn.close(f"{self.stream} destination error: {exc!r}")
        except Exception:
            log.exception("link write failed", extra={"proxy": self.conn.proxy.name, "conn": self.conn.id})
            self.conn.close(f"{self.stream} internal error")

    async def through(self, chunk: Chunk, chain: list[_Stage], index: int) -> None:
        """Pass ``chunk`` through ``chain[index:]`` (stages removed meanwhile are skipped), then write."""
        for i in range(index, len(chain)):
            stage = chain[i]
            if stage.active and not stage.removed:
                await stage.toxic.pipe(chunk, _Ctx(self, stage, chain, i))
                return
        if self.conn.closed or not chunk.data:
            return
        self.dest.write(chunk.data)
        await self.dest.drain()

    async def _eof(self, chain: list[_Stage]) -> None:
        for i, stage in enumerate(chain):
            if stage.active and not stage.removed:
                await stage.toxic.on_eof(_Ctx(self, stage, chain, i))
        self.conn.close(f"{self._source_name()} closed")

    def _source_name(self) -> str:
        return "client" if self.stream is Stream.UPSTREAM else "upstream"

    def cancel_timers(self) -> None:
        for stage in self.stages:
            if stage.timer is not None:
                stage.timer.cancel()
                stage.timer = None


class Connection:
    """A client connection and its upstream connection, relayed by two links."""

    def __init__(
        self,
        proxy: Proxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.id = next(_conn_ids)
        self.client_writer = client[1]
        self.upstream_writer = upstream[1]
        self.links = {
            Stream.UPSTREAM: Link(self, Stream.UPSTREAM, client[0], upstream[1]),
            Stream.DOWNSTREAM: Link(self, Stream.DOWNSTREAM, upstream[0], client[1]),
        }
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def start(self, toxics: Iterable[Toxic]) -> None:
        for toxic in toxics:
            self.links[toxic.stream].add_toxic(toxic)
        for link in self.links.values():
            self.tasks.append(asyncio.create_task(link.read_loop(), name=f"{self.proxy.name}#{self.id}-r"))
            self.tasks.append(asyncio.create_task(link.write_loop(), name=f"{self.proxy.name}#{self.id}-w"))

    def close(self, reason: str, reset: bool = False, abort: bool = False) -> None:
        """Close both sockets; idempotent, callable from any task or callback of the loop.

        ``reset``: abort with SO_LINGER 0 so the peers get a RST. ``abort``: drop unsent data and
        close at once (server shutdown), instead of flushing first.
        """
        if self.closed:
            return
        self.closed = True
        for link in self.links.values():
            link.cancel_timers()
        for task in self.tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        for writer in (self.client_writer, self.upstream_writer):
            transport = writer.transport
            if reset:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                transport.abort()
            elif abort:
                transport.abort()
            else:
                transport.close()
                loop.call_later(CLOSE_GRACE, transport.abort)
        self.proxy.connections.discard(self)
        level = logging.DEBUG if reason.endswith(" closed") else logging.INFO
        log.log(
            level,
            "connection reset" if reset else "connection closed",
            extra={"proxy": self.proxy.name, "conn": self.id, "reason": reason},
        )


class Proxy:
    """A named TCP proxy: listens on ``listen``, relays to ``upstream``, applies its toxics."""

    def __init__(self, name: str, listen: HostPort, upstream: HostPort, policy: AddressPolicy) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.policy = policy
        self.enabled = False
        self.toxics: dict[str, Toxic] = {}
        self.connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._pending: set[asyncio.StreamWriter] = set()
        # Bumped by every start and stop: a client accepted by an earlier listener is dropped.
        self._generation = 0

    # -- JSON --------------------------------------------------------------------------------------

    def toxics_json(self) -> list[dict[str, Any]]:
        # Toxiproxy lists the upstream chain first, then the downstream one, each in order added.
        ordered = sorted(self.toxics.values(), key=lambda t: t.stream is not Stream.UPSTREAM)
        return [t.to_json() for t in ordered]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": str(self.listen),
            "upstream": str(self.upstream),
            "enabled": self.enabled,
            "toxics": self.toxics_json(),
        }

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (idempotent). A port 0 is replaced by the port obtained, kept across restarts."""
        if self._server is not None:
            return
        host = self.listen.host
        if not self.policy.ip_allowed(host):
            # A loopback name: bind one address (as Go's net.Listen does), so that port 0 yields a
            # single port, and report the address bound rather than the name.
            host = "::1" if host.lower() == "ip6-localhost" else "127.0.0.1"
        try:
            self._server = await asyncio.start_server(
                self._on_client, host, self.listen.port, reuse_address=True
            )
        except OSError as exc:
            raise ApiError(f"listen tcp {self.listen}: {exc.strerror or exc}", 500) from exc
        bound = self._server.sockets[0].getsockname()
        self.listen = HostPort(host, int(bound[1]))
        self.enabled = True
        self._generation += 1
        log.info(
            "proxy listening",
            extra={"proxy": self.name, "listen": str(self.listen), "upstream": str(self.upstream)},
        )

    async def stop(self, abort: bool = False) -> None:
        """Stop listening and close every connection (Toxiproxy's "disabled": the link is down)."""
        self.enabled = False
        self._generation += 1
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._pending):
            writer.transport.abort()
        self._pending.clear()
        for conn in list(self.connections):
            conn.close("proxy disabled", abort=abort)
        if server is not None:
            await server.wait_closed()
            log.info("proxy stopped", extra={"proxy": self.name, "listen": str(self.listen)})

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self._generation
        if self._server is None:
            writer.transport.abort()
            return
        self._pending.add(writer)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream.host, self.upstream.port),
                UPSTREAM_CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            log.warning(
                "upstream connection failed",
                extra={"proxy": self.name, "upstream": str(self.upstream), "error": repr(exc)},
            )
            self._pending.discard(writer)
            writer.transport.close()
            return
        self._pending.discard(writer)
        peer = up_writer.get_extra_info("peername")
        if generation != self._generation or writer.transport.is_closing():
            # Disabled (or re-enabled) while connecting: this client belongs to the old listener.
            up_writer.transport.abort()
            writer.transport.abort()
            return
        if not peer or not self.policy.ip_allowed(str(peer[0])):
            # ``localhost`` resolved to something that is not loopback: refuse to relay there.
            log.error("upstream resolved outside loopback", extra={"proxy": self.name, "peer": str(peer)})
            up_writer.transport.abort()
            writer.transport.abort()
            return
        conn = Connection(self, (reader, writer), (up_reader, up_writer))
        self.connections.add(conn)
        conn.start(self.toxics.values())
        log.debug(
            "connection opened",
            extra={"proxy": self.name, "conn": conn.id, "client": str(writer.get_extra_info("peername"))},
        )

    # -- toxics ------------------------------------------------------------------------------------

    def get_toxic(self, name: str) -> Toxic:
        toxic = self.toxics.get(name)
        if toxic is None:
            raise TOXIC_NOT_FOUND
        return toxic

    def add_toxic(self, toxic: Toxic) -> None:
        if toxic.name in self.toxics:
            raise TOXIC_EXISTS
        self.toxics[toxic.name] = toxic
        for conn in list(self.connections):
            conn.links[toxic.stream].add_toxic(toxic)
        log.info("toxic added", extra={"proxy": self.name, "toxic": toxic.to_json()})

    def update_toxic(self, name: str, body: Any) -> Toxic:
        toxic = self.get_toxic(name)
        toxicity, attributes = apply_update(toxic, body)
        toxicity_changed = toxicity != toxic.toxicity
        toxic.toxicity = toxicity
        toxic.attributes = attributes
        for conn in list(self.connections):
            conn.links[toxic.stream].update_toxic(toxic, toxicity_changed)
        log.info("toxic updated", extra={"proxy": self.name, "toxic": toxic.to_json()})
        return toxic

    def remove_toxic(self, name: str) -> None:
        toxic = self.get_toxic(name)
        del self.toxics[name]
        for conn in list(self.connections):
            conn.links[toxic.stream].remove_toxic(name)
        log.info("toxic removed", extra={"proxy": self.name, "toxic": name})

    def remove_all_toxics(self) -> None:
        for name in list(self.toxics):
            self.remove_toxic(name)


class ProxyRegistry:
    """All proxies by name; mutations are serialised by one lock (they await listening sockets)."""

    def __init__(self, policy: AddressPolicy | None = None) -> None:
        self.policy = policy or AddressPolicy()
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise PROXY_NOT_FOUND
        return proxy

    def check_spec(self, spec: ProxySpec) -> tuple[HostPort, HostPort]:
        listen = self.policy.check(spec.listen, "listen")
        upstream = self.policy.check(spec.upstream, "upstream")
        if listen.port != 0 and listen == upstream:
            # Each accepted connection would connect to itself again, without end.
            raise BAD_REQUEST_BODY.with_detail(
                f"proxy {spec.name!r}: upstream is the proxy's own listen address"
            )
        return listen, upstream

    async def _create_locked(self, spec: ProxySpec) -> Proxy:
        listen, upstream = self.check_spec(spec)
        proxy = Proxy(spec.name, listen, upstream, self.policy)
        if spec.enabled:
            await proxy.start()
        self.proxies[spec.name] = proxy
        log.info("proxy created", extra={"proxy": spec.name, "enabled": proxy.enabled})
        return proxy

    async def create(self, spec: ProxySpec) -> Proxy:
        async with self.lock:
            if spec.name in self.proxies:
                raise PROXY_EXISTS
            return await self._create_locked(spec)

    async def populate(self, specs: list[ProxySpec]) -> list[Proxy]:
        """Create or replace proxies; one whose listen and upstream are unchanged is kept as is.

        Every entry is validated before anything changes, so a bad entry leaves the state untouched.
        """
        names = [s.name for s in specs]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise BAD_REQUEST_BODY.with_detail(f"duplicate proxy name {duplicate!r}")
        for spec in specs:
            self.check_spec(spec)
        out: list[Proxy] = []
        async with self.lock:
            for spec in specs:
                existing = self.proxies.get(spec.name)
                if existing is not None:
                    listen, upstream = self.check_spec(spec)
                    if listen == existing.listen and upstream == existing.upstream:
                        if spec.enabled and not existing.enabled:
                            await existing.start()
                        elif not spec.enabled and existing.enabled:
                            await existing.stop()
                        out.append(existing)
                        continue
                    await existing.stop()
                    del self.proxies[spec.name]
                out.append(await self._create_locked(spec))
        return out

    async def update(
        self, name: str, listen: str | None, upstream: str | None, enabled: bool | None
    ) -> Proxy:
        """Change addresses (restarting the listener) and/or enable (listen) / disable (link down)."""
        async with self.lock:
            proxy = self.get(name)
            new_listen = self.policy.check(listen, "listen") if listen is not None else proxy.listen
            new_upstream = self.policy.check(upstream, "upstream") if upstream is not None else proxy.upstream
            want_enabled = proxy.enabled if enabled is None else enabled
            if new_listen != proxy.listen or new_upstream != proxy.upstream:
                await proxy.stop()
                proxy.listen, proxy.upstream = new_listen, new_upstream
            if want_enabled and not proxy.enabled:
                await proxy.start()
            elif not want_enabled and proxy.enabled:
                await proxy.stop()
            log.info("proxy updated", extra={"proxy": name, "enabled": proxy.enabled})
            return proxy

    async def delete(self, name: str) -> None:
        async with self.lock:
            proxy = self.get(name)
            await proxy.stop()
            del self.proxies[name]
            log.info("proxy deleted", extra={"proxy": name})

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic (``POST /reset``)."""
        async with self.lock:
            for proxy in self.proxies.values():
                proxy.remove_all_toxics()
                if not proxy.enabled:
                    await proxy.start()
            log.info("reset", extra={"proxies": len(self.proxies)})

    async def close(self) -> None:
        async with self.lock:
            for proxy in self.proxies.values():
                await proxy.stop(abort=True)
            self.proxies.clear()


class ProxySpec:
    """A validated proxy definition from a request body."""

    __slots__ = ("enabled", "listen", "name", "upstream")

    def __init__(self, name: str, listen: str, upstream: str, enabled: bool) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = enabled
