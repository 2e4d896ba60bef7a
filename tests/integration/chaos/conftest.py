"""Fixtures shared by the proxy tests: our Toxiproxy-compatible server, a client, an echo upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from toxiproxy import Toxiproxy

from chaos.toxiproxy import ToxiproxyThread
from chaos.toxiproxy.loopback import LoopbackServer


@pytest.fixture(scope="module")
def server() -> Iterator[ToxiproxyThread]:
    with ToxiproxyThread(port=0) as srv:
        yield srv


@pytest.fixture
def tp(server: ToxiproxyThread) -> Iterator[Toxiproxy]:
    client = Toxiproxy()
    client.update_api_consumer(server.host, server.port)
    yield client
    client.reset()
    client.destroy_all()


@pytest.fixture
def echo() -> Iterator[LoopbackServer]:
    with LoopbackServer("echo") as srv:
        yield srv
