"""Admission control at intake: the pure decision, the relay's lag sampler, the gate, and the 503 answers."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from system.intake.admission import AdmissionGate, LagSampler, read_lag, write_lag
from system.intake.app import build_app
from system.intake.decide import (
    DISABLED,
    LAG_STALE,
    LAG_UNKNOWN,
    OK,
    OUTBOX_AGE,
    QUEUE_DEPTH,
    UNBOOKED,
    Lag,
    Limits,
    admission,
    retry_after_header,
)
from system.intake.settings import ADMISSION_QUEUES, IntakeSettings
from system.intake.store import IntakeStore
from system.messaging.db import open_db
from system.platform.retailers import RetailerRegistry

from .conftest import Intake, World

LIMITS = Limits(
    depth_high=100,
    depth_low=20,
    outbox_age_high_s=30.0,
    outbox_age_low_s=5.0,
    unbooked_high=300,
    unbooked_low=150,
    retry_after_s=3,
)
NOW = 1_000.0


def lag(depth: int | None, age: float = 0.0, at: float = NOW, unbooked: int | None = None) -> Lag:
    return Lag(at, depth, "quoting.answers" if depth else None, age, unbooked)


# -- the pure decision ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "shedding", "shed", "reason"),
    [
        (lag(99), False, False, OK),  # below the high mark: admit
        (lag(100), False, True, QUEUE_DEPTH),  # at the high mark: shed
        (lag(50), True, True, QUEUE_DEPTH),  # shedding, still above the low mark: keep shedding
        (lag(21), True, True, QUEUE_DEPTH),
        (lag(20), True, False, OK),  # at the low mark: admit again
        (lag(50), False, False, OK),  # between the marks, admitting: keep admitting (no flapping)
        (lag(0, age=30.0), False, True, OUTBOX_AGE),
        (lag(0, age=6.0), True, True, OUTBOX_AGE),
        (lag(0, age=5.0), True, False, OK),
        (lag(None, age=300.0), False, False, LAG_UNKNOWN),  # broker silent: fail open, outbox age or not
        (lag(None, age=300.0), True, False, LAG_UNKNOWN),
        (lag(10_000, at=NOW - 5.1), True, False, LAG_STALE),  # the relay stopped sampling: fail open
        (None, True, False, LAG_UNKNOWN),
        # Orders waiting for a courier while every queue looks empty (the prefetch windows hold them).
        (lag(0, unbooked=299), False, False, OK),
        (lag(0, unbooked=300), False, True, UNBOOKED),
        (lag(0, unbooked=151), True, True, UNBOOKED),
        (lag(0, unbooked=150), True, False, OK),
        (lag(0, unbooked=200), False, False, OK),  # between the marks, admitting: keep admitting
        (lag(None, unbooked=5_000), False, False, LAG_UNKNOWN),  # brokers down: orders pile up, admit
        (lag(0), True, False, OK),  # not measured (no state mirror): not a reason to shed
    ],
)
def test_admission_decision(sample: Lag | None, shedding: bool, shed: bool, reason: str) -> None:
    d = admission(sample, LIMITS, shedding=shedding, now=NOW)
    assert (d.shed, d.reason) == (shed, reason)
    assert d.retry_after_s == (3 if shed else 0)
    if shed:
        assert d.detail


def test_admission_disabled_admits_whatever_the_lag() -> None:
    off = Limits(enabled=False)
    assert admission(lag(10**6, age=10**4), off, shedding=True, now=NOW).reason == DISABLED


def test_depth_wins_over_outbox_age_and_names_the_deepest_queue() -> None:
    d = admission(lag(500, age=60.0), LIMITS, shedding=False, now=NOW)
    assert d.reason == QUEUE_DEPTH and "quoting.answers" in d.detail and "500" in d.detail


def test_hysteresis_does_not_flap_on_a_noisy_depth() -> None:
    shedding, changes = False, 0
    for depth in [90, 110, 95, 60, 105, 30, 25, 21, 99, 19, 50, 99, 80]:
        d = admission(lag(depth), LIMITS, shedding=shedding, now=NOW)
        changes += d.shed != shedding
        shedding = d.shed
    assert changes == 2  # on at 110, off at 19: nothing in between switches it


def test_retry_after_header_is_whole_seconds_rounded_up() -> None:
    assert [retry_after_header(s) for s in (0, 0.4, 1, 1.2, 30)] == ["1", "1", "1", "2", "30"]


# -- settings ----------------------------------------------------------------------------------------------


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = IntakeSettings(run_dir=tmp_path)
    assert s.admission_enabled and s.admission_queues == list(ADMISSION_QUEUES)
    assert s.admission_limits == Limits()  # the decision's defaults are the settings' defaults
    monkeypatch.setenv("DRILL_INTAKE_ADMISSION_ENABLED", "false")
    monkeypatch.setenv("DRILL_INTAKE_ADMISSION_QUEUES", "quoting.orders, dispatch.quotes")
    monkeypatch.setenv("DRILL_INTAKE_ADMISSION_DEPTH_HIGH", "400")
    monkeypatch.setenv("DRILL_INTAKE_ADMISSION_RETRY_AFTER_S", "5")
    s = IntakeSettings(run_dir=tmp_path)
    assert s.admission_queues == ["quoting.orders", "dispatch.quotes"]
    assert s.admission_limits == Limits(enabled=False, depth_high=400, retry_after_s=5)


def test_settings_refuse_a_low_mark_above_the_high_mark(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="admission_depth_low"):
        IntakeSettings(run_dir=tmp_path, admission_depth_high=10, admission_depth_low=11)
    with pytest.raises(ValueError, match="admission_outbox_age_low_s"):
        IntakeSettings(run_dir=tmp_path, admission_outbox_age_high_s=1.0, admission_outbox_age_low_s=2.0)


# -- the relay's sampler --------------------------------------------------------------------------------


async def test_sampler_writes_depth_deepest_queue_and_outbox_age(tmp_path: Path) -> None:
    store = IntakeStore(tmp_path / "intake.db", synchronous="NORMAL")
    await store.open()
    try:
        # One unpublished outbox row, 12 s old; a returned (attempted) older one does not count.
        with sqlite3.connect(store.path) as conn:
            for mid, attempts, age in (("m-returned", 1, 100.0), ("m-new", 0, 12.0)):
                conn.execute(
                    "INSERT INTO outbox (message_id, exchange, routing_key, body, headers, content_type,"
                    " attempts, created_at) VALUES (?, 'orders', 'order.created', x'00', '{}', 'json', ?, ?)",
                    (mid, attempts, time.time() - age),
                )

        async def probe(queues: Sequence[str]) -> dict[str, int]:
            return {q: (7 if q == "dispatch.quotes" else 1) for q in queues}

        sampler = LagSampler(store.path, ADMISSION_QUEUES, 1.0, 1.0, probe=probe)
        db = await open_db(store.path)
        try:
            written = await sampler.sample_once(db)
        finally:
            await db.close()
        read = await store.lag()
        assert read == written
        assert read is not None and read.depth == 11 and read.deepest == "dispatch.quotes"
        assert 11.0 < read.outbox_age_s < 14.0
    finally:
        await store.close()


async def test_sampler_counts_the_accepted_orders_with_no_courier_yet(tmp_path: Path) -> None:
    store = IntakeStore(tmp_path / "intake.db", synchronous="NORMAL")
    await store.open()
    try:
        with sqlite3.connect(store.path) as conn:
            for i, state in enumerate(["requested"] * 3 + ["quoted"] * 2 + ["booked", "delivered", "failed"]):
                conn.execute(
                    "INSERT INTO deliveries (id, order_key, retailer_id, channel, reference, state, request,"
                    " created_at, updated_at) VALUES (?, ?, 'r01', 'rest', ?, ?, '{}', 0, 0)",
                    (f"dlv_{i}", f"k{i}", f"s-{i}", state),
                )

        async def probe(queues: Sequence[str]) -> dict[str, int]:
            return dict.fromkeys(queues, 0)

        db = await open_db(store.path)
        try:
            counted = LagSampler(store.path, ["quoting.orders"], 1.0, 1.0, probe=probe, count_unbooked=True)
            assert (await counted.sample_once(db)).unbooked == 5
            plain = LagSampler(store.path, ["quoting.orders"], 1.0, 1.0, probe=probe)
            assert (await plain.sample_once(db)).unbooked is None  # no state mirror: not measured
        finally:
            await db.close()
        last = await store.lag()
        assert last is not None and last.unbooked is None
    finally:
        await store.close()


async def test_sampler_writes_an_unknown_depth_when_the_broker_does_not_answer(tmp_path: Path) -> None:
    store = IntakeStore(tmp_path / "intake.db", synchronous="NORMAL")
    await store.open()
    calls = 0

    async def silent(queues: Sequence[str]) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(5)  # a node that does not answer: the round's deadline ends it
        raise ConnectionError("no node answers")

    try:
        sampler = LagSampler(store.path, ["quoting.orders"], 0.01, 0.05, probe=silent)
        stop = asyncio.Event()
        task = asyncio.create_task(sampler.run(stop))
        for _ in range(300):
            if sampler.samples >= 2:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 2)
        sample = await store.lag()
        assert sample is not None and sample.depth is None and sample.deepest is None
        assert admission(sample, Limits(), shedding=True, now=time.time()).reason == LAG_UNKNOWN
    finally:
        await store.close()


async def test_lag_row_round_trips(tmp_path: Path) -> None:
    store = IntakeStore(tmp_path / "intake.db", synchronous="NORMAL")
    await store.open()
    db = await open_db(store.path)
    try:
        assert await read_lag(db) is None
        for sample in (Lag(1.0, 5, "quoting.orders", 0.5, 240), Lag(2.0, None, None, 3.0)):
            await write_lag(db, sample)
            assert await read_lag(db) == sample
    finally:
        await db.close()
        await store.close()


# -- the gate ------------------------------------------------------------------------------------------------


def test_gate_refresh_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    gate = AdmissionGate(LIMITS, clock=lambda: NOW)
    caplog.set_level(logging.INFO, logger="system.intake.admission")
    for depth in (10, 150, 150, 60, 10, 10):
        gate.refresh(lag(depth))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["admission: shedding new orders", "admission: admitting new orders again"]
    assert gate.check() is None


async def test_gate_run_reads_until_stopped_and_fails_open_on_a_read_error() -> None:
    gate = AdmissionGate(LIMITS, clock=lambda: NOW)
    reads = [lag(500), lag(500)]

    async def read() -> Lag | None:
        if reads:
            return reads.pop(0)
        raise sqlite3.OperationalError("database is locked")

    stop = asyncio.Event()
    task = asyncio.create_task(gate.run(read, 0.01, stop))
    await asyncio.sleep(0.005)
    assert gate.check() is not None
    for _ in range(100):
        if not reads:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert gate.check() is None and gate.decision.reason == LAG_UNKNOWN
    stop.set()
    await asyncio.wait_for(task, 1)


# -- the HTTP answers ------------------------------------------------------------------------------------------


@pytest.fixture
async def gated(tmp_path: Path, world: World) -> AsyncIterator[tuple[Intake, AdmissionGate]]:
    settings = IntakeSettings(run_dir=tmp_path, retailers_file=world.path, sqlite_synchronous="NORMAL")
    gate = AdmissionGate(LIMITS)
    store = IntakeStore(settings.database, synchronous="NORMAL", admission=gate)
    await store.open()
    app = build_app(settings, store, RetailerRegistry(world.path))
    async with TestClient(TestServer(app)) as client:
        yield Intake(client, store, settings.database), gate
    await store.close()


def shed_now(gate: AdmissionGate) -> None:
    gate.refresh(Lag(time.time(), 1_000, "quoting.answers", 0.0))
    assert gate.check() is not None


def admit_now(gate: AdmissionGate) -> None:
    gate.refresh(Lag(time.time(), 0, None, 0.0))
    assert gate.check() is None


@pytest.mark.parametrize("channel", ["rest", "shopify", "epos"])
async def test_new_order_is_shed_with_503_and_retry_after_and_nothing_stored(
    gated: tuple[Intake, AdmissionGate], world: World, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    intake, gate = gated
    shed_now(gate)
    caplog.set_level(logging.INFO, logger="system.intake.store")
    req = world.requests(world.order(channel))[0]
    resp = await intake.client.request(req.method, req.path, data=req.body, headers=req.headers)
    body = await resp.json()
    assert resp.status == 503 and resp.headers["Retry-After"] == "3"
    assert (
        body["reason"] == QUEUE_DEPTH and body["retry_after_s"] == 3 and "quoting.answers" in body["detail"]
    )
    assert "Retry-After" in body["error"]
    for table in ("deliveries", "outbox", "idempotency_keys", "webhook_events"):
        assert intake.count(f"SELECT COUNT(*) FROM {table}") == 0, table
    (line,) = [r for r in caplog.records if r.getMessage() == "order shed"]
    assert line.__dict__["idempotency_key"] == req.key and line.__dict__["reason"] == QUEUE_DEPTH
    assert line.__dict__["order_reference"] == world.order(channel).ref and line.__dict__["shed_total"] == 1
    assert gate.shed_total == 1 and gate.shed_by_reason == {QUEUE_DEPTH: 1}
    # The same request once the lag is gone: accepted, as if the first try had never happened.
    admit_now(gate)
    status, again = await intake.send(req)
    assert status == 202 and again["state"] == "requested"


@pytest.mark.parametrize("channel", ["rest", "shopify", "epos"])
async def test_a_retry_of_an_accepted_order_gets_its_stored_answer_while_shedding(
    gated: tuple[Intake, AdmissionGate], world: World, channel: str
) -> None:
    intake, gate = gated
    req = world.requests(world.order(channel))[0]
    status, first = await intake.send(req)
    assert status == 202
    shed_now(gate)
    status, again = await intake.send(req)
    assert status == 200 and again["id"] == first["id"]
    assert gate.shed_total == 0
    assert intake.count("SELECT COUNT(*) FROM deliveries") == 1


async def test_rest_cancel_is_not_shed(gated: tuple[Intake, AdmissionGate], world: World) -> None:
    intake, gate = gated
    order = world.order("rest")
    _, first = await intake.send(world.requests(order)[0])
    shed_now(gate)
    status, body = await intake.send(world.cancel(order, str(first["id"])))
    assert status == 202 and body["state"] == "cancelled"


async def test_healthz_shows_the_gate(gated: tuple[Intake, AdmissionGate], world: World) -> None:
    intake, gate = gated
    shed_now(gate)
    await intake.send(world.requests(world.order("rest"))[0])
    resp = await intake.client.get("/healthz")
    doc = json.loads(await resp.text())
    assert resp.status == 200
    assert doc["admission"] == {
        "enabled": True,
        "shedding": True,
        "reason": QUEUE_DEPTH,
        "shed_total": 1,
        "shed_by_reason": {QUEUE_DEPTH: 1},
    }
    assert (await intake.client.get("/readyz")).status == 200  # shedding is an answer, not unreadiness
