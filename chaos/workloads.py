"""Workloads the chaos hunt runs faults against, each ending in an audit of what it committed and what
its consumers did: committed, consumed, lost, unexpected, duplicated effects (Jepsen's total-queue
counts, as in reports/).

:class:`MessagingWorkload` is the messaging core alone: an outbox producer (one process: rows and their
outbox messages in one transaction, an ``OutboxRelay`` publishing with confirms) and N competing
``InboxConsumer`` replicas under the supervisor (so the service faults ``kill_replica``,
``pause_replica``... can target ``consumer#i``), on one quorum work queue of the live cluster. Its
``broken`` variant runs a consumer that acknowledges before it writes (a deliberate bug) — what the
hunt must find.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import rundir
from rig import procs as rig_procs
from rig.cluster.abc import Cluster
from rig.supervisor import SystemHandle

CONSUMER = "consumer"


@dataclass(frozen=True)
class WorkloadVerdict:
    """What the audit of one workload run found."""

    committed: int
    consumed: int
    lost: int
    unexpected: int
    duplicated_effects: int
    seconds: float

    @property
    def valid(self) -> bool:
        """Jepsen's validity: nothing lost, nothing unexpected, no effect twice."""
        return self.lost == 0 and self.unexpected == 0 and self.duplicated_effects == 0

    def line(self) -> str:
        return (
            f"committed={self.committed} consumed={self.consumed} lost={self.lost} unexpected={self.unexpected}"
            f" duplicated_effects={self.duplicated_effects} ({self.seconds:.1f} s)"
        )


class MessagingWorkload:
    """One run of the messaging core under faults; use as a context manager around the faults."""

    def __init__(
        self,
        cluster: Cluster,
        run_dir: Path,
        *,
        count: int = 3000,
        consumers: int = 2,
        handler_delay_ms: float = 2.0,
        broken: bool = False,
        prefill: bool = False,
    ) -> None:
        """``prefill``: publish every message before the consumers start, so each consumer holds a full
        prefetch from the first second (a fault then always meets work in hand, however slow the
        producer is on a loaded machine); otherwise the producer and the consumers run together."""
        self.cluster = cluster
        self.run_dir = run_dir
        self.count = count
        self.consumers = consumers
        self.handler_delay_ms = handler_delay_ms
        self.broken = broken
        self.prefill = prefill
        self.prefix = f"hunt{uuid.uuid4().hex[:8]}"
        self._producer: subprocess.Popen[bytes] | None = None
        self._handle: SystemHandle | None = None
        self._t0 = 0.0

    @property
    def system_dir(self) -> Path:
        """The supervisor's run dir of the consumers."""
        return self.run_dir / "system"

    @property
    def target(self) -> str:
        """The service name service faults target (``consumer#0``)."""
        return CONSUMER

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DRILL_MSG_AMQP_URLS": ",".join(self.cluster.amqp_urls),
            "DRILL_MSG_RECONNECT_MAX_S": "1.0",
            "DRILL_MSG_PUBLISH_TIMEOUT_S": "3.0",
        }

    def __enter__(self) -> MessagingWorkload:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Declare the queue, start the consumers (supervised) and the producer; a start that fails
        stops what it started (CI: consumers that never got ready outlived the test that gave up)."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        from system.messaging.workload import single_queue_topology

        self.run_dir.mkdir(parents=True, exist_ok=True)
        _declare(self.cluster.amqp_urls, single_queue_topology(self.prefix))
        argv = [sys.executable, "-m", "system.messaging.workload", "consume", "--db", str(self.run_dir / "consumer.db"),
                "--prefix", self.prefix, "--handler-delay-ms", str(self.handler_delay_ms),
                "--ready-file", str(self.run_dir / "ready-{replica}")]  # fmt: skip
        if self.broken:
            argv.append("--ack-on-receipt")
        if self.prefill:
            self._start_producer()
            if self._producer is not None and self._producer.wait(timeout=300) != 0:
                tail = (self.run_dir / "producer.log").read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError("the prefill producer failed: " + " | ".join(tail))
        spec = self.run_dir / "workload.toml"
        spec.write_text(
            f'[[service]]\nname = "{CONSUMER}"\nreplicas = {self.consumers}\nargv = {_toml_list(argv)}\n'
        )
        with rig_procs.environment({k: v for k, v in self._env().items() if k.startswith("DRILL_MSG_")}):
            self._handle = SystemHandle.start(self.system_dir, spec, timeout=60)
        try:
            _wait(
                lambda: all((self.run_dir / f"ready-{i}").exists() for i in range(self.consumers)),
                60,
                "consumers",
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; {self._log_tails()}") from None
        self._t0 = time.monotonic()
        if not self.prefill:
            self._start_producer()
        # Faults start once messages flow end to end, so a fault at 0 s meets a busy system.
        _wait(lambda: self._consumed_rows() > 0, 60, "the first consumed message")

    def _start_producer(self) -> None:
        log = open(self.run_dir / "producer.log", "wb")  # noqa: SIM115 - closed with the process
        # A prefill publishes 50 rows per outbox transaction: only its end matters, not its pace.
        per_tx = ["--per-tx", "50"] if self.prefill else []
        self._producer = subprocess.Popen(
            [sys.executable, "-m", "system.messaging.workload", "produce", "--db", str(self.run_dir / "producer.db"),
             "--count", str(self.count), "--exchange", f"{self.prefix}.ex", *per_tx],
            env=self._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def _log_tails(self, lines: int = 5) -> str:
        """The last lines of every consumer's log and of the supervisor's, for a start that failed."""
        out = []
        for log in [
            *sorted((self.system_dir / rundir.LOGS_DIR).glob("*.log")),
            self.system_dir / rundir.SUPERVISOR_LOG,
        ]:
            with contextlib.suppress(OSError):
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"{log.name}: " + " | ".join(tail))
        return "; ".join(out) or f"no logs in {self.system_dir}"

    def finish(self, timeout: float = 120.0) -> WorkloadVerdict:
        """Wait for the producer to have every row confirmed and the consumers to drain the queue, stop
        the consumers, and audit the two databases."""
        assert self._producer is not None, "start() first"
        # On a timeout the run is audited as it is: unconfirmed rows count as committed (a stuck relay
        # shows as lost).
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._producer.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            done = self._consumed_rows()
            if done != last:
                last, stable_since = done, time.monotonic()
            elif done >= self._committed() or time.monotonic() - stable_since > 10:
                break
            time.sleep(0.25)
        self.close()
        return self.verdict()

    def _committed(self) -> int:
        return _scalar(self.run_dir / "producer.db", "SELECT COUNT(*) FROM items")

    def _consumed_rows(self) -> int:
        return _scalar(self.run_dir / "consumer.db", "SELECT COUNT(*) FROM effects")

    def verdict(self) -> WorkloadVerdict:
        committed = set(_column(self.run_dir / "producer.db", "SELECT seq FROM items"))
        effects = _column(self.run_dir / "consumer.db", "SELECT seq FROM effects")
        seen = set(effects)
        return WorkloadVerdict(
            committed=len(committed),
            consumed=len(seen),
            lost=len(committed - seen),
            unexpected=len(seen - committed),
            duplicated_effects=len(effects) - len(seen),
            seconds=time.monotonic() - self._t0,
        )

    def close(self) -> None:
        """Stop every process of the run (by PID) and delete its queues."""
        if self._producer is not None and self._producer.poll() is None:
            rig_procs.kill_group(self._producer.pid)
            self._producer.wait(timeout=10)
        if self._handle is not None and self._handle.state() is not None:
            with contextlib.suppress(Exception):
                self._handle.stop()
        from system.messaging.workload import single_queue_topology

        with contextlib.suppress(Exception):
            _delete(self.cluster.amqp_urls, single_queue_topology(self.prefix))


def _toml_list(items: list[str]) -> str:
    import json

    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def _wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.1)


def _scalar(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        try:
            row = conn.execute(sql).fetchone()
        except sqlite3.OperationalError:
            return 0  # the table is not created yet
    return int(row[0]) if row else 0


def _column(db: Path, sql: str) -> list[int]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        try:
            return [int(r[0]) for r in conn.execute(sql)]
        except sqlite3.OperationalError:
            return []


def _declare(urls: list[str], topology: object) -> None:
    import asyncio

    from system.messaging.connector import ClusterConnector
    from system.messaging.declare import declare_topology
    from system.messaging.settings import MessagingSettings

    async def go() -> None:
        stop = asyncio.Event()
        stop.set()
        conn = await ClusterConnector(MessagingSettings(amqp_urls=urls), name="hunt").connect(stop)
        try:
            await declare_topology(conn, topology)  # type: ignore[arg-type]
        finally:
            await conn.close()

    asyncio.run(go())


def _delete(urls: list[str], topology: object) -> None:
    import asyncio

    from system.messaging.connector import ClusterConnector
    from system.messaging.declare import delete_topology
    from system.messaging.settings import MessagingSettings

    async def go() -> None:
        stop = asyncio.Event()
        stop.set()
        conn = await ClusterConnector(MessagingSettings(amqp_urls=urls), name="hunt").connect(stop)
        try:
            await delete_topology(conn, topology)  # type: ignore[arg-type]
        finally:
            await conn.close()

    asyncio.run(go())


__all__ = ["CONSUMER", "MessagingWorkload", "WorkloadVerdict"]
