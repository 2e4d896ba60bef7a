"""Connecting to any node of the cluster, failing over to the next one."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractConnection
from yarl import URL

from system.logs import get_logger

from .settings import MessagingSettings

log = get_logger(__name__)


class ClusterConnector:
    """Opens plain (non-robust) connections, trying each node URL in turn with capped backoff.

    We deliberately do not use aio-pika's robust connection: its restore has known gaps (consumers not
    restored, publishes hanging while disconnected). Every user of this class owns its reconnect loop.
    """

    def __init__(self, settings: MessagingSettings, *, name: str = "drill") -> None:
        if not settings.amqp_urls:
            raise ValueError("at least one AMQP URL is needed")
        self._urls: Sequence[str] = list(settings.amqp_urls)
        self._settings = settings
        self._name = name
        # Spread clients over the nodes; successive failures walk the list from there.
        self._next = random.randrange(len(self._urls)) if settings.random_start_node else 0

    async def connect(self, stop: asyncio.Event | None = None) -> AbstractConnection:
        """A live connection to some node; retries forever (until ``stop`` is set, then raises)."""
        delay = self._settings.reconnect_initial_s
        while True:
            for _ in range(len(self._urls)):
                url = self._urls[self._next]
                self._next = (self._next + 1) % len(self._urls)
                try:
                    conn = await aio_pika.connect(
                        url,
                        timeout=self._settings.connect_timeout_s,
                        client_properties={"connection_name": self._name},
                        heartbeat=self._settings.heartbeat_s,
                    )
                except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
                    log.warning("connect failed", extra={"node": _safe(url), "error": repr(exc)})
                    continue
                log.info("connected", extra={"node": _safe(url), "client": self._name})
                return conn
            if stop is not None and stop.is_set():
                raise ConnectionError("stopped while connecting")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.reconnect_max_s)


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    return str(URL(url).with_password(None))
