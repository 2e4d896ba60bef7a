"""Helpers for the messaging integration tests: settings, per-test topology, child processes, waits."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest

from rig.cluster import Cluster
from system.messaging.declare import declare_topology, delete_topology
from system.messaging.settings import MessagingSettings
from system.messaging.topology import Topology
from system.messaging.workload import single_queue_topology

ROOT = Path(__file__).resolve().parents[3]


def settings_for(cluster: Cluster, **overrides: object) -> MessagingSettings:
    """Settings pointing at every node of the test cluster, with test-friendly timeouts."""
    values: dict[str, object] = {
        "amqp_urls": cluster.amqp_urls,
        "publish_timeout_s": 3.0,
        "connect_timeout_s": 3.0,
        "heartbeat_s": 5,
        "reconnect_max_s": 1.0,
    }
    values.update(overrides)
    return MessagingSettings(**values)  # type: ignore[arg-type]


def env_for(settings: MessagingSettings, **extra: str) -> dict[str, str]:
    """Environment of a child process using ``settings``."""
    env = dict(os.environ)
    env["DRILL_MSG_AMQP_URLS"] = ",".join(settings.amqp_urls)
    env["DRILL_MSG_PUBLISH_TIMEOUT_S"] = str(settings.publish_timeout_s)
    env["DRILL_MSG_CONNECT_TIMEOUT_S"] = str(settings.connect_timeout_s)
    env["DRILL_MSG_HEARTBEAT_S"] = str(settings.heartbeat_s)
    env["DRILL_MSG_RECONNECT_MAX_S"] = str(settings.reconnect_max_s)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def wait_for(cond: Callable[[], bool], timeout: float, what: str, period: float = 0.05) -> None:
    """Poll ``cond`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(period)


async def async_wait_for(cond: Callable[[], bool], within: float, what: str, period: float = 0.05) -> None:
    """``wait_for`` for a running event loop."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(period)


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    """Read-only query of a test SQLite file (returns [] while it does not exist yet)."""
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        try:
            return list(conn.execute(sql).fetchall())
        except sqlite3.OperationalError:
            return []  # table not created yet


def scalar(db: Path, sql: str) -> int:
    rows = query(db, sql)
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


@dataclass
class Procs:
    """Child processes of one test; whatever is left is SIGKILLed at the end."""

    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "system.messaging.workload", *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.cleanup()


@dataclass
class DeclaredTopology:
    prefix: str
    topology: Topology

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.ex"

    @property
    def queue(self) -> str:
        return f"{self.prefix}.work"


@pytest.fixture
async def topo(cluster: Cluster) -> AsyncIterator[DeclaredTopology]:
    """A fresh single-queue topology (unique names) declared on the cluster, deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    topo = single_queue_topology(prefix)
    connection = await aio_pika.connect(cluster.amqp_urls[0])
    await declare_topology(connection, topo)
    await connection.close()
    yield DeclaredTopology(prefix, topo)
    for url in cluster.amqp_urls:
        try:
            connection = await aio_pika.connect(url, timeout=5)
        except Exception:
            continue
        try:
            await delete_topology(connection, topo)
            channel = await connection.channel()
            await channel.exchange_delete(f"{prefix}.ex")
        finally:
            await connection.close()
        break
