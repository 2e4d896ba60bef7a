"""The notifications service as real processes against the session's real cluster.

StateChanged messages are published to ``tracking`` as the admin of a fresh platform vhost; the service
posts to an aiohttp receiver started here (the simulator's :func:`notification_app` with its ledger, plus
a middleware that can fail, delay or refuse). What is proved: exactly one notification per state change
per recipient (two competing replicas, the same message twice, the same state change in another
message); a SIGKILL while sends are in flight re-sends the same ids only; 500s are retried until
delivered; a 400 fails the row with the reason; malformed messages are parked with the reason.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from simulator.ledger import Ledger
from simulator.notify import notification_app
from system.domain.lifecycle import State
from system.messaging import ConfirmingPublisher, MessagingSettings, OutgoingMessage, ParkingLot
from system.notifications.decide import owed
from system.platform.contracts import Contact, Driver, StateChanged, state_message, state_message_id
from system.platform.topology import NOTIFICATIONS_STATES, TRACKING, platform_topology

from .conftest import PlatformVhost

ROOT = Path(__file__).resolve().parents[3]
AT = "2026-11-18T11:00:00Z"


# -- the provider: the simulator's receiver, with faults on demand -----------------------------------


class Receiver:
    """The simulator's notification receiver on a free port; deliveries in ``refuse`` answer 400, then
    the next ``fail_next`` requests answer 500 (neither is recorded in the ledger), and ``delay_s`` holds every answer after
    the ledger recorded it (a crash window between the provider's "yes" and the service's "sent")."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.fail_next = 0
        self.failed = 0
        self.refuse: set[str] = set()
        self.delay_s = 0.0
        self.app = notification_app(Ledger(self.buffer))
        self.app.middlewares.append(self._faults)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.url = ""

    @web.middleware
    async def _faults(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        doc = await request.json()
        if doc.get("delivery_id") in self.refuse:
            return web.json_response({"error": "invalid recipient"}, status=400)
        if self.fail_next > 0:
            self.fail_next -= 1
            self.failed += 1
            return web.json_response({"error": "provider down"}, status=500)
        response = await handler(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return response

    async def start(self) -> None:
        await self.runner.setup()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.runner.cleanup()


# -- the service as OS processes ---------------------------------------------------------------------


class Service:
    """Replicas of ``python -m system.notifications`` for one test."""

    def __init__(self, pv: PlatformVhost, env: dict[str, str]) -> None:
        self.pv = pv
        self.env = env
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def db(self) -> Path:
        return self.pv.run_dir / "notifications.db"

    def start(self, replica: int) -> subprocess.Popen[bytes]:
        logs = self.pv.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DRILL_SERVICE": "notifications",
            "DRILL_REPLICA": str(replica),
            "DRILL_RUN_DIR": str(self.pv.run_dir),
            "DRILL_PLATFORM_SECRETS": str(self.pv.secrets),
            "DRILL_SHUTDOWN_GRACE_S": "2",
            "DRILL_MSG_CONNECT_TIMEOUT_S": "2",
            "DRILL_MSG_HEARTBEAT_S": "5",
            "DRILL_MSG_RECONNECT_MAX_S": "1",
            "DRILL_NOTIFICATIONS_SEND_PERIOD_S": "0.05",
            "DRILL_NOTIFICATIONS_BACKOFF_INITIAL_S": "0.1",
            "DRILL_NOTIFICATIONS_BACKOFF_MAX_S": "0.4",
            **self.env,
        }
        with open(logs / f"notifications-{replica}.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "system.notifications"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[replica] = proc
        return proc

    async def wait_ready(self, replica: int, within: float = 30.0) -> None:
        proc = self.procs[replica]
        marker = self.pv.run_dir / "ready" / f"notifications.{replica}"
        deadline = time.monotonic() + within
        while not (marker.exists() and marker.read_text().strip() == str(proc.pid)):
            assert proc.poll() is None, (
                f"notifications#{replica} exited {proc.returncode}: {self.log(replica)}"
            )
            assert time.monotonic() < deadline, f"notifications#{replica} not ready: {self.log(replica)}"
            await asyncio.sleep(0.05)

    def kill(self, replica: int) -> None:
        proc = self.procs.pop(replica)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for replica, proc in list(self.procs.items()):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            self.procs.pop(replica)

    def log(self, replica: int) -> str:
        path = self.pv.run_dir / "logs" / f"notifications-{replica}.log"
        return " | ".join(path.read_text(errors="replace").splitlines()[-8:]) if path.exists() else "(no log)"

    def rows(self) -> list[dict[str, Any]]:
        if not self.db.exists():
            return []
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as conn:
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute("SELECT * FROM notifications")]
            except sqlite3.OperationalError:  # the schema is not there yet
                return []

    def scalar(self, sql: str) -> int:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as conn:
            return int(conn.execute(sql).fetchone()[0])


@pytest.fixture
def service_factory(platform_vhost: PlatformVhost) -> Iterator[Callable[[dict[str, str]], Service]]:
    made: list[Service] = []

    def make(env: dict[str, str]) -> Service:
        made.append(Service(platform_vhost, env))
        return made[-1]

    yield make
    for s in made:
        s.stop_all()


# -- input -------------------------------------------------------------------------------------------


def change(
    delivery: str, state: State, previous: State | None, *, driver: bool = True, **kw: Any
) -> StateChanged:
    return StateChanged.model_validate(
        {
            "message_id": state_message_id(delivery, state),
            "delivery_id": delivery,
            "order_reference": f"s42-{delivery}",
            "state": state,
            "previous": previous,
            "at": AT,
            "recipient": Contact(name="Ben", phone="+447700900786", email="ben@example.com"),
            "driver": Driver(id=f"zoomly-drv-{delivery}", vehicle="bike") if driver else None,
            "store_name": "229 Richmond Road",
            **kw,
        }
    )


def journey(delivery: str) -> list[StateChanged]:
    """A delivery from requested to delivered: 8 notifications (customer email, sms; driver push)."""
    path = [
        (State.REQUESTED, None),
        (State.QUOTED, State.REQUESTED),
        (State.BOOKED, State.QUOTED),
        (State.COURIER_ASSIGNED, State.BOOKED),
        (State.PICKED_UP, State.COURIER_ASSIGNED),
        (State.IN_TRANSIT, State.PICKED_UP),
        (State.DELIVERED, State.IN_TRANSIT),
    ]
    return [change(delivery, s, p, driver=s is not State.REQUESTED) for s, p in path]


async def publish(pv: PlatformVhost, messages: list[OutgoingMessage]) -> None:
    publisher = ConfirmingPublisher(MessagingSettings(amqp_urls=pv.admin_urls, random_start_node=False))
    try:
        for m in messages:
            await publisher.publish(m)
    finally:
        await publisher.close()


async def wait_for(what: str, cond: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def expected_ids(changes: list[StateChanged]) -> dict[str, tuple[str, str, str, str]]:
    return {n.notification_id: n.dedup_key for c in changes for n in owed(c)}


def received_keys(lines: list[dict[str, Any]]) -> Counter[tuple[str, str, str, str]]:
    return Counter((r["delivery_id"], r["state"], r["audience"], r["channel"]) for r in lines)


# -- tests -------------------------------------------------------------------------------------------


async def test_each_notification_is_sent_once_by_two_replicas_even_when_published_twice(
    platform_vhost: PlatformVhost, receiver: Receiver, service_factory: Callable[[dict[str, str]], Service]
) -> None:
    svc = service_factory({"DRILL_NOTIFICATIONS_NOTIFY_URL": receiver.url})
    for replica in (0, 1):
        svc.start(replica)
    await asyncio.gather(svc.wait_ready(0), svc.wait_ready(1))

    a = journey("dlv_A")
    b = [change("dlv_B", State.CANCELLED, State.COURIER_ASSIGNED)]  # sms + email + driver push
    expected = expected_ids(a + b)
    assert len(expected) == 11
    again_same_id = state_message(a[-1])  # the very same message (tracking's relay republished it)
    # the same state change carried by another message id: deduplicated by its key, not the inbox
    again_other_id = state_message(a[4].model_copy(update={"message_id": "replayed-by-hand"}))
    await publish(platform_vhost, [state_message(c) for c in a + b] + [again_same_id, again_other_id])

    await wait_for(
        "every notification sent",
        lambda: len(svc.rows()) == 11 and all(r["status"] == "sent" for r in svc.rows()),
    )
    await wait_for("the inbox saw both copies", lambda: svc.scalar("SELECT COUNT(*) FROM inbox") == 9)
    lines = receiver.lines()
    assert len(lines) == 11, lines
    assert not [r for r in lines if r.get("duplicate")]
    assert Counter(r["notification_id"] for r in lines) == Counter(dict.fromkeys(expected, 1))
    assert received_keys(lines) == Counter(expected.values())
    assert {r["order_ref"] for r in lines} == {"s42-dlv_A", "s42-dlv_B"}
    assert svc.scalar("SELECT COUNT(*) FROM inbox_duplicates") == 1  # the republished message
    assert {r["attempts"] for r in svc.rows()} == {1}


async def test_sigkill_while_sends_are_in_flight_resends_the_same_ids_only(
    platform_vhost: PlatformVhost, receiver: Receiver, service_factory: Callable[[dict[str, str]], Service]
) -> None:
    svc = service_factory(
        {
            "DRILL_NOTIFICATIONS_NOTIFY_URL": receiver.url,
            "DRILL_NOTIFICATIONS_HTTP_TIMEOUT_S": "2",
            "DRILL_NOTIFICATIONS_CLAIM_S": "2.5",
        }
    )
    svc.start(0)
    await svc.wait_ready(0)
    receiver.delay_s = 1.5  # the provider records each notification, then answers late

    changes = journey("dlv_K")
    expected = expected_ids(changes)
    await publish(platform_vhost, [state_message(c) for c in changes])
    await wait_for("every send in flight", lambda: len(receiver.lines()) == len(expected), within=20)
    svc.kill(0)  # after the provider's "yes", before the service recorded "sent"
    in_window = {r["notification_id"] for r in svc.rows() if r["status"] == "pending"}
    assert in_window, "the kill came after every answer: nothing was in the crash window"

    receiver.delay_s = 0.0
    svc.start(0)
    await svc.wait_ready(0)
    await wait_for(
        "every notification sent after the restart",
        lambda: len(svc.rows()) == len(expected) and all(r["status"] == "sent" for r in svc.rows()),
    )
    lines = receiver.lines()
    first = [r for r in lines if not r.get("duplicate")]
    resent = [r for r in lines if r.get("duplicate")]
    # every notification received exactly once as new; whatever came again came with the same id
    assert Counter(r["notification_id"] for r in first) == Counter(dict.fromkeys(expected, 1))
    assert received_keys(first) == Counter(expected.values())
    assert {r["notification_id"] for r in resent} == in_window  # exactly those in the window, same ids
    assert {r["notification_id"]: r["attempts"] for r in svc.rows() if r["attempts"] > 1}.keys() == {
        r["notification_id"] for r in resent
    }


async def test_provider_errors_and_malformed_input(
    platform_vhost: PlatformVhost, receiver: Receiver, service_factory: Callable[[dict[str, str]], Service]
) -> None:
    """500s are retried until delivered; a 400 fails the row with the reason (logged as an error);
    malformed StateChanged messages are parked with the reason and the rest still flows."""
    receiver.fail_next = 4  # "for a while": the first four POSTs answer 500
    receiver.refuse = {"dlv_bad"}
    svc = service_factory({"DRILL_NOTIFICATIONS_NOTIFY_URL": receiver.url})
    svc.start(0)
    await svc.wait_ready(0)
    good = [
        change("dlv_ok", State.PICKED_UP, State.COURIER_ASSIGNED),
        change("dlv_ok", State.DELIVERED, State.IN_TRANSIT),
    ]
    bad = [change("dlv_bad", State.PICKED_UP, State.COURIER_ASSIGNED)]
    doc = json.loads(good[0].model_dump_json())
    key = "delivery.state.picked_up"
    malformed = [
        OutgoingMessage(TRACKING, key, b"{not json", message_id="bad-json"),
        OutgoingMessage(
            TRACKING, key, json.dumps({**doc, "state": "teleported"}).encode(), message_id="bad-state"
        ),
    ]
    await publish(platform_vhost, [*malformed, *(state_message(c) for c in good + bad)])

    def settled() -> bool:
        rows = svc.rows()
        return len(rows) == 4 and all(r["status"] != "pending" for r in rows)

    await wait_for("every row sent or failed", settled)
    rows = {r["delivery_id"] + ":" + r["channel"] + ":" + r["state"]: r for r in svc.rows()}
    failed = rows["dlv_bad:sms:picked_up"]
    assert failed["status"] == "failed"
    assert failed["last_error"] == 'HTTP 400: {"error": "invalid recipient"}'
    assert failed["attempts"] == 1  # permanent: never tried again
    assert {k: r["status"] for k, r in rows.items() if k.startswith("dlv_ok")} == dict.fromkeys(
        ("dlv_ok:sms:picked_up", "dlv_ok:sms:delivered", "dlv_ok:email:delivered"), "sent"
    )
    assert receiver.failed == 4
    assert sum(r["attempts"] for r in rows.values() if r["delivery_id"] == "dlv_ok") >= 3 + 3  # retried
    lines = receiver.lines()
    assert Counter(r["notification_id"] for r in lines) == Counter(dict.fromkeys(expected_ids(good), 1))
    log = (platform_vhost.run_dir / "logs" / "notifications-0.log").read_text()
    refused = [json.loads(line) for line in log.splitlines() if "refused by the provider" in line]
    assert [(r["level"], r["notification_id"]) for r in refused] == [("error", failed["notification_id"])]

    lot = ParkingLot(
        MessagingSettings(amqp_urls=platform_vhost.admin_urls, random_start_node=False),
        platform_topology().work_queue(NOTIFICATIONS_STATES),
    )
    parked = await lot.list()
    reasons = {p.message_id: p.reason for p in parked}
    assert reasons.keys() == {"bad-json", "bad-state"}
    assert "body is not JSON" in reasons["bad-json"]
    assert "state: Input should be" in reasons["bad-state"]
    assert {p.parked_from for p in parked} == {NOTIFICATIONS_STATES}
    assert svc.scalar("SELECT COUNT(*) FROM inbox") == 3  # the malformed ones never reached the handler
