"""``drill system up`` on the session's real cluster: it provisions the platform (vhost, users, topology,
secrets file; no password printed), starts the spec's services with the secrets and the notify URL,
``status`` shows every replica up and ready, and ``down`` leaves no process behind.

The spec is written here (the notifications service only), so the test does not depend on the other
services being finished.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
import uuid
from pathlib import Path

from aiohttp import web
from typer.testing import CliRunner, Result

from harness.system_cli import app
from rig import procs
from rig.cluster import LocalCluster
from rig.provision import admin_urls, unprovision
from rig.supervisor import SystemHandle
from simulator.ledger import Ledger
from simulator.notify import notification_app
from system.domain.lifecycle import State
from system.messaging import ConfirmingPublisher, MessagingSettings
from system.platform.contracts import Contact, StateChanged, state_message, state_message_id

ROOT = Path(__file__).resolve().parents[3]

SPEC = f"""
[[service]]
name = "notifications"
argv = ["{{python}}", "-m", "system.notifications"]
replicas = 2
env = {{ PYTHONPATH = "{ROOT}", DRILL_MSG_CONNECT_TIMEOUT_S = "2", DRILL_MSG_RECONNECT_MAX_S = "1", DRILL_NOTIFICATIONS_SEND_PERIOD_S = "0.05" }}
"""


async def cli(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_system_up_provisions_starts_ready_and_down_leaves_nothing(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    vhost = f"t-up-{uuid.uuid4().hex[:8]}"
    run_dir = tmp_path / "system"
    spec = tmp_path / "services.toml"
    spec.write_text(SPEC)
    ledger = io.StringIO()
    runner = web.AppRunner(notification_app(Ledger(ledger)), access_log=None)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        up = await cli(
            "up", "--spec", str(spec), "--run-dir", str(run_dir),
            "--cluster-run-dir", str(local_cluster.spec.run_dir), "--vhost", vhost,
            "--notify-url", f"http://127.0.0.1:{port}",
        )  # fmt: skip
        assert up.exit_code == 0, up.output
        secrets_file = run_dir / "secrets" / "platform.json"
        assert f"provisioned vhost '{vhost}'" in up.output and "drill-notifications" in up.output
        assert "queues declared" in up.output and str(secrets_file) in up.output
        secrets = json.loads(secrets_file.read_text())
        assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
        assert secrets["vhost"] == vhost and "notifications" in secrets["users"]
        for user in secrets["users"].values():
            assert user["password"] not in up.output

        handle = SystemHandle(run_dir)
        deadline = time.monotonic() + 30
        while not all(handle.is_ready(r) for r in handle.replicas("notifications")):
            assert time.monotonic() < deadline, (run_dir / "logs" / "notifications-0.log").read_text()[-2000:]
            await asyncio.sleep(0.1)
        status = await cli("status", "--run-dir", str(run_dir))
        assert status.exit_code == 0, status.output
        summary = [line for line in status.output.splitlines() if line.count("│") == 4]
        assert [[c.strip() for c in line.split("│")[1:4]] for line in summary] == [
            ["notifications", "2/2", "2/2"]
        ]

        # the services got the secrets (they consume in the new vhost as their own user) and the URL
        sc = StateChanged(
            message_id=state_message_id("dlv_up", State.PICKED_UP),
            delivery_id="dlv_up",
            order_reference="s42-0000009",
            state=State.PICKED_UP,
            previous=State.COURIER_ASSIGNED,
            at="2026-11-18T11:00:00Z",  # type: ignore[arg-type]
            recipient=Contact(phone="+447700900786"),
        )
        publisher = ConfirmingPublisher(MessagingSettings(amqp_urls=admin_urls(local_cluster, vhost)))
        try:
            await publisher.publish(state_message(sc))
        finally:
            await publisher.close()
        deadline = time.monotonic() + 20
        while not ledger.getvalue():
            assert time.monotonic() < deadline, "no notification reached the receiver"
            await asyncio.sleep(0.05)

        state = json.loads((run_dir / "system.json").read_text())
        pids = [state["supervisor_pid"]] + [r["pid"] for r in state["replicas"]]
        assert len(pids) == 3 and all(procs.alive(p) for p in pids)
        down = await cli("down", "--run-dir", str(run_dir))
        assert down.exit_code == 0, down.output
        assert [p for p in pids if procs.alive(p)] == []
        assert not (run_dir / "system.json").exists()
        assert list((run_dir / "ready").glob("*")) == []  # graceful stops removed their markers
    finally:
        if (run_dir / "system.json").exists():
            SystemHandle(run_dir).stop()
        await runner.cleanup()
        unprovision(local_cluster, vhost)
    lines = [json.loads(line) for line in ledger.getvalue().splitlines()]
    assert [(r["kind"], r["state"], r["to"]) for r in lines] == [
        ("notification_received", "picked_up", "+447700900786")
    ]
