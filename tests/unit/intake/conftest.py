"""In-process intake: the aiohttp app on a real SQLite file, no broker; payloads from the simulator."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from simulator.channels.base import WireRequest
from simulator.channels.encoders import Encoders
from simulator.clock import SimClock
from simulator.config import Scenario
from simulator.orders import OrderGenerator, OrderSpec
from simulator.world import Retailer, build_retailers, write_retailers_file
from system.intake.app import build_app
from system.intake.settings import IntakeSettings
from system.intake.store import IntakeStore
from system.platform.retailers import RetailerRegistry

SEED = 42  # with an even channel mix, seed 42 gives 3 Shopify, 1 ePOS and 2 REST retailers


@dataclass
class World:
    """The simulator's world: retailers (their secrets file) and orders encoded per channel."""

    path: Path
    retailers: list[Retailer]
    orders: list[OrderSpec]
    encoders: Encoders

    def retailer(self, order: OrderSpec) -> Retailer:
        return next(r for r in self.retailers if r.id == order.retailer_id)

    def order(self, channel: str, n: int = 0, **changes: object) -> OrderSpec:
        """The ``n``-th order of ``channel`` (with fields replaced, e.g. ``update=True``)."""
        found = [o for o in self.orders if o.channel == channel][n]
        return dataclasses.replace(found, **changes)  # type: ignore[arg-type]

    def requests(self, order: OrderSpec) -> list[WireRequest]:
        return self.encoders.for_channel(order.channel).encode_order(order, self.retailer(order))

    def cancel(self, order: OrderSpec, delivery_id: str | None = None) -> WireRequest:
        req = self.encoders.for_channel(order.channel).encode_cancel(order, self.retailer(order), delivery_id)
        assert req is not None
        return req


def make_world(tmp: Path, count: int = 200) -> World:
    scenario = Scenario.model_validate(
        {
            "arrivals": {"rate": 10.0},
            "world": {"retailers": 6, "channel_mix": {"rest": 1, "shopify": 1, "epos": 1}},
        }
    )
    retailers = build_retailers(SEED, scenario)
    path = tmp / "secrets" / "retailers.json"
    write_retailers_file(path, SEED, retailers)
    gen = OrderGenerator(scenario, SEED, retailers)
    orders = [o for _, o in zip(range(count), gen, strict=False)]
    return World(path, retailers, orders, Encoders(SimClock(epoch=time.time())))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@dataclass
class Intake:
    """The app under test with its DB file."""

    client: TestClient  # type: ignore[type-arg]
    store: IntakeStore
    db: Path

    async def send(self, req: WireRequest, **header_changes: str) -> tuple[int, dict[str, object]]:
        headers = {**req.headers, **header_changes}
        resp = await self.client.request(req.method, req.path, data=req.body, headers=headers)
        return resp.status, await resp.json()

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as conn:
            return list(conn.execute(sql, args).fetchall())

    def count(self, sql: str, *args: object) -> int:
        value = self.rows(sql, *args)[0][0]
        assert isinstance(value, int)
        return value


@pytest.fixture
async def intake(tmp_path: Path, world: World) -> AsyncIterator[Intake]:
    settings = IntakeSettings(
        run_dir=tmp_path, retailers_file=world.path, sqlite_synchronous="NORMAL", max_body_bytes=64 * 1024
    )
    store = IntakeStore(settings.database, synchronous="NORMAL")
    await store.open()
    app = build_app(settings, store, RetailerRegistry(world.path))
    async with TestClient(TestServer(app)) as client:
        yield Intake(client, store, settings.database)
    await store.close()
