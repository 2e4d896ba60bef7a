"""Shopify's ``orders/create`` webhook: the provider's format (unknown keys ignored), normalised."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Final

from pydantic import (
    AwareDatetime,
    Field,
    TypeAdapter,
    ValidationError,
)

from system.domain.common import (
    Currency,
    Latitude,
    Longitude,
    Money,
    ParcelSize,
)
from system.domain.intake.model import (
    Address,
    DeliveryRequest,
    Email,
    FieldError,
    IntakeInvalid,
    Item,
    Line,
    Parcel,
    Phone,
    Postcode,
    ProviderBody,
    Recipient,
    Reference,
    Text,
    UnknownStore,
    Window,
    cross_checks,
    error_message,
    field_errors,
    store_address,
)
from system.domain.retailers import Retailer

# --- Shopify --------------------------------------------------------------------------------------------


class ShopifyLineItem(ProviderBody):
    """A Shopify line item (``price`` is a decimal string)."""

    sku: str | None = None
    title: str
    quantity: int = Field(ge=1)
    price: str


class ShopifyAddress(ProviderBody):
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


class NoteAttribute(ProviderBody):
    """A ``note_attributes`` entry (the pickup/dropoff windows and parcel size travel here)."""

    name: str
    value: str


class ShopifyOrder(ProviderBody):
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
            errors.append(FieldError(f"note_attributes.{key}", error_message(exc.errors()[0])))
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
            errors.append(FieldError("note_attributes.parcel_size", error_message(exc.errors()[0])))
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
        errors += cross_checks(pickup_w.start, drop_w.end, "note_attributes.dropoff_window")
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
        pickup=store_address(store),
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
