"""Order intake: the three channels' bodies, their signatures, idempotency, and one normalised request.

One module per concern: :mod:`.model` (the normalised request, field types and errors), :mod:`.rest`,
:mod:`.shopify`, :mod:`.epos` (each channel's body and its normalisation), :mod:`.auth` (the webhooks'
signatures) and :mod:`.idempotency`; every public name is also here.

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

from system.domain.intake.auth import (
    sign_body,
    verify_epos_signature,
    verify_shopify_hmac,
)
from system.domain.intake.epos import (
    EposAction,
    EposAddress,
    EposData,
    EposDeliveryDetails,
    EposEvent,
    EposFulfillment,
    EposLineItem,
    EposMoney,
    EposObject,
    EposOrder,
    EposParcel,
    EposRecipient,
    EposWindow,
    FulfillmentState,
    delivery_fulfillment,
    epos_action,
    epos_is_newer,
    normalise_epos,
    parse_epos,
)
from system.domain.intake.idempotency import (
    IdempotencyVerdict,
    StoredKey,
    canonical_json,
    idempotency_check,
    idempotency_fingerprint,
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
    delivery_id_for,
    error_message,
    field_errors,
    order_key,
    store_address,
)
from system.domain.intake.rest import (
    RestAddress,
    RestCancel,
    RestDelivery,
    RestDropoff,
    RestItem,
    RestMoney,
    RestParcel,
    RestPickup,
    RestRecipient,
    RestWindow,
    normalise_rest,
    parse_rest,
    parse_rest_cancel,
)
from system.domain.intake.shopify import (
    SHOPIFY_TOPICS,
    NoteAttribute,
    ShopifyAddress,
    ShopifyLineItem,
    ShopifyOrder,
    decimal_to_minor,
    normalise_shopify,
    parse_shopify,
)

__all__ = [
    "SHOPIFY_TOPICS",
    "Address",
    "DeliveryRequest",
    "Email",
    "EposAction",
    "EposAddress",
    "EposData",
    "EposDeliveryDetails",
    "EposEvent",
    "EposFulfillment",
    "EposLineItem",
    "EposMoney",
    "EposObject",
    "EposOrder",
    "EposParcel",
    "EposRecipient",
    "EposWindow",
    "FieldError",
    "FulfillmentState",
    "IdempotencyVerdict",
    "IntakeInvalid",
    "Item",
    "Line",
    "NoteAttribute",
    "Parcel",
    "Phone",
    "Postcode",
    "ProviderBody",
    "Recipient",
    "Reference",
    "RestAddress",
    "RestCancel",
    "RestDelivery",
    "RestDropoff",
    "RestItem",
    "RestMoney",
    "RestParcel",
    "RestPickup",
    "RestRecipient",
    "RestWindow",
    "ShopifyAddress",
    "ShopifyLineItem",
    "ShopifyOrder",
    "StoredKey",
    "Text",
    "UnknownStore",
    "Window",
    "canonical_json",
    "cross_checks",
    "decimal_to_minor",
    "delivery_fulfillment",
    "delivery_id_for",
    "epos_action",
    "epos_is_newer",
    "error_message",
    "field_errors",
    "idempotency_check",
    "idempotency_fingerprint",
    "normalise_epos",
    "normalise_rest",
    "normalise_shopify",
    "order_key",
    "parse_epos",
    "parse_rest",
    "parse_rest_cancel",
    "parse_shopify",
    "sign_body",
    "store_address",
    "verify_epos_signature",
    "verify_shopify_hmac",
]
