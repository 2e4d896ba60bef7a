"""The normalised delivery request every channel's order becomes, its field types, and the field errors
a 422 answer lists."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from system.domain.common import (
    Channel,
    Frozen,
    Latitude,
    LatLon,
    Longitude,
    MinorUnits,
    Money,
    ParcelSize,
    road_km,
)

# --- field errors ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad field: ``field`` is the dotted path in the request body (``dropoff.address.postcode``;
    ``(body)`` for the body as a whole), ``message`` says what is wrong."""

    field: str
    message: str

    def wire(self) -> dict[str, str]:
        """The 422 entry (docs/intake-api.md §2.1)."""
        return {"field": self.field, "message": self.message}


class IntakeInvalid(ValueError):
    """The order is invalid (HTTP 422); ``errors`` lists every bad field."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = tuple(errors)

    def wire(self) -> dict[str, list[dict[str, str]]]:
        """The 422 body ``{"errors": [{"field", "message"}, …]}``."""
        return {"errors": [e.wire() for e in self.errors]}


class UnknownStore(LookupError):
    """The order names a store the retailer does not have (HTTP 404)."""

    def __init__(self, retailer_id: str, store_id: str) -> None:
        super().__init__(f"retailer {retailer_id!r} has no store {store_id!r}")
        self.retailer_id = retailer_id
        self.store_id = store_id


def error_message(e: ErrorDetails) -> str:
    msg = e["msg"]
    # Our own validators raise ValueError("not a UK postcode"); pydantic prefixes "Value error, ".
    return msg.removeprefix("Value error, ")


def field_errors(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[FieldError]:
    """pydantic's errors as :class:`FieldError` (dotted paths; list indices as numbers).

    Example:
        >>> try:
        ...     Parcel.model_validate({"weight_g": -1, "size": "S"})
        ... except ValidationError as exc:
        ...     field_errors(exc)
        [FieldError(field='weight_g', message='Input should be greater than 0')]
    """
    out = []
    for e in exc.errors():
        loc = [*prefix, *e["loc"]]
        out.append(FieldError(".".join(str(p) for p in loc) or "(body)", error_message(e)))
    return out


# --- shared field types -------------------------------------------------------------------------------

_POSTCODE: Final = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})$")
_PHONE: Final = re.compile(r"^\+[1-9][0-9]{6,14}$")
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _postcode(v: str) -> str:
    m = _POSTCODE.match(v.strip().upper())
    if m is None:
        raise ValueError(f"not a UK postcode: {v!r}")
    return f"{m.group(1)} {m.group(2)}"  # canonical "NW10 6GR": one spelling per place


def _phone(v: str) -> str:
    compact = re.sub(r"[ ()-]", "", v)
    if _PHONE.match(compact) is None:
        raise ValueError(f"not an international phone number (+44…): {v!r}")
    return compact


def _email(v: str) -> str:
    if _EMAIL.match(v.strip()) is None:
        raise ValueError(f"not an e-mail address: {v!r}")
    return v.strip()


def _nonblank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be blank")
    return v.strip()


Postcode = Annotated[str, AfterValidator(_postcode)]
Phone = Annotated[str, AfterValidator(_phone)]
Email = Annotated[str, AfterValidator(_email)]
Text = Annotated[str, Field(max_length=200), AfterValidator(_nonblank)]
Reference = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_nonblank)]
Line = Annotated[str, Field(max_length=120), AfterValidator(_nonblank)]


# --- the normalised request ------------------------------------------------------------------------


class Window(Frozen):
    """A time window; ``start < end``, both with a time zone (instants are ISO-8601 UTC ``…Z``)."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if not self.start < self.end:
            raise ValueError("window start must be before its end")
        return self


class Address(Frozen):
    """A street address with its position (1 or 2 lines: the flat first, as REST sends it)."""

    lines: Annotated[tuple[Line, ...], Field(min_length=1, max_length=2)]
    city: Text
    postcode: Postcode
    lat: Latitude
    lon: Longitude

    @property
    def position(self) -> LatLon:
        """Where it is."""
        return LatLon(lat=self.lat, lon=self.lon)


class Recipient(Frozen):
    """Who receives the parcel (phone for SMS and the driver; e-mail optional on provider channels)."""

    name: Text
    phone: Phone
    email: Email | None = None


class Parcel(Frozen):
    """Weight in grams and size class (S, M fit a bike; L a cargobike or car; XL a van)."""

    weight_g: int = Field(gt=0, le=1_000_000)
    size: ParcelSize


class Item(Frozen):
    """One basket line."""

    sku: str
    title: str
    quantity: int = Field(ge=1)
    unit_price_minor: MinorUnits


class DeliveryRequest(Frozen):
    """One order to deliver, whatever channel it came through: what quoting, dispatch and tracking use.

    ``reference`` is the retailer's own reference (REST ``reference``, Shopify ``name``, ePOS
    ``reference_id``), echoed as ``order_reference`` everywhere. ``source_id`` is the provider's order
    id (Shopify ``id``, ePOS order ``id``; None for REST) and ``source_version`` the ePOS ``version``.
    """

    retailer_id: str
    channel: Channel
    reference: str
    source_id: str | None = None
    source_version: int | None = None
    store_id: str | None = None
    pickup: Address
    dropoff: Address
    pickup_window: Window
    dropoff_window: Window
    recipient: Recipient
    parcel: Parcel
    basket: Money
    items: tuple[Item, ...] = ()

    @property
    def distance_km(self) -> float:
        """Estimated road distance pickup → dropoff, km."""
        return road_km(self.pickup.position, self.dropoff.position)

    @property
    def order_key(self) -> str:
        """The order's identity across events: ``retailer/channel/provider id`` (the reference for REST).

        Both ePOS events of one order (created, updated, either first) and a Shopify ``orders/cancelled``
        share it with their create, so they find the same delivery.
        """
        return order_key(self.retailer_id, self.channel, self.source_id or self.reference)


def order_key(retailer_id: str, channel: Channel, source: str) -> str:
    """``retailer/channel/source``: see :attr:`DeliveryRequest.order_key`.

    Example:
        >>> order_key("r01", "epos", "EPS420000001")
        'r01/epos/EPS420000001'
    """
    return f"{retailer_id}/{channel}/{source}"


def delivery_id_for(key: str) -> str:
    """A deterministic delivery id for an order key: two intake replicas racing on the same order (a
    webhook retry landing on another replica) compute the same id, so a unique index keeps one row.

    Example:
        >>> delivery_id_for("r01/epos/EPS420000001") == delivery_id_for("r01/epos/EPS420000001")
        True
        >>> delivery_id_for("r01/rest/s42-0000001")[:4]
        'dlv_'
    """
    return "dlv_" + hashlib.sha256(key.encode()).hexdigest()[:20]


def cross_checks(pickup_start: datetime, dropoff_end: datetime, prefix_drop: str) -> list[FieldError]:
    # The dropoff window must leave time after the parcel is ready, or no courier can ever make it.
    if dropoff_end <= pickup_start:
        return [FieldError(f"{prefix_drop}.end", "dropoff window ends before the pickup window starts")]
    return []


# --- the providers' bodies ---------------------------------------------------------------------


class ProviderBody(BaseModel):
    """A provider's body (Shopify, ePOS): unknown keys ignored, the ones we use validated."""

    # Providers add fields over time: ignore unknown keys, validate the ones we use.
    model_config = ConfigDict(extra="ignore", frozen=True)


def store_address(store: Any) -> Address:
    """A retailer's store as the pickup address."""
    return Address(lines=store.lines, city=store.city, postcode=store.postcode, lat=store.lat, lon=store.lon)
