"""The retailers of the simulated world, drawn from the seed, and their secrets file.

Each retailer has a channel (REST, Shopify, ePOS), a category (which sets basket values, parcel sizes and
preparation time), one to four stores (pickup addresses), a relative order volume and marketplace rules
(how the platform should choose a courier for it).

Secrets (REST API keys, Shopify shop secrets, ePOS signature keys) are not in the code: they live in a
``retailers.json`` file given by path; by default the simulator writes one into the run directory,
generated deterministically from the seed. The platform reads the same file to know its retailers::

    {"version": 1, "seed": 42, "retailers": [
      {"id": "r01", "name": "Crumb & Co", "channel": "shopify", "category": "grocery",
       "api_key": "…", "shop_domain": "crumb-co.myshopify.com", "webhook_secret": "…",
       "merchant_id": "MR01…", "currency": "GBP",
       "stores": [{"id": "r01-s1", "lines": ["12 High Street"], "city": "London", "postcode": "N1 4AB",
                   "lat": 51.53, "lon": -0.1}],
       "rules": {"selection": "cheapest", "priority_fleet": ["zoomly"], "max_distance_km": 12.0,
                 "allowed_vehicles": ["bike", "cargobike", "motorbike", "car", "van"],
                 "max_price_minor": 2500}}]}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from simulator.config import Channel, ParcelSize, Scenario, Vehicle
from simulator.geo import Address, City
from simulator.rng import rng_for, token_hex

Category = Literal["grocery", "restaurant", "pharmacy", "fashion", "electronics", "florist"]


@dataclass(frozen=True, slots=True)
class CategoryProfile:
    """What orders of a category look like."""

    basket_median_minor: int
    items: tuple[tuple[str, int], ...]  # (title, unit price minor)
    sizes: tuple[tuple[ParcelSize, float], ...]  # (size, weight)
    weight_g: tuple[int, int]
    prep_min: tuple[int, int]  # minutes until the parcel is ready for pickup
    dropoff_window_min: int


CATEGORIES: dict[Category, CategoryProfile] = {
    "grocery": CategoryProfile(3800, (("Sourdough loaf", 450), ("Oat milk 1l", 210), ("Free-range eggs x12", 395),
                               ("Coffee beans 250g", 825), ("Cheddar 400g", 520), ("Apples x6", 300)),
                               (("M", 0.5), ("L", 0.4), ("XL", 0.1)), (2000, 14000), (15, 40), 60),
    "restaurant": CategoryProfile(2600, (("Chicken katsu", 1195), ("Pad thai", 1095), ("Margherita", 1050),
                                  ("Falafel wrap", 795), ("Ramen", 1350)),
                                  (("S", 0.7), ("M", 0.3)), (400, 2500), (10, 25), 30),
    "pharmacy": CategoryProfile(1800, (("Paracetamol", 150), ("Vitamin D", 699), ("Hand cream", 450),
                                ("Plasters", 299)), (("S", 0.9), ("M", 0.1)), (100, 1200), (10, 30), 60),
    "fashion": CategoryProfile(7400, (("Linen shirt", 4500), ("Trainers", 8900), ("Scarf", 2500),
                               ("Jeans", 6500)), (("M", 0.6), ("L", 0.4)), (400, 3000), (30, 90), 120),
    "electronics": CategoryProfile(14900, (("USB-C cable", 1299), ("Headphones", 14900), ("Monitor", 24900),
                                   ("Keyboard", 7900)), (("M", 0.4), ("L", 0.4), ("XL", 0.2)),
                                   (300, 12000), (30, 120), 120),
    "florist": CategoryProfile(4500, (("Bouquet", 4500), ("Orchid", 3200), ("Peonies", 3800)),
                               (("M", 0.7), ("L", 0.3)), (500, 3000), (20, 60), 90),
}  # fmt: skip

_NAME_A = ("Crumb", "Basil", "Nettle", "Copper", "Harbour", "Juniper", "Maple", "Larder", "Pollen", "Ember",
           "Quill", "Saffron", "Thistle", "Willow", "Fennel", "Bramble")  # fmt: skip
_NAME_B = ("& Co", "Market", "Kitchen", "Store", "Bros", "House", "Pantry", "Works", "Supply", "Emporium")


@dataclass(frozen=True, slots=True)
class MarketplaceRules:
    """How the platform must choose a courier for this retailer (the platform enforces them).

    Suitable quotes of the ``priority_fleet`` are tried first, then the backups cheapest first;
    ``selection`` orders the priority fleet itself: "cheapest" by price, "priority" in fleet order.
    """

    selection: Literal["cheapest", "priority"]
    priority_fleet: tuple[str, ...]
    max_distance_km: float
    allowed_vehicles: tuple[Vehicle, ...]
    max_price_minor: int


@dataclass(frozen=True, slots=True)
class Store:
    """A pickup location of a retailer."""

    id: str
    address: Address


@dataclass(frozen=True, slots=True)
class Credentials:
    """A retailer's secrets: REST API key, Shopify shop domain + secret, ePOS merchant + signature key."""

    api_key: str
    shop_domain: str
    webhook_secret: str
    merchant_id: str


@dataclass(frozen=True, slots=True)
class Retailer:
    """A retailer and what the simulator needs to play it."""

    id: str
    name: str
    channel: Channel
    category: Category
    weight: float
    stores: tuple[Store, ...]
    rules: MarketplaceRules
    currency: str
    credentials: Credentials
    profile: CategoryProfile = field(repr=False)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).replace("--", "-").strip("-")


def make_credentials(seed: int, retailer_id: str, name: str) -> Credentials:
    """Deterministic secrets for a retailer (the default secrets file; real runs may supply their own)."""
    return Credentials(
        api_key="sk_sim_" + token_hex(seed, retailer_id, "api_key", nbytes=16),
        shop_domain=f"{_slug(name)}-{retailer_id}.myshopify.com",
        webhook_secret=token_hex(seed, retailer_id, "webhook_secret"),
        merchant_id="M" + token_hex(seed, retailer_id, "merchant", nbytes=6).upper(),
    )


def _make_retailer(seed: int, index: int, rid: str, channel: Channel, city: City, scenario: Scenario,
                   name: str | None = None) -> Retailer:  # fmt: skip
    rng = rng_for(seed, "retailer", rid)
    cats = list(CATEGORIES)
    category: Category = cats[rng.randrange(len(cats))]
    if name is None:
        name = f"{_NAME_A[rng.randrange(len(_NAME_A))]} {_NAME_B[rng.randrange(len(_NAME_B))]}"
    n_stores = rng.randint(1, 4)
    stores = tuple(
        Store(id=f"{rid}-s{i + 1}", address=city.address(rng, city.point_near(rng, city.centre, 6.0, 15.0)))
        for i in range(n_stores)
    )
    couriers = [c.name for c in scenario.couriers]
    priority = tuple(c.name for c in scenario.couriers if c.priority) or (couriers[0],)
    vehicles: tuple[Vehicle, ...] = ("bike", "cargobike", "motorbike", "car", "van")
    if category == "restaurant":
        vehicles = ("bike", "cargobike", "motorbike", "car")  # hot food: no vans
    rules = MarketplaceRules(
        selection="priority" if rng.random() < 0.3 else "cheapest",
        priority_fleet=priority,
        max_distance_km=float(rng.choice((6, 8, 12, 15))),
        allowed_vehicles=vehicles,
        max_price_minor=rng.choice((1500, 2500, 4000)),
    )
    return Retailer(
        id=rid, name=name, channel=channel, category=category,
        # Zipf-like volumes: a few big retailers, a long tail, as in real marketplaces.
        weight=round(1.0 / math.sqrt(index + 1), 6),
        stores=stores, rules=rules, currency=scenario.world.currency,
        credentials=make_credentials(seed, rid, name), profile=CATEGORIES[category],
    )  # fmt: skip


def build_retailers(seed: int, scenario: Scenario) -> list[Retailer]:
    """The retailers for ``scenario`` under ``seed``, then one per ``new_client`` step (weight 0)."""
    city = City(scenario.world.city_radius_km)
    mix = scenario.world.channel_mix
    shares: list[tuple[Channel, float]] = [("rest", mix.rest), ("shopify", mix.shopify), ("epos", mix.epos)]
    total = sum(s for _, s in shares)
    rng = rng_for(seed, "channels")
    out = []
    for i in range(scenario.world.retailers):
        u, channel = rng.random() * total, shares[-1][0]
        for ch, share in shares:
            if u < share:
                channel = ch
                break
            u -= share
        out.append(_make_retailer(seed, i, f"r{i + 1:02d}", channel, city, scenario))
    for j, step in enumerate(s for s in scenario.arrivals.steps if s.new_client):
        rid = f"n{j + 1:02d}"
        r = _make_retailer(seed, j, rid, "rest", city, scenario, name=step.new_client)
        out.append(r)
    return out


# --- the secrets file -------------------------------------------------------------------------------


class _SecretEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    api_key: str
    shop_domain: str
    webhook_secret: str
    merchant_id: str


class _SecretsFile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    version: int
    retailers: list[_SecretEntry]


def retailers_document(seed: int, retailers: list[Retailer]) -> dict[str, object]:
    """The ``retailers.json`` document (secrets, stores and rules) for the platform and the simulator."""
    docs = []
    for r in retailers:
        c = r.credentials
        docs.append({
            "id": r.id, "name": r.name, "channel": r.channel, "category": r.category, "currency": r.currency,
            "api_key": c.api_key, "shop_domain": c.shop_domain, "webhook_secret": c.webhook_secret,
            "merchant_id": c.merchant_id,
            "stores": [{"id": s.id, "lines": list(s.address.lines), "city": s.address.city,
                        "postcode": s.address.postcode, "lat": s.address.point.lat, "lon": s.address.point.lon}
                       for s in r.stores],
            "rules": {"selection": r.rules.selection, "priority_fleet": list(r.rules.priority_fleet),
                      "max_distance_km": r.rules.max_distance_km,
                      "allowed_vehicles": list(r.rules.allowed_vehicles),
                      "max_price_minor": r.rules.max_price_minor},
        })  # fmt: skip
    return {"version": 1, "seed": seed, "retailers": docs}


def write_retailers_file(path: Path, seed: int, retailers: list[Retailer]) -> None:
    """Write ``retailers.json`` (mode 0600: it holds secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(retailers_document(seed, retailers), indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)


class SecretsError(Exception):
    """The retailers/secrets file cannot be read or does not cover every retailer."""


def apply_secrets_file(path: Path, retailers: list[Retailer]) -> list[Retailer]:
    """The retailers with their credentials replaced by those of the file at ``path``."""
    try:
        doc = _SecretsFile.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise SecretsError(f"{path}: cannot use retailers file: {exc}") from None
    by_id = {e.id: e for e in doc.retailers}
    missing = [r.id for r in retailers if r.id not in by_id]
    if missing:
        raise SecretsError(f"{path}: no credentials for retailer(s) {missing}")
    out = []
    for r in retailers:
        e = by_id[r.id]
        creds = Credentials(e.api_key, e.shop_domain, e.webhook_secret, e.merchant_id)
        out.append(
            Retailer(
                r.id, r.name, r.channel, r.category, r.weight, r.stores, r.rules, r.currency, creds, r.profile
            )
        )
    return out
