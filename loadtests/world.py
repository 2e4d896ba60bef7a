"""The retailers the load plays and the orders it sends, built from the simulator's world code.

Retailers come from the ``retailers.json`` the platform was started with (``DRILL_RETAILERS``): its
stores, categories and secrets are used as they are, so every order names a store the platform knows
and is signed with the key it checks. Without a file they are generated from ``DRILL_SEED`` exactly as
``drill simulate`` would (``simulator.world.build_retailers``).

Order *contents* come from :class:`simulator.orders.OrderGenerator` (plausible addresses within the
retailer's radius, baskets of its category), then three things are rewritten per order:

* the reference: ``s<seed>-L<tag>-<n>`` — unique per process (``tag``) and distinguishable from the
  simulator's ``s<seed>-<n>`` when both run against one platform, while keeping the ``s<seed>-``
  prefix the Shopify encoder derives its order ids from;
* ``seq`` (Shopify ``id`` / ``order_number``): unique per process as well;
* the time windows: re-based on *now*, because a closed-loop load user does not follow the
  generator's arrival times (a window hours in the past would be a silly order).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import rundir
from loadtests.settings import env_int, env_str
from simulator.clock import SimClock
from simulator.config import Channel, Scenario
from simulator.geo import Address, Point
from simulator.orders import OrderGenerator, OrderSpec
from simulator.rng import derive_seed, token_hex
from simulator.world import (
    CATEGORIES,
    Credentials,
    MarketplaceRules,
    Retailer,
    Store,
    build_retailers,
    write_retailers_file,
)

CHANNELS: tuple[Channel, ...] = ("rest", "shopify", "epos")


class RetailersError(Exception):
    """The retailers file cannot be used (unreadable, malformed, or no retailer in it)."""


def _retailer_from_doc(index: int, d: dict[str, Any]) -> Retailer:
    stores = tuple(
        Store(s["id"], Address(tuple(s["lines"]), s["city"], s["postcode"], Point(s["lat"], s["lon"])))
        for s in d["stores"]
    )
    r = d["rules"]
    rules = MarketplaceRules(
        selection=r["selection"],
        priority_fleet=tuple(r["priority_fleet"]),
        max_distance_km=float(r["max_distance_km"]),
        allowed_vehicles=tuple(r["allowed_vehicles"]),
        max_price_minor=int(r["max_price_minor"]),
    )
    creds = Credentials(d["api_key"], d["shop_domain"], d["webhook_secret"], d["merchant_id"])
    category = d["category"]
    return Retailer(
        id=d["id"],
        name=d["name"],
        channel=d["channel"],
        category=category,
        # The file carries no volumes: the world's Zipf-like weights by position.
        weight=round(1.0 / math.sqrt(index + 1), 6),
        stores=stores,
        rules=rules,
        currency=d.get("currency", "GBP"),
        credentials=creds,
        profile=CATEGORIES[category],
    )


def load_retailers_file(path: Path) -> list[Retailer]:
    """The retailers of a ``retailers.json`` (docs/intake-api.md §1), stores and secrets as given."""
    try:
        doc = json.loads(path.read_bytes())
        out = [_retailer_from_doc(i, d) for i, d in enumerate(doc["retailers"])]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RetailersError(f"{path}: cannot use retailers file: {exc!r}") from None
    if not out:
        raise RetailersError(f"{path}: no retailers")
    return out


def default_scenario() -> Scenario:
    """The scenario whose world the generated retailers and the order contents come from."""
    return Scenario.model_validate({"arrivals": {"rate": 1.0}})


def load_retailers() -> list[Retailer]:
    """``DRILL_RETAILERS`` when set, else the world of ``DRILL_SEED`` (written to the run directory).

    The generated file is written to ``<run>/locust/retailers.json`` (mode 0600) so that a platform
    can be started with the very secrets the load signs with.
    """
    path = env_str("DRILL_RETAILERS")
    if path:
        return load_retailers_file(Path(path))
    seed = env_int("DRILL_SEED", 42)
    retailers = build_retailers(seed, default_scenario())
    run_dir = env_str("DRILL_RUN_DIR")
    if run_dir:
        target = Path(run_dir) / rundir.LOCUST_RETAILERS
        if not target.exists():
            # Several workers may race here: write a temp file and rename (atomic on POSIX).
            tmp = target.with_name(f".retailers-{os.getpid()}.json")
            write_retailers_file(tmp, seed, retailers)
            tmp.replace(target)
    return retailers


def for_channel(retailers: list[Retailer], channel: Channel) -> list[Retailer]:
    """The regular retailers of ``channel``; all regular ones when none uses it (small worlds)."""
    regular = [r for r in retailers if not r.id.startswith("n")] or retailers
    return [r for r in regular if r.channel == channel] or regular


def process_tag() -> str:
    """This process's tag in order references: ``DRILL_LOADTEST_TAG`` or 4 random hex digits + pid."""
    tag = env_str("DRILL_LOADTEST_TAG")
    if tag:
        return tag
    return token_hex(time.time_ns(), os.getpid(), nbytes=2) + f"{os.getpid() % 100000:05d}"


class OrderFactory:
    """Endless orders for one channel, unique per process; cheap enough for 10k orders/s.

    One factory per process and channel, shared by the users of that channel (greenlets of one
    thread; the counter is still guarded by a lock because the AMQP thread could one day use it).
    """

    def __init__(self, retailers: list[Retailer], channel: Channel, seed: int, tag: str) -> None:
        self.channel = channel
        self.seed = seed
        self.tag = tag
        self.retailers = {r.id: r for r in retailers}
        self._gen: Iterator[OrderSpec] = iter(
            OrderGenerator(default_scenario(), derive_seed(seed, "locust", tag, channel), retailers)
        )
        self._lock = threading.Lock()
        self._n = 0
        # Shopify ids must be unique per shop: derive a per-process offset from the tag.
        self._seq_base = (derive_seed(seed, "locust-seq", tag) % 900) * 10_000
        self.epoch = time.time()
        self.clock = SimClock(compression=1.0, start_hour=0.0, epoch=self.epoch)

    def next(self) -> tuple[OrderSpec, Retailer]:
        """The next order (references and windows rewritten) and its retailer."""
        with self._lock:
            self._n += 1
            n = self._n
            o = next(self._gen)
        now_sim = time.time() - self.epoch
        shift = now_sim - o.sim_at
        order = dataclasses.replace(
            o,
            ref=f"s{self.seed}-L{self.tag}-{self.channel[0]}{n:07d}",
            seq=self._seq_base + n,
            at=now_sim,
            sim_at=now_sim,
            pickup_window=(o.pickup_window[0] + shift, o.pickup_window[1] + shift),
            dropoff_window=(o.dropoff_window[0] + shift, o.dropoff_window[1] + shift),
            # The users decide duplicates, updates and cancels themselves (their task weights).
            cancel_after_s=None,
            duplicate=False,
            update=False,
            out_of_order=False,
        )
        return order, self.retailers[o.retailer_id]
