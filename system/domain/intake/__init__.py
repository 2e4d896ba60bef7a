"""Order intake: the three channels' bodies, their signatures, idempotency, and one normalised request.

The wire contract is docs/intake-api.md §2 (what ``simulator/channels/`` sends). Each channel parses into
its own pydantic model, then normalises into the one :class:`DeliveryRequest` the rest of the platform
uses, whatever the order came through.

* REST (``POST /v1/deliveries``) is *our* API: strict (no type coercion: ``"940"`` is not a weight) and
  closed (unknown keys are 422), so a retailer's typo is reported, not silently dropped.
* Shopify and ePOS bodies are the providers' formats: they grow fields over time, so unknown keys are
  ignored; the fields we use are validated as strictly as REST's.
* Every validation problem becomes a :class:`FieldError` (dotted path in the request body + message),
  all of them at once, for the 422 answer ``{"errors": [{"field": …, "message": …}]}``.

Example:
    >>> body = (b'{"reference": "s42-0000001", "pickup": {"store_id": "r01-s1", "address": {"lines": '
    ...   b'["229 Richmond Road"], "city": "London", "postcode": "NW10 6GR", "lat": 51.528535, "lon": -0.259383},'
    ...   b' "window": {"start": "2026-11-18T11:17:40Z", "end": "2026-11-18T11:47:40Z"}}, "dropoff": {"address":'
    ...   b' {"lines": ["Flat 4", "63 York Road"], "city": "London", "postcode": "nw103yb", "lat": 51.535433,'
    ...   b' "lon": -0.270405}, "window": {"start": "2026-11-18T11:27:40Z", "end": "2026-11-18T12:27:40Z"}},'
    ...   b' "recipient": {"name": "Ben Nguyen", "phone": "+447700900786", "email": "ben@example.com"},'
    ...   b' "parcel": {"weight_g": 940, "size": "S"}, "basket": {"amount_minor": 2247, "currency": "GBP"}}')
    >>> parse_rest(body).dropoff.address.postcode
    'NW10 3YB'
    >>> try:
    ...     parse_rest(body.replace(b'"S"', b'"XXL"'))
    ... except IntakeInvalid as exc:
    ...     exc.wire()
    {'errors': [{'field': 'parcel.size', 'message': "Input should be 'S', 'M', 'L' or 'XL'"}]}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from system.domain.common import (
    Channel,
    Currency,
    Frozen,
    Latitude,
    LatLon,
    Longitude,
    MinorUnits,
    Money,
    ParcelSize,
    road_km,
)
from system.domain.retailers import Retailer

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


def _message(e: ErrorDetails) -> str:
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
        out.append(FieldError(".".join(str(p) for p in loc) or "(body)", _message(e)))
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


def _cross_checks(pickup_start: datetime, dropoff_end: datetime, prefix_drop: str) -> list[FieldError]:
    # The dropoff window must leave time after the parcel is ready, or no courier can ever make it.
    if dropoff_end <= pickup_start:
        return [FieldError(f"{prefix_drop}.end", "dropoff window ends before the pickup window starts")]
    return []


# --- REST ------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    # strict: no coercion ("940" is not an int); forbid: unknown keys are a 422, not silently dropped.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RestAddress(_Strict):
    """REST address: ``lines`` (1-2), ``city``, ``postcode`` (UK), ``lat``, ``lon``."""

    lines: Annotated[list[Line], Field(min_length=1, max_length=2)]
    city: Text
    postcode: Postcode
    lat: Latitude
    lon: Longitude


class RestWindow(_Strict):
    """REST window ``{"start", "end"}``."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> RestWindow:
        if not self.start < self.end:
            raise ValueError("window start must be before its end")
        return self


class RestPickup(_Strict):
    """REST pickup: the store (optional) and its address and window."""

    store_id: str | None = None
    address: RestAddress
    window: RestWindow


class RestDropoff(_Strict):
    """REST dropoff: address and window."""

    address: RestAddress
    window: RestWindow


class RestRecipient(_Strict):
    """REST recipient: name, phone (E.164), e-mail."""

    name: Text
    phone: Phone
    email: Email


class RestParcel(_Strict):
    """REST parcel: ``weight_g`` > 0 and ``size``."""

    weight_g: int = Field(gt=0, le=1_000_000)
    size: ParcelSize


class RestMoney(_Strict):
    """REST money: minor units + currency."""

    amount_minor: MinorUnits
    currency: Currency


class RestItem(_Strict):
    """REST basket line."""

    sku: str
    title: str
    quantity: int = Field(ge=1)
    unit_price_minor: MinorUnits


class RestDelivery(_Strict):
    """The body of ``POST /v1/deliveries`` (docs/intake-api.md §2.2)."""

    reference: Reference
    pickup: RestPickup
    dropoff: RestDropoff
    recipient: RestRecipient
    parcel: RestParcel
    basket: RestMoney
    items: list[RestItem] = Field(default_factory=list)


class RestCancel(_Strict):
    """The body of ``POST /v1/deliveries/{id}/cancel``."""

    reason: Annotated[str, Field(min_length=1, max_length=64)]
    reference: str | None = None


def parse_rest(raw: bytes | str) -> RestDelivery:
    """Parse and validate a REST create body (the raw bytes: strict JSON typing applies).

    Raises :class:`IntakeInvalid` with every bad field (malformed JSON is one ``(body)`` error).
    """
    try:
        body = RestDelivery.model_validate_json(raw)
    except ValidationError as exc:
        raise IntakeInvalid(field_errors(exc)) from None
    errors = _cross_checks(body.pickup.window.start, body.dropoff.window.end, "dropoff.window")
    if errors:
        raise IntakeInvalid(errors)
    return body


def parse_rest_cancel(raw: bytes | str) -> RestCancel:
    """Parse a REST cancel body (:class:`IntakeInvalid` when malformed)."""
    try:
        return RestCancel.model_validate_json(raw)
    except ValidationError as exc:
        raise IntakeInvalid(field_errors(exc)) from None


def normalise_rest(body: RestDelivery, retailer: Retailer) -> DeliveryRequest:
    """The :class:`DeliveryRequest` of a REST body. A ``store_id`` the retailer lacks → :class:`UnknownStore`;
    a basket in another currency than the retailer's → :class:`IntakeInvalid` (``basket.currency``)."""
    if body.pickup.store_id is not None and retailer.store(body.pickup.store_id) is None:
        raise UnknownStore(retailer.id, body.pickup.store_id)
    if body.basket.currency != retailer.currency:
        raise IntakeInvalid(
            [FieldError("basket.currency", f"retailer {retailer.id} trades in {retailer.currency}")]
        )
    return DeliveryRequest(
        retailer_id=retailer.id,
        channel="rest",
        reference=body.reference,
        store_id=body.pickup.store_id,
        pickup=Address.model_validate(body.pickup.address.model_dump()),
        dropoff=Address.model_validate(body.dropoff.address.model_dump()),
        pickup_window=Window.model_validate(body.pickup.window.model_dump()),
        dropoff_window=Window.model_validate(body.dropoff.window.model_dump()),
        recipient=Recipient.model_validate(body.recipient.model_dump()),
        parcel=Parcel.model_validate(body.parcel.model_dump()),
        basket=Money.model_validate(body.basket.model_dump()),
        items=tuple(Item.model_validate(i.model_dump()) for i in body.items),
    )


# --- Shopify --------------------------------------------------------------------------------------------


class _Provider(BaseModel):
    # Providers add fields over time: ignore unknown keys, validate the ones we use.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ShopifyLineItem(_Provider):
    """A Shopify line item (``price`` is a decimal string)."""

    sku: str | None = None
    title: str
    quantity: int = Field(ge=1)
    price: str


class ShopifyAddress(_Provider):
    """Shopify ``shipping_address`` (``address2`` holds the flat when there is one)."""

    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    address1: Line
    address2: str | None = None
    city: Text
    zip: Postcode
    country_code: str | None = None
    phone: Phone
    latitude: Latitude
    longitude: Longitude


class NoteAttribute(_Provider):
    """A ``note_attributes`` entry (the pickup/dropoff windows and parcel size travel here)."""

    name: str
    value: str


class ShopifyOrder(_Provider):
    """Shopify ``orders/create`` (and ``orders/cancelled``: the same order plus ``cancelled_at``)."""

    id: int
    name: Reference
    order_number: int | None = None
    email: Email | None = None
    created_at: AwareDatetime
    currency: Currency
    total_price: str
    total_weight: int = Field(ge=0)
    location_id: str
    line_items: list[ShopifyLineItem] = Field(default_factory=list)
    shipping_address: ShopifyAddress
    note_attributes: list[NoteAttribute] = Field(default_factory=list)
    cancelled_at: AwareDatetime | None = None
    cancel_reason: str | None = None


SHOPIFY_TOPICS: Final = ("orders/create", "orders/cancelled")


def parse_shopify(raw: bytes | str) -> ShopifyOrder:
    """Parse a Shopify order webhook body (:class:`IntakeInvalid` with every bad field)."""
    try:
        return ShopifyOrder.model_validate_json(raw)
    except ValidationError as exc:
        raise IntakeInvalid(field_errors(exc)) from None


def decimal_to_minor(value: str) -> int:
    """``"22.47"`` → 2247; at most two decimals, not negative (:class:`ValueError` otherwise).

    Example:
        >>> decimal_to_minor("22.47"), decimal_to_minor("5"), decimal_to_minor("0.5")
        (2247, 500, 50)
    """
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    exponent = d.as_tuple().exponent  # a str ("n", "F") for NaN and infinities
    if not isinstance(exponent, int) or d < 0 or exponent < -2:
        raise ValueError(f"not an amount with at most 2 decimals: {value!r}")
    return int(d * 100)


_DATETIME: Final = TypeAdapter(AwareDatetime)
_SIZE: Final = TypeAdapter(ParcelSize)


def normalise_shopify(order: ShopifyOrder, retailer: Retailer) -> DeliveryRequest:
    """The :class:`DeliveryRequest` of a Shopify order: pickup = the store ``location_id``, basket =
    ``total_price``, weight = ``total_weight``, size and windows from ``note_attributes``."""
    store = retailer.store(order.location_id)
    if store is None:
        raise UnknownStore(retailer.id, order.location_id)
    errors: list[FieldError] = []
    notes = {n.name: n.value for n in order.note_attributes}

    def note_time(key: str) -> datetime | None:
        if key not in notes:
            errors.append(FieldError("note_attributes", f"missing {key}"))
            return None
        try:
            return _DATETIME.validate_python(notes[key])
        except ValidationError as exc:
            errors.append(FieldError(f"note_attributes.{key}", _message(exc.errors()[0])))
            return None

    times = {k: note_time(k) for k in ("pickup_window_start", "pickup_window_end",
                                        "dropoff_window_start", "dropoff_window_end")}  # fmt: skip
    size: ParcelSize | None = None
    if "parcel_size" not in notes:
        errors.append(FieldError("note_attributes", "missing parcel_size"))
    else:
        try:
            size = _SIZE.validate_python(notes["parcel_size"])
        except ValidationError as exc:
            errors.append(FieldError("note_attributes.parcel_size", _message(exc.errors()[0])))
    basket = _minor_or_error(order.total_price, "total_price", errors)
    items = []
    for k, li in enumerate(order.line_items):
        unit = _minor_or_error(li.price, f"line_items.{k}.price", errors)
        items.append(Item(sku=li.sku or "", title=li.title, quantity=li.quantity, unit_price_minor=unit or 0))
    if order.currency != retailer.currency:
        errors.append(FieldError("currency", f"retailer {retailer.id} trades in {retailer.currency}"))
    if order.total_weight <= 0:
        errors.append(FieldError("total_weight", "the parcel weight (g) is needed to choose a vehicle"))
    a = order.shipping_address
    pickup_w = _window(times["pickup_window_start"], times["pickup_window_end"], "pickup_window", errors)
    drop_w = _window(times["dropoff_window_start"], times["dropoff_window_end"], "dropoff_window", errors)
    if pickup_w is not None and drop_w is not None:
        errors += _cross_checks(pickup_w.start, drop_w.end, "note_attributes.dropoff_window")
    name = a.name or " ".join(p for p in (a.first_name, a.last_name) if p)
    if not name.strip():
        errors.append(FieldError("shipping_address.name", "the recipient needs a name"))
    if errors or size is None or basket is None or pickup_w is None or drop_w is None:
        raise IntakeInvalid(errors)
    return DeliveryRequest(
        retailer_id=retailer.id,
        channel="shopify",
        reference=order.name,
        source_id=str(order.id),
        store_id=store.id,
        pickup=_store_address(store),
        dropoff=Address(
            lines=(a.address2, a.address1) if a.address2 else (a.address1,),
            city=a.city,
            postcode=a.zip,
            lat=a.latitude,
            lon=a.longitude,
        ),
        pickup_window=pickup_w,
        dropoff_window=drop_w,
        recipient=Recipient(name=name, phone=a.phone, email=order.email),
        parcel=Parcel(weight_g=order.total_weight, size=size),
        basket=Money(amount_minor=basket, currency=order.currency),
        items=tuple(items),
    )


def _minor_or_error(value: str, field: str, errors: list[FieldError]) -> int | None:
    try:
        return decimal_to_minor(value)
    except ValueError as exc:
        errors.append(FieldError(field, str(exc)))
        return None


def _window(
    start: datetime | None, end: datetime | None, field: str, errors: list[FieldError]
) -> Window | None:
    if start is None or end is None:
        return None
    if not start < end:
        errors.append(FieldError(f"note_attributes.{field}", "window start must be before its end"))
        return None
    return Window(start=start, end=end)


def _store_address(store: Any) -> Address:
    return Address(lines=store.lines, city=store.city, postcode=store.postcode, lat=store.lat, lon=store.lon)


# --- ePOS (Square-style) ------------------------------------------------------------------------------------


class EposMoney(_Provider):
    """ePOS money ``{"amount", "currency"}`` (minor units)."""

    amount: MinorUnits
    currency: Currency


class EposLineItem(_Provider):
    """ePOS line item (``quantity`` is a decimal string, as Square sends it)."""

    uid: str | None = None
    catalog_object_id: str | None = None
    name: str
    quantity: Annotated[str, Field(pattern=r"^[1-9][0-9]*$")]
    base_price_money: EposMoney


class EposAddress(_Provider):
    """ePOS recipient address."""

    address_line_1: Line
    address_line_2: str | None = None
    locality: Text
    postal_code: Postcode
    country: str | None = None
    latitude: Latitude
    longitude: Longitude


class EposRecipient(_Provider):
    """ePOS recipient."""

    display_name: Text
    phone_number: Phone
    email_address: Email | None = None
    address: EposAddress


class EposWindow(_Provider):
    """ePOS window ``{"start_at", "end_at"}``."""

    start_at: AwareDatetime
    end_at: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> EposWindow:
        if not self.start_at < self.end_at:
            raise ValueError("window start must be before its end")
        return self


class EposParcel(_Provider):
    """ePOS parcel (our extension of Square's delivery details)."""

    weight_g: int = Field(gt=0, le=1_000_000)
    size: ParcelSize


class EposDeliveryDetails(_Provider):
    """A DELIVERY fulfillment's details."""

    recipient: EposRecipient
    pickup_window: EposWindow
    dropoff_window: EposWindow
    parcel: EposParcel


FulfillmentState = Literal["PROPOSED", "RESERVED", "PREPARED", "COMPLETED", "CANCELED", "FAILED"]


class EposFulfillment(_Provider):
    """A fulfillment; only ``type`` DELIVERY creates a delivery (PICKUP: the customer collects)."""

    uid: str | None = None
    type: str
    state: FulfillmentState
    delivery_details: EposDeliveryDetails | None = None

    @model_validator(mode="after")
    def _details(self) -> EposFulfillment:
        if self.type == "DELIVERY" and self.delivery_details is None:
            raise ValueError("a DELIVERY fulfillment needs delivery_details")
        return self


class EposOrder(_Provider):
    """The whole order, carried by every event with its ``version``."""

    id: str = Field(min_length=1)
    reference_id: Reference
    location_id: str
    state: Literal["OPEN", "COMPLETED", "CANCELED", "DRAFT"]
    version: int = Field(ge=1)
    created_at: AwareDatetime
    line_items: list[EposLineItem] = Field(default_factory=list)
    total_money: EposMoney
    fulfillments: list[EposFulfillment] = Field(min_length=1)


class EposObject(_Provider):
    """``data.object``."""

    order: EposOrder


class EposData(_Provider):
    """``data``."""

    type: Literal["order"]
    id: str
    object: EposObject


class EposEvent(_Provider):
    """An ePOS webhook event (``order.created`` / ``order.updated``), deduplicated on ``event_id``."""

    merchant_id: str
    type: Literal["order.created", "order.updated"]
    event_id: str = Field(min_length=1)
    created_at: AwareDatetime
    data: EposData

    @property
    def order(self) -> EposOrder:
        """The order the event carries."""
        return self.data.object.order


def parse_epos(raw: bytes | str) -> EposEvent:
    """Parse an ePOS event body (:class:`IntakeInvalid` with every bad field)."""
    try:
        return EposEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise IntakeInvalid(field_errors(exc)) from None


class EposAction(StrEnum):
    """What an ePOS event asks of the platform."""

    IGNORE = "ignore"  # no DELIVERY fulfillment: answer 200 {"id": null, "state": "ignored"}
    UPSERT = "upsert"  # create the delivery, or update it if this version is newer
    CANCEL = "cancel"  # the order or its fulfillment was CANCELED


def delivery_fulfillment(order: EposOrder) -> EposFulfillment | None:
    """The order's first DELIVERY fulfillment (None: nothing to deliver)."""
    return next((f for f in order.fulfillments if f.type == "DELIVERY"), None)


def epos_action(event: EposEvent) -> EposAction:
    """Classify an event (``created`` and ``updated`` are treated alike: each carries the whole order, and
    either may arrive first).

    Example:
        >>> EposAction.CANCEL.value
        'cancel'
    """
    f = delivery_fulfillment(event.order)
    if f is None:
        return EposAction.IGNORE
    if event.order.state == "CANCELED" or f.state == "CANCELED":
        return EposAction.CANCEL
    return EposAction.UPSERT


def epos_is_newer(version: int, stored_version: int | None) -> bool:
    """Whether an event's order ``version`` must be applied: the first seen, or newer than the stored one.
    Older or equal versions (a late ``order.created`` after its ``order.updated``) are ignored.

    Example:
        >>> epos_is_newer(1, None), epos_is_newer(1, 2), epos_is_newer(3, 2)
        (True, False, True)
    """
    return stored_version is None or version > stored_version


def normalise_epos(event: EposEvent, retailer: Retailer) -> DeliveryRequest | None:
    """The :class:`DeliveryRequest` of an ePOS event (None when it has no DELIVERY fulfillment).

    The event of a cancelled order normalises too (it carries the whole order): a cancel that arrives
    first still needs something to cancel.
    """
    order = event.order
    f = delivery_fulfillment(order)
    if f is None or f.delivery_details is None:
        return None
    store = retailer.store(order.location_id)
    if store is None:
        raise UnknownStore(retailer.id, order.location_id)
    d = f.delivery_details
    errors: list[FieldError] = []
    base = "data.object.order"
    if order.total_money.currency != retailer.currency:
        errors.append(
            FieldError(
                f"{base}.total_money.currency", f"retailer {retailer.id} trades in {retailer.currency}"
            )
        )
    pickup_w = Window(start=d.pickup_window.start_at, end=d.pickup_window.end_at)
    drop_w = Window(start=d.dropoff_window.start_at, end=d.dropoff_window.end_at)
    k = order.fulfillments.index(f)
    errors += _cross_checks(
        pickup_w.start, drop_w.end, f"{base}.fulfillments.{k}.delivery_details.dropoff_window"
    )
    if errors:
        raise IntakeInvalid(errors)
    a = d.recipient.address
    return DeliveryRequest(
        retailer_id=retailer.id,
        channel="epos",
        reference=order.reference_id,
        source_id=order.id,
        source_version=order.version,
        store_id=store.id,
        pickup=_store_address(store),
        dropoff=Address(
            lines=(a.address_line_2, a.address_line_1) if a.address_line_2 else (a.address_line_1,),
            city=a.locality,
            postcode=a.postal_code,
            lat=a.latitude,
            lon=a.longitude,
        ),
        pickup_window=pickup_w,
        dropoff_window=drop_w,
        recipient=Recipient(
            name=d.recipient.display_name, phone=d.recipient.phone_number, email=d.recipient.email_address
        ),
        parcel=Parcel(weight_g=d.parcel.weight_g, size=d.parcel.size),
        basket=Money(amount_minor=order.total_money.amount, currency=order.total_money.currency),
        items=tuple(
            Item(
                sku=i.catalog_object_id or "",
                title=i.name,
                quantity=int(i.quantity),
                unit_price_minor=i.base_price_money.amount,
            )
            for i in order.line_items
        ),
    )


# --- signatures ------------------------------------------------------------------------------------------------


def sign_body(raw_body: bytes, secret: str) -> str:
    """``base64(HMAC-SHA256(secret, raw_body))``: the Shopify scheme, also used by our ePOS contract.

    Example:
        >>> sign_body(b"{}", "s3cret")
        'rb3hzkDInBQhVofV12Kkffbfrvz61h4uhnGP/ISYVxs='
    """
    return base64.b64encode(hmac.new(secret.encode(), raw_body, hashlib.sha256).digest()).decode()


def verify_shopify_hmac(raw_body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``X-Shopify-Hmac-Sha256`` (``header``) signs ``raw_body`` with the shop's ``secret``.

    Computed on the raw bytes (re-serialised JSON would differ) and compared in constant time (a
    timing side channel would let an attacker forge a signature byte by byte). A missing header is False.

    Example:
        >>> verify_shopify_hmac(b"{}", sign_body(b"{}", "k"), "k"), verify_shopify_hmac(b"{} ", sign_body(b"{}", "k"), "k")
        (True, False)
    """
    if not header:
        return False
    expected = sign_body(raw_body, secret).encode()
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


def verify_epos_signature(raw_body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``X-Epos-Signature`` signs ``raw_body``: the same scheme as Shopify's (body only, not the
    URL as Square does, which breaks behind proxies — docs/intake-api.md §2.4)."""
    return verify_shopify_hmac(raw_body, header, secret)


# --- idempotency --------------------------------------------------------------------------------------------------


def canonical_json(doc: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace: one text per value.

    Example:
        >>> canonical_json({"b": 1, "a": [1.5, "é"]})
        '{"a":[1.5,"é"],"b":1}'
    """
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def idempotency_fingerprint(body: bytes | str | Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``body``: the same order sent with other key order or
    whitespace has the same fingerprint; any change of a value changes it. A body that is not JSON is
    hashed as raw bytes (it will be refused anyway; the retry of the same bytes still matches).

    Example:
        >>> idempotency_fingerprint(b'{"a": 1, "b": 2}') == idempotency_fingerprint('{"b":2,"a":1}')
        True
    """
    if isinstance(body, Mapping):
        text = canonical_json(body)
    else:
        try:
            text = canonical_json(json.loads(body))
        except ValueError:
            raw = body.encode() if isinstance(body, str) else body
            return "raw:" + hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What intake stored for an ``(retailer, Idempotency-Key)``: the body's fingerprint and the delivery."""

    fingerprint: str
    delivery_id: str


class IdempotencyVerdict(StrEnum):
    """``NEW``: create (202); ``REPLAY``: same key, same body → same delivery (200); ``CONFLICT``: same
    key, other body → 409 with the original id."""

    NEW = "new"
    REPLAY = "replay"
    CONFLICT = "conflict"


def idempotency_check(stored: StoredKey | None, fingerprint: str) -> IdempotencyVerdict:
    """The 409 rule. Keys are scoped per retailer by the caller (two retailers may pick the same UUID).

    Example:
        >>> idempotency_check(None, "f1"), idempotency_check(StoredKey("f1", "d1"), "f1").value
        (<IdempotencyVerdict.NEW: 'new'>, 'replay')
        >>> idempotency_check(StoredKey("f1", "d1"), "f2").value
        'conflict'
    """
    if stored is None:
        return IdempotencyVerdict.NEW
    if hmac.compare_digest(stored.fingerprint, fingerprint):
        return IdempotencyVerdict.REPLAY
    return IdempotencyVerdict.CONFLICT
