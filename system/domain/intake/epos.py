"""The ePOS (Square-style) webhook: ``order.created`` / ``order.updated`` events, normalised."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    Field,
    ValidationError,
    model_validator,
)

from system.domain.common import (
    Currency,
    Latitude,
    Longitude,
    MinorUnits,
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
    field_errors,
    store_address,
)
from system.domain.retailers import Retailer

# --- ePOS (Square-style) ------------------------------------------------------------------------------------


class EposMoney(ProviderBody):
    """ePOS money ``{"amount", "currency"}`` (minor units)."""

    amount: MinorUnits
    currency: Currency


class EposLineItem(ProviderBody):
    """ePOS line item (``quantity`` is a decimal string, as Square sends it)."""

    uid: str | None = None
    catalog_object_id: str | None = None
    name: str
    quantity: Annotated[str, Field(pattern=r"^[1-9][0-9]*$")]
    base_price_money: EposMoney


class EposAddress(ProviderBody):
    """ePOS recipient address."""

    address_line_1: Line
    address_line_2: str | None = None
    locality: Text
    postal_code: Postcode
    country: str | None = None
    latitude: Latitude
    longitude: Longitude


class EposRecipient(ProviderBody):
    """ePOS recipient."""

    display_name: Text
    phone_number: Phone
    email_address: Email | None = None
    address: EposAddress


class EposWindow(ProviderBody):
    """ePOS window ``{"start_at", "end_at"}``."""

    start_at: AwareDatetime
    end_at: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> EposWindow:
        if not self.start_at < self.end_at:
            raise ValueError("window start must be before its end")
        return self


class EposParcel(ProviderBody):
    """ePOS parcel (our extension of Square's delivery details)."""

    weight_g: int = Field(gt=0, le=1_000_000)
    size: ParcelSize


class EposDeliveryDetails(ProviderBody):
    """A DELIVERY fulfillment's details."""

    recipient: EposRecipient
    pickup_window: EposWindow
    dropoff_window: EposWindow
    parcel: EposParcel


FulfillmentState = Literal["PROPOSED", "RESERVED", "PREPARED", "COMPLETED", "CANCELED", "FAILED"]


class EposFulfillment(ProviderBody):
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


class EposOrder(ProviderBody):
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


class EposObject(ProviderBody):
    """``data.object``."""

    order: EposOrder


class EposData(ProviderBody):
    """``data``."""

    type: Literal["order"]
    id: str
    object: EposObject


class EposEvent(ProviderBody):
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
    errors += cross_checks(
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
        pickup=store_address(store),
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
