"""REST (``POST /v1/deliveries``), *our* API: strict (no type coercion: ``"940"`` is not a weight) and
closed (unknown keys are 422), so a retailer's typo is reported, not silently dropped."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
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
    Recipient,
    Reference,
    Text,
    UnknownStore,
    Window,
    cross_checks,
    field_errors,
)
from system.domain.retailers import Retailer

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
    errors = cross_checks(body.pickup.window.start, body.dropoff.window.end, "dropoff.window")
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
