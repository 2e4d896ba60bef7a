"""The retailers file (``retailers.json``, docs/intake-api.md §1): who may submit orders, and their rules.

The platform is started with the path of the file the simulator wrote; the service reads the bytes and
calls :func:`parse_retailers` (this package does no I/O of its own). Unknown keys are errors that name
the field: a misspelt rule (``max_distanse_km``) must not silently fall back to "no limit".

Example:
    >>> doc = {"version": 1, "seed": 42, "retailers": [{"id": "r01", "name": "Thistle", "channel": "rest",
    ...   "category": "pharmacy", "currency": "GBP", "api_key": "sk_1", "shop_domain": "t.myshopify.com",
    ...   "webhook_secret": "s3", "merchant_id": "M1",
    ...   "stores": [{"id": "r01-s1", "lines": ["1 High Street"], "city": "London", "postcode": "N1 4AB",
    ...               "lat": 51.53, "lon": -0.10}],
    ...   "rules": {"selection": "cheapest", "priority_fleet": ["zoomly"], "max_distance_km": 12.0,
    ...             "allowed_vehicles": ["bike", "car"], "max_price_minor": 2500}}]}
    >>> book = parse_retailers(json.dumps(doc))
    >>> book.by_api_key("sk_1").id, book.by_shop_domain("t.myshopify.com").store("r01-s1").postcode
    ('r01', 'N1 4AB')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from system.domain.common import Channel, Currency, Frozen, Latitude, LatLon, Longitude, MinorUnits, Vehicle


class RetailerRules(Frozen):
    """How the platform chooses a courier for a retailer (the ``rules`` object of ``retailers.json``).

    * ``priority_fleet``: couriers whose suitable quotes are tried first; ``selection`` orders them
      (``cheapest`` by price, ``priority`` in list order). Backups come after, cheapest first.
    * ``max_distance_km``, ``allowed_vehicles``, ``max_price_minor``: a quote is suitable only within them.
    * ``high_value_basket_minor`` (platform extension, not in the simulator's file, off by default so the
      contract's rules are exactly those above): a basket above it needs a vehicle in
      ``high_value_vehicles`` (car, van: lockable) or a priority-fleet courier (vetted drivers).
    """

    selection: Literal["cheapest", "priority"] = "cheapest"
    priority_fleet: tuple[str, ...] = ()
    max_distance_km: float = Field(default=25.0, gt=0)
    allowed_vehicles: Annotated[tuple[Vehicle, ...], Field(min_length=1)] = (
        "bike",
        "cargobike",
        "motorbike",
        "car",
        "van",
    )
    max_price_minor: MinorUnits | None = None
    high_value_basket_minor: MinorUnits | None = None
    high_value_vehicles: tuple[Vehicle, ...] = ("car", "van")


class Store(Frozen):
    """A pickup location of a retailer (``stores[]``)."""

    id: str = Field(min_length=1)
    lines: Annotated[tuple[str, ...], Field(min_length=1, max_length=2)]
    city: str
    postcode: str
    lat: Latitude
    lon: Longitude

    @property
    def position(self) -> LatLon:
        """The store's position."""
        return LatLon(lat=self.lat, lon=self.lon)


class Retailer(Frozen):
    """One retailer: identity, channel, credentials, stores and rules."""

    id: str = Field(min_length=1)
    name: str
    channel: Channel
    category: str
    currency: Currency
    api_key: str = Field(min_length=1)
    shop_domain: str
    webhook_secret: str = Field(min_length=1)
    merchant_id: str
    stores: Annotated[tuple[Store, ...], Field(min_length=1)]
    rules: RetailerRules = RetailerRules()

    def store(self, store_id: str) -> Store | None:
        """The store ``store_id`` of this retailer, or None (the API answers 404)."""
        return next((s for s in self.stores if s.id == store_id), None)

    @model_validator(mode="after")
    def _unique_stores(self) -> Retailer:
        ids = [s.id for s in self.stores]
        if len(set(ids)) != len(ids):
            raise ValueError(f"store ids must be unique, got {ids}")
        return self


class RetailersFile(Frozen):
    """The whole ``retailers.json``."""

    version: Literal[1]
    seed: int | None = None
    retailers: tuple[Retailer, ...]

    @model_validator(mode="after")
    def _unique(self) -> RetailersFile:
        for what in ("id", "api_key", "shop_domain", "merchant_id"):
            values = [getattr(r, what) for r in self.retailers]
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ValueError(f"retailer {what} must be unique, repeated: {dup}")
        return self


class RetailersError(ValueError):
    """The retailers file cannot be used; the message names each bad field."""


class RetailerBook:
    """Retailers indexed the ways intake looks them up (API key, shop domain, merchant id, id)."""

    def __init__(self, retailers: tuple[Retailer, ...]) -> None:
        self.retailers = retailers
        self._id = {r.id: r for r in retailers}
        self._key = {r.api_key: r for r in retailers}
        self._shop = {r.shop_domain: r for r in retailers}
        self._merchant = {r.merchant_id: r for r in retailers}

    def by_id(self, retailer_id: str) -> Retailer | None:
        """The retailer ``retailer_id``."""
        return self._id.get(retailer_id)

    def by_api_key(self, api_key: str) -> Retailer | None:
        """The retailer owning REST ``api_key`` (None: 401)."""
        return self._key.get(api_key)

    def by_shop_domain(self, domain: str) -> Retailer | None:
        """The retailer of Shopify shop ``domain`` (None: 404)."""
        return self._shop.get(domain)

    def by_merchant_id(self, merchant_id: str) -> Retailer | None:
        """The retailer of ePOS merchant ``merchant_id`` (None: 404)."""
        return self._merchant.get(merchant_id)


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """``field.path: message`` lines of a pydantic error (for config files; intake has its own format)."""
    return [f"{prefix}{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]


def parse_retailers(raw: bytes | str | Mapping[str, Any], source: str = "retailers.json") -> RetailerBook:
    """Validate the retailers file (bytes, text or an already-loaded mapping) into a :class:`RetailerBook`.

    Raises :class:`RetailersError` naming the source and every bad field, e.g.
    ``retailers.json: retailers.0.rules.max_distanse_km: Extra inputs are not permitted``.
    """
    try:
        doc = json.loads(raw) if isinstance(raw, bytes | str) else raw
    except ValueError as exc:
        raise RetailersError(f"{source}: not JSON: {exc}") from None
    try:
        parsed = RetailersFile.model_validate(doc)
    except ValidationError as exc:
        raise RetailersError(f"{source}: " + "; ".join(format_validation_error(exc))) from None
    return RetailerBook(parsed.retailers)
