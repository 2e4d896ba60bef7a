"""A Toxiproxy-compatible TCP fault proxy (asyncio), for client↔broker link faults in drills.

No ``toxiproxy-server`` binary can be installed on the drill machines, so this package serves
Toxiproxy's REST API itself: same routes, JSON shapes, status codes and toxics, so any Toxiproxy
client (``toxiproxy-python``, the Go or Ruby clients, curl) drives it, and a real
``toxiproxy-server`` can replace it (:func:`launch` prefers one given by URL or found on PATH).

Run it::

    python -m chaos.toxiproxy --host 127.0.0.1 --port 8474        # prints {"url": ...}, logs JSON lines

or from Python: ``async with ToxiproxyServer(port=0) as srv: ...`` in a running loop,
``ToxiproxyThread(port=0).start()`` / :func:`start_subprocess` / :func:`launch` from sync code.

Drive it with toxiproxy-python (0.1.1)::

    from toxiproxy import Toxiproxy

    handle = launch()                                   # or launch(url="http://127.0.0.1:8474")
    tp = Toxiproxy()
    tp.update_api_consumer(handle.host, handle.port)
    proxy = tp.create(name="rabbit1", upstream="127.0.0.1:5672", listen="127.0.0.1:25672")
    proxy.add_toxic(type="latency", stream="downstream", attributes={"latency": 200, "jitter": 50})
    proxy.disable()                                     # link down: connections closed, port refused
    proxy.enable()
    tp.reset()                                          # all proxies enabled, all toxics removed
    handle.stop()

Toxics (attributes in ms unless noted; each per ``stream`` upstream|downstream, with ``toxicity``
= probability that it acts on a given connection): ``latency`` (latency, jitter), ``bandwidth``
(rate KB/s), ``slow_close`` (delay), ``timeout`` (timeout; 0 = never close), ``reset_peer``
(timeout, then RST), ``slicer`` (average_size, size_variation bytes, delay µs), ``limit_data``
(bytes). Adding, updating or removing a toxic takes effect on live connections.

Semantics worth knowing (as in Toxiproxy): ``timeout`` *drops* the data it stops, and removing it
closes the connections it acted on (their stream has a hole). For a stall that a connection
survives, use a large ``latency`` and remove it: held data is then delivered, nothing is lost.

Safety: proxies listen on and connect to loopback only (127.0.0.0/8, ::1, ``localhost``); any
other address is refused with 400. Throughput and latency overhead: ``python -m chaos.toxiproxy.bench``.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaos.toxiproxy.addresses import AddressPolicy
    from chaos.toxiproxy.server import (
        ToxiproxyHandle,
        ToxiproxyServer,
        ToxiproxyThread,
        api_alive,
        launch,
        start_subprocess,
    )

__all__ = [
    "AddressPolicy",
    "ToxiproxyHandle",
    "ToxiproxyServer",
    "ToxiproxyThread",
    "api_alive",
    "launch",
    "start_subprocess",
]


def __getattr__(name: str) -> Any:
    """Lazy exports (PEP 562): importing a submodule must not load aiohttp, so CLIs start fast."""
    if name == "AddressPolicy":
        from chaos.toxiproxy.addresses import AddressPolicy

        return AddressPolicy
    if name in __all__:
        from chaos.toxiproxy import server

        return getattr(server, name)
    raise AttributeError(f"module 'chaos.toxiproxy' has no attribute {name!r}")
