"""Small loopback TCP servers to put behind a proxy: for the bench, the tests and drill self-checks.

Blocking sockets, one thread per connection, so they are independent of any event loop:

* ``echo``  — sends back whatever it receives, closes when the client closes;
* ``sink``  — reads an 8-byte big-endian length then that many bytes, answers ``b"k"``; repeat;
* ``hello`` — sends ``b"hello"`` and closes at once (an upstream that closes first).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Literal

SINK_HEADER = struct.Struct("!Q")
_BUF = 64 * 1024

Kind = Literal["echo", "sink", "hello"]


def recv_exact(conn: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes, or fewer if the peer closed first."""
    buf = bytearray()
    while len(buf) < size:
        data = conn.recv(size - len(buf))
        if not data:
            break
        buf += data
    return bytes(buf)


class LoopbackServer:
    """A threaded TCP server on 127.0.0.1 (ephemeral port); ``close()`` also closes its connections."""

    def __init__(self, kind: Kind = "echo") -> None:
        self.kind = kind
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"loopback-{kind}")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            handler = {"echo": self._echo, "sink": self._sink, "hello": self._hello}[self.kind]
            threading.Thread(target=self._guard, args=(handler, conn), daemon=True).start()

    def _guard(self, handler: Callable[[socket.socket], None], conn: socket.socket) -> None:
        # A reset or a close by the test is the normal end of a connection here, not an error.
        with contextlib.suppress(OSError), conn:
            handler(conn)
        with self._lock, contextlib.suppress(ValueError):
            self._conns.remove(conn)

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        while data := conn.recv(_BUF):
            conn.sendall(data)

    @staticmethod
    def _sink(conn: socket.socket) -> None:
        while header := recv_exact(conn, SINK_HEADER.size):
            if len(header) < SINK_HEADER.size:
                return
            remaining = SINK_HEADER.unpack(header)[0]
            while remaining > 0:
                data = conn.recv(min(remaining, 1 << 20))
                if not data:
                    return
                remaining -= len(data)
            conn.sendall(b"k")

    @staticmethod
    def _hello(conn: socket.socket) -> None:
        conn.sendall(b"hello")

    def close(self) -> None:
        self.sock.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
