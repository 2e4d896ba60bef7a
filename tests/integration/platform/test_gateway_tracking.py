"""The courier gateway, the tracking service and intake's state mirror as real processes on a real broker.

Each test gets a provisioned vhost (``platform_vhost``): the services connect as their own least-privilege
users from its secrets file; the test publishes as the admin (as intake, quoting, dispatch and the
couriers would) and reads the services' SQLite files and queues it declares itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from simulator.channels.encoders import Encoders
from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.courier_desk import dialect_payload
from simulator.couriers import DIALECT_BOOKED, DIALECTS, TimelineEvent
from simulator.orders import OrderGenerator
from simulator.world import build_retailers, write_retailers_file
from system.domain.intake import DeliveryRequest, delivery_id_for
from system.domain.lifecycle import Event, State
from system.messaging.envelope import PARK_REASON, PARKED_FROM, OutgoingMessage
from system.platform import contracts
from system.platform.contracts import (
    Driver,
    LifecycleEvent,
    StateChanged,
    lifecycle_message,
    state_message,
    state_message_id,
)
from system.platform.topology import (
    DEFAULT_SHARDS,
    DELIVERY_HEADER,
    INTAKE_DELIVERIES,
    STATE_PREFIX,
    TRACKING,
    gateway_queue,
    tracking_shard,
)

from .conftest import PlatformVhost

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
COURIER = {"uber": "zoomly", "doordash": "dashly", "stuart": "pedalo"}
T0 = datetime.now(UTC).replace(microsecond=0)


# --- processes --------------------------------------------------------------------------------------


def _env(pv: PlatformVhost, service: str, **extra: str) -> dict[str, str]:
    # No admin URLs: a service must find its own user in the secrets file.
    env = {k: v for k, v in os.environ.items() if k not in ("DRILL_AMQP_URLS", "DRILL_MSG_AMQP_URLS")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DRILL_SERVICE": service,
            "DRILL_REPLICA": "0",
            "DRILL_RUN_DIR": str(pv.run_dir),
            "DRILL_PLATFORM_SECRETS": str(pv.secrets),
            "DRILL_MSG_CONNECT_TIMEOUT_S": "2",
            "DRILL_MSG_RECONNECT_MAX_S": "1",
            "DRILL_MSG_HEARTBEAT_S": "5",
        }
    )
    env.update(extra)
    return env


class Proc:
    """One service process with its log file."""

    def __init__(self, pv: PlatformVhost, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = pv.run_dir / "logs" / f"{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as fh:
            self.popen = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])

    def alive(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.popen.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextlib.contextmanager
def running(*procs: Callable[[], Proc]) -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        for start in procs:
            started.append(start())
        yield started
    finally:
        for p in started:
            p.stop()


def service(pv: PlatformVhost, name: str) -> Callable[[], Proc]:
    return lambda: Proc(pv, name, [sys.executable, "-m", f"system.{name}"], _env(pv, name))


async def until(cond: Callable[[], Any], what: str, within: float = 20.0, procs: Sequence[Proc] = ()) -> Any:
    """Poll ``cond`` until it returns something truthy; fail naming ``what`` (and the processes' logs)."""
    deadline = time.monotonic() + within
    while True:
        value = cond()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        for p in procs:
            p.alive()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
            raise AssertionError(f"timed out after {within} s waiting for {what}\n{logs}")
        await asyncio.sleep(0.05)


async def ready(pv: PlatformVhost, procs: list[Proc], marker: str | None = None) -> None:
    for p in procs:
        marker_file = pv.run_dir / "ready" / f"{marker or p.name}.0"
        await until(marker_file.exists, f"{marker_file.name} ready", 30, procs)


def rows(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return [tuple(r) for r in conn.execute(sql, args)]


# --- the broker, as the admin -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def admin(pv: PlatformVhost) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(pv.admin_urls[0], timeout=10)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def publish(pv: PlatformVhost, *messages: OutgoingMessage) -> None:
    """Publish with confirms and ``mandatory`` (an unroutable message fails the test)."""
    async with admin(pv) as channel:
        for m in messages:
            exchange = await channel.get_exchange(m.exchange, ensure=False)
            await exchange.publish(
                aio_pika.Message(
                    m.body,
                    message_id=m.message_id,
                    headers=dict(m.headers),
                    content_type=m.content_type,
                    type=m.message_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=m.routing_key,
                mandatory=True,
            )


async def counts(pv: PlatformVhost, queues: list[str]) -> dict[str, int]:
    async with admin(pv) as channel:
        out = {}
        for name in queues:
            q = await channel.declare_queue(name, passive=True)
            out[name] = int(q.declaration_result.message_count or 0)
        return out


async def take_all(pv: PlatformVhost, queues: list[str]) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message ready in ``queues`` (consumed and acked; ``basic.get`` is refused on the shard
    queues: quorum queues with a single active consumer)."""
    taken = []
    async with admin(pv) as channel:
        for name in queues:
            q = await channel.declare_queue(name, passive=True)
            ready = int(q.declaration_result.message_count or 0)
            if not ready:
                continue
            async with q.iterator() as it:
                async with asyncio.timeout(10):
                    async for m in it:
                        await m.ack()
                        taken.append(m)
                        ready -= 1
                        if not ready:
                            break
    return taken


# --- what the outside world and the other services send ---------------------------------------------


def courier_status(
    dialect: str,
    canonical: str,
    seq: int,
    delivery_id: str,
    job: str | None = None,
    *,
    name: str | None = None,
) -> OutgoingMessage:
    """A courier status as the simulator's courier desk publishes it (docs/intake-api.md §3.5)."""
    courier = COURIER[dialect]
    job = job or f"{courier}-job-1"
    if name is None:
        name = DIALECT_BOOKED[dialect] if canonical == "booked" else DIALECTS[dialect][canonical]  # type: ignore[index]
    at = (T0 + timedelta(seconds=seq)).isoformat().replace("+00:00", "Z")
    ev = TimelineEvent(float(seq), "status", None, name, 51.52, -0.26)
    body = {
        "type": "status", "courier": courier, "dialect": dialect, "delivery_id": delivery_id,
        "order_reference": "s42-0000001", "courier_job_id": job, "seq": seq, "at": at,
        "message_id": f"{job}:{seq}", "status": name,
        "payload": dialect_payload(dialect, name, ev, job, "s42-0000001", at, f"{courier}-drv-9", "bike"),
    }  # fmt: skip
    return OutgoingMessage.json("courier.events", f"{courier}.status", body, message_id=f"{job}:{seq}")


def courier_location(delivery_id: str, seq: int, job: str = "zoomly-job-1") -> OutgoingMessage:
    body = {
        "type": "location", "courier": "zoomly", "dialect": "uber", "delivery_id": delivery_id,
        "order_reference": "s42-0000001", "courier_job_id": job, "seq": seq,
        "at": T0.isoformat().replace("+00:00", "Z"), "message_id": f"{job}:{seq}",
        "location": {"lat": 51.53, "lon": -0.27},
    }  # fmt: skip
    return OutgoingMessage.json("courier.events", "zoomly.location", body, message_id=f"{job}:{seq}")


def raw(routing_key: str, body: bytes, message_id: str) -> OutgoingMessage:
    return OutgoingMessage("courier.events", routing_key, body, message_id=message_id)


def order_request() -> DeliveryRequest:
    return DeliveryRequest.model_validate(
        {
            "retailer_id": "r01", "channel": "rest", "reference": f"s42-{uuid.uuid4().hex[:7]}",
            "store_id": "r01-s1",
            "pickup": {"lines": ["229 Richmond Road"], "city": "London", "postcode": "NW10 6GR",
                       "lat": 51.528535, "lon": -0.259383},
            "dropoff": {"lines": ["63 York Road"], "city": "London", "postcode": "NW10 3YB",
                        "lat": 51.535433, "lon": -0.270405},
            "pickup_window": {"start": "2026-11-18T11:17:40Z", "end": "2026-11-18T11:47:40Z"},
            "dropoff_window": {"start": "2026-11-18T11:27:40Z", "end": "2026-11-18T12:27:40Z"},
            "recipient": {"name": "Ben Nguyen", "phone": "+447700900786", "email": "ben@example.com"},
            "parcel": {"weight_g": 940, "size": "S"},
            "basket": {"amount_minor": 2247, "currency": "GBP"},
        }
    )  # fmt: skip


def platform_event(delivery_id: str, event: Event, source: str, **fields: Any) -> OutgoingMessage:
    return lifecycle_message(
        LifecycleEvent(
            message_id=f"{delivery_id}:{event.value}:{source}", delivery_id=delivery_id,
            order_reference="s42-0000001", event=event, source=source, at=T0, **fields,  # type: ignore[arg-type]
        )
    )  # fmt: skip


# --- the tests --------------------------------------------------------------------------------------


async def test_gateway_translates_each_dialect_and_parks_what_it_cannot(
    platform_vhost: PlatformVhost,
) -> None:
    pv = platform_vhost
    shards = [tracking_shard(i) for i in range(DEFAULT_SHARDS)]
    with running(service(pv, "gateway")) as procs:
        await ready(pv, procs)
        await publish(
            pv,
            courier_status("uber", "courier_assigned", 2, "dlv_uber"),
            courier_status("doordash", "picked_up", 3, "dlv_doordash"),
            courier_status("stuart", "in_transit", 4, "dlv_stuart"),
            courier_location("dlv_uber", 5),
            courier_status("uber", "picked_up", 6, "dlv_uber", name="teleported"),
            raw("zoomly.status", b'{"type": "status", "courier": "zoomly"', "zoomly-job-1:bad"),
            raw("zoomly.status", courier_status("doordash", "delivered", 7, "dlv_x").body, "dashly-job-1:7"),
        )
        translated = await until(
            lambda: _total(counts(pv, shards), 4), "4 messages on the tracking shards", procs=procs
        )
        parked = await until(
            lambda: _total(counts(pv, [gateway_queue("uber") + ".parked"]), 3), "3 parked", procs=procs
        )
        assert translated == 4 and parked == 3
        on_shards = await take_all(pv, shards)
        parked_messages = await take_all(pv, [gateway_queue(d) + ".parked" for d in COURIER])
        gateway_outbox = rows(pv.run_dir / "gateway.db", "SELECT message_id, status FROM outbox ORDER BY id")

    by_id = {m.message_id: m for m in on_shards}
    assert set(by_id) == {"gw:zoomly-job-1:2", "gw:dashly-job-1:3", "gw:pedalo-job-1:4", "gw:zoomly-job-1:5"}
    expected = {
        "gw:zoomly-job-1:2": ("dlv_uber", "courier_assigned", "zoomly"),
        "gw:dashly-job-1:3": ("dlv_doordash", "picked_up", "dashly"),
        "gw:pedalo-job-1:4": ("dlv_stuart", "in_transit", "pedalo"),
    }
    for message_id, (delivery_id, event, courier) in expected.items():
        m = by_id[message_id]
        ev = LifecycleEvent.model_validate_json(m.body)
        assert (ev.delivery_id, ev.event.value, ev.courier, ev.source) == (
            delivery_id,
            event,
            courier,
            "gateway",
        )
        assert ev.courier_job_id == f"{courier}-job-1" and ev.seq == int(message_id.rsplit(":", 1)[1])
        assert ev.driver == Driver(id=f"{courier}-drv-9", vehicle=None if courier == "dashly" else "bike")
        assert (m.headers or {})[DELIVERY_HEADER] == delivery_id and m.type == "lifecycle"
    ping = json.loads(by_id["gw:zoomly-job-1:5"].body)
    assert (ping["type"], ping["seq"], ping["location"]) == ("location", 5, {"lat": 51.53, "lon": -0.27})

    reasons = {m.message_id: str((m.headers or {})[PARK_REASON]) for m in parked_messages}
    assert set(reasons) == {"zoomly-job-1:6", "zoomly-job-1:bad", "dashly-job-1:7"}
    assert "unknown status 'teleported'" in reasons["zoomly-job-1:6"]
    assert "not JSON" in reasons["zoomly-job-1:bad"]
    assert "registered with the uber dialect, message says doordash" in reasons["dashly-job-1:7"]
    assert {str((m.headers or {})[PARKED_FROM]) for m in parked_messages} == {gateway_queue("uber")}
    # One outbox row per translated message (the three adapters consume concurrently: any order).
    assert sorted(gateway_outbox) == [(mid, "sent") for mid in sorted(by_id)]


async def _total(pending: Awaitable[dict[str, int]], want: int) -> int | None:
    total = sum((await pending).values())
    assert total <= want, f"more messages than expected: {total} > {want}"
    return total if total == want else None


async def test_tracking_applies_a_delivery_in_order_and_records_every_rejection(
    platform_vhost: PlatformVhost,
) -> None:
    pv = platform_vhost
    states_queue = f"t-{uuid.uuid4().hex[:6]}.states"
    async with admin(pv) as channel:
        q = await channel.declare_queue(states_queue, durable=True)
        await q.bind(TRACKING, f"{STATE_PREFIX}*")
    request = order_request()
    dlv = delivery_id_for(request.order_key)
    job = "zoomly-job-1"
    db = pv.run_dir / "tracking.db"

    def state() -> tuple[str, int] | None:
        found = rows(db, "SELECT state, seq FROM deliveries WHERE id = ?", dlv)
        return found[0] if found else None

    def rejected() -> list[tuple[Any, ...]]:
        return rows(db, "SELECT event, reason, message_id, state FROM rejected ORDER BY id")

    with running(service(pv, "gateway"), service(pv, "tracking")) as procs:
        await ready(pv, procs)
        tracking = procs[1]

        async def step(message: OutgoingMessage, cond: Callable[[], Any], what: str) -> None:
            await publish(pv, message)
            await until(cond, what, procs=procs)

        await step(
            contracts.order_created(dlv, request, time.time()),
            lambda: state() == ("requested", 0),
            "requested",
        )
        await step(platform_event(dlv, Event.QUOTED, "quoting"), lambda: state() == ("quoted", 0), "quoted")
        # A courier status before dispatch's BOOKED: it goes to the retry tier...
        await step(
            courier_status("uber", "courier_assigned", 2, dlv, job),
            lambda: any(
                line.get("msg") == "message sent to retry tier" and line.get("message_id") == f"gw:{job}:2"
                for line in tracking.lines()
            ),
            "the early status sent to the retry tier",
        )
        assert state() == ("quoted", 0)
        # ...and is applied once the booking is recorded.
        booked = platform_event(
            dlv, Event.BOOKED, "dispatch", courier="zoomly", courier_job_id=job,
            driver=Driver(id="zoomly-drv-9", vehicle="bike"), eta=T0 + timedelta(minutes=30),
        )  # fmt: skip
        await step(booked, lambda: state() == ("courier_assigned", 2), "the retried status applied")
        await step(courier_status("uber", "returned", 3, dlv, job), lambda: len(rejected()) == 1, "illegal")
        await step(
            courier_status("uber", "picked_up", 4, dlv, "zoomly-job-2"),
            lambda: len(rejected()) == 2,
            "foreign job",
        )
        await step(
            courier_status("uber", "picked_up", 5, dlv, job), lambda: state() == ("picked_up", 5), "picked_up"
        )
        cancel = contracts.cancel_requested(dlv, request.reference, "r01", "customer_request", time.time())
        await step(cancel, lambda: len(rejected()) == 3, "cancel too late")
        await step(
            courier_status("uber", "in_transit", 7, dlv, job),
            lambda: state() == ("in_transit", 7),
            "in_transit",
        )
        await step(
            courier_status("uber", "courier_assigned", 6, dlv, job),
            lambda: len(rejected()) == 4,
            "out of order",
        )
        await step(
            courier_location(dlv, 8, job),
            lambda: rows(db, "SELECT location_seq FROM deliveries") == [(8,)],
            "the position",
        )
        await step(
            courier_status("uber", "delivered", 9, dlv, job), lambda: state() == ("delivered", 9), "delivered"
        )
        await until(
            lambda: (
                rows(db, "SELECT COUNT(*) FROM outbox WHERE status = 'pending'") == [(0,)]
                and rows(db, "SELECT COUNT(*) FROM outbox") == [(7,)]
            ),
            "every state change published",
            procs=procs,
        )
        announced = await take_all(pv, [states_queue])

    assert [(r[0], r[1], r[3]) for r in rejected()] == [
        ("returned", "illegal", "courier_assigned"),
        ("picked_up", "foreign_job", "courier_assigned"),
        ("cancelled", "illegal", "picked_up"),
        ("courier_assigned", "out_of_order", "in_transit"),
    ]
    assert rejected()[1][2] == "gw:zoomly-job-2:4"
    main_path = ["requested", "quoted", "booked", "courier_assigned", "picked_up", "in_transit", "delivered"]
    history = rows(db, "SELECT state FROM history WHERE delivery_id = ? ORDER BY id", dlv)
    assert [h[0] for h in history] == main_path
    changes = [StateChanged.model_validate_json(m.body) for m in announced]
    assert collections.Counter(c.state.value for c in changes) == collections.Counter(main_path)
    assert {m.message_id for m in announced} == {state_message_id(dlv, State(s)) for s in main_path}
    delivered = next(c for c in changes if c.state is State.DELIVERED)
    assert (delivered.previous, delivered.courier, delivered.courier_job_id) == (
        State.IN_TRANSIT,
        "zoomly",
        job,
    )
    assert delivered.recipient.phone == "+447700900786" and delivered.store_name == "229 Richmond Road"
    assert delivered.eta == T0 + timedelta(minutes=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_intake_mirrors_tracking_state_changes_forward_only(platform_vhost: PlatformVhost) -> None:
    pv = platform_vhost
    scenario = Scenario.model_validate(
        {
            "arrivals": {"rate": 10.0},
            "world": {"retailers": 6, "channel_mix": {"rest": 1, "shopify": 1, "epos": 1}},
        }
    )
    retailers = build_retailers(42, scenario)
    retailers_file = pv.run_dir / "secrets" / "retailers.json"
    write_retailers_file(retailers_file, 42, retailers)
    order = next(o for o in OrderGenerator(scenario, 42, retailers) if o.channel == "rest")
    retailer = next(r for r in retailers if r.id == order.retailer_id)
    (create,) = Encoders(SimClock(epoch=time.time())).for_channel("rest").encode_order(order, retailer)
    port = _free_port()
    intake_env = {"DRILL_INTAKE_RUN_DIR": str(pv.run_dir), "DRILL_RETAILERS": str(retailers_file)}
    relay = functools.partial(
        Proc,
        pv,
        "intake-relay",
        [sys.executable, "-m", "system.intake", "relay"],
        _env(pv, "intake", **intake_env),
    )
    http = functools.partial(
        Proc, pv, "intake", [sys.executable, "-m", "system.intake"],
        _env(pv, "intake", DRILL_INTAKE_PORT=str(port), **intake_env),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {retailer.credentials.api_key}"}
    db = pv.run_dir / "intake.db"

    def done(message_id: str) -> bool:
        return rows(db, "SELECT COUNT(*) FROM inbox WHERE message_id = ?", message_id) == [(1,)]

    with running(relay, http) as procs:
        await ready(pv, procs[:1], marker="intake")
        async with aiohttp.ClientSession() as session:

            async def answered() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(base + "/readyz") as resp:
                        return resp.status == 200
                return False

            await until(answered, "intake HTTP ready", procs=procs)
            async with session.post(base + create.path, data=create.body, headers=create.headers) as resp:
                assert resp.status == 202, await resp.text()
                dlv = (await resp.json())["id"]
            # The relay publishes as the intake user: its order.created leaves the outbox.
            await until(
                lambda: (
                    rows(db, "SELECT status FROM outbox WHERE message_id = ?", f"{dlv}:order.created")
                    == [("sent",)]
                ),
                "order.created published",
                procs=procs,
            )

            def change(state: State, **fields: Any) -> OutgoingMessage:
                return state_message(
                    StateChanged(
                        message_id=state_message_id(dlv, state), delivery_id=dlv, order_reference=order.ref,
                        state=state, at=T0 + timedelta(minutes=len(state.value)), **fields,
                    )
                )  # fmt: skip

            eta = T0 + timedelta(minutes=40)
            driver = Driver(id="zoomly-drv-9", vehicle="bike")
            job = {"courier": "zoomly", "courier_job_id": "zoomly-job-1", "driver": driver}
            newer_then_older = [
                change(State.QUOTED),
                change(State.BOOKED, eta=eta, **job),
                change(State.PICKED_UP, **job),
                change(State.COURIER_ASSIGNED, courier="late", courier_job_id="late-job"),
            ]
            stranger = state_message(
                StateChanged(message_id="dlv_stranger:state:quoted", delivery_id="dlv_stranger",
                             order_reference="s42-x", state=State.QUOTED, at=T0)
            )  # fmt: skip
            await publish(pv, *newer_then_older, stranger)
            await until(
                lambda: all(done(m.message_id) for m in newer_then_older), "4 changes consumed", procs=procs
            )
            parked_queue = INTAKE_DELIVERIES + ".parked"
            await until(lambda: _total(counts(pv, [parked_queue]), 1), "the stranger parked", procs=procs)
            (parked,) = await take_all(pv, [parked_queue])
            async with session.get(f"{base}/v1/deliveries/{dlv}", headers=auth) as resp:
                assert resp.status == 200
                view = await resp.json()
            cancel_headers = {
                **auth,
                "Idempotency-Key": str(uuid.uuid4()),
                "Content-Type": "application/json",
            }
            async with session.post(
                f"{base}/v1/deliveries/{dlv}/cancel",
                data=b'{"reason": "customer_request"}',
                headers=cancel_headers,
            ) as resp:
                cancel_status = resp.status

    assert view["state"] == "picked_up"
    assert [h["state"] for h in view["history"]] == ["requested", "quoted", "booked", "picked_up"]
    assert [h["source"] for h in view["history"][1:]] == ["tracking"] * 3
    assert view["courier"] == {"name": "zoomly", "job_id": "zoomly-job-1"}
    assert view["driver"] == {"id": "zoomly-drv-9", "vehicle": "bike"}
    assert view["eta"] == eta.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert cancel_status == 409, "the cancel must see the mirrored state (picked up: too late)"
    # A state change about a delivery intake never had is parked with the reason, not dropped.
    assert parked.message_id == "dlv_stranger:state:quoted"
    assert "unknown delivery 'dlv_stranger'" in str((parked.headers or {})[PARK_REASON])
    assert rows(db, "SELECT COUNT(*) FROM deliveries") == [(1,)]
