"""The relay process's broker-facing start-up, without a broker: it waits, and stops when told."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from system.intake.relay import declare
from system.intake.settings import IntakeSettings
from system.messaging.settings import MessagingSettings


async def test_declare_keeps_retrying_while_no_node_answers_and_stops_on_request(tmp_path: Path) -> None:
    settings = IntakeSettings(run_dir=tmp_path)
    # Nothing listens on port 1: every node of this "cluster" is down.
    msg = MessagingSettings(
        amqp_urls=["amqp://guest:guest@127.0.0.1:1/", "amqp://guest:guest@127.0.0.1:2/"],  # type: ignore[arg-type]
        connect_timeout_s=0.2,
        reconnect_initial_s=0.01,
        reconnect_max_s=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(declare(settings, msg, stop))
    done, _ = await asyncio.wait({task}, timeout=0.5)
    assert not done, "declare gave up (or crashed) while the brokers were down"
    t0 = time.monotonic()
    stop.set()
    assert await asyncio.wait_for(task, timeout=5) is False
    assert time.monotonic() - t0 < 5
