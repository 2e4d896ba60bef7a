"""Every message the platform's services send each other, both sides, ids included (the courier and
intake wire contracts with the outside world are in docs/intake-api.md).

Each message is one pydantic model — the writer builds it, the reader's decoder validates it (a body
that fails is parked as malformed) — with a builder for its :class:`~system.messaging.OutgoingMessage`
and a function for its id. One module per exchange:

- :mod:`.orders` — intake → quoting, dispatch, tracking (``orders``);
- :mod:`.quotes` — quoting ↔ dispatch (``quotes``);
- :mod:`.lifecycle` — quoting, dispatch, the gateway → tracking (``lifecycle``);
- :mod:`.states` — tracking → notifications, intake (``tracking``);
- :mod:`.headers` — the headers every message about a delivery carries.

Message ids are derived from what the message is about, never random, so a handler that runs again
after a crash (its transaction rolled back) writes the same outbox row, and a consumer downstream
deduplicates any republish:

================================  ====================================  ==============================
message                           id                                    exchange → routing key
================================  ====================================  ==============================
:class:`OrderCreated`             ``<delivery>:order.created``          ``orders`` → order.created
:class:`OrderUpdated`             ``<delivery>:order.updated:v<n>``     ``orders`` → order.updated
:class:`CancelRequested`          ``<delivery>:order.cancel_requested`` ``orders`` → order.updated
:class:`DeliveryQuoted`           ``<delivery>:delivery.quoted``        ``quotes`` → delivery.quoted
                                  (round ``n`` ≥ 2: ``…:delivery.quoted:<n>``)
:class:`RequoteRequested`         ``<delivery>:requote:<n>``            ``quotes`` → delivery.requote
:class:`LifecycleEvent`           ``<delivery>:<event>:<source>``, or   ``lifecycle`` (hash of the
                                  ``gw:<courier message id>``           ``x-delivery-id`` header)
:class:`LocationPing`             ``gw:<courier message id>``           ``lifecycle``
:class:`StateChanged`             ``<delivery>:state:<state>``          ``tracking`` →
                                                                        delivery.state.<state>
================================  ====================================  ==============================

A state is entered at most once in a delivery's life (the lifecycle never goes back), so
``<delivery>:state:<state>`` identifies one state change: notifications are keyed on it.

Example:
    >>> from datetime import UTC, datetime
    >>> ev = LifecycleEvent(message_id=lifecycle_event_id("dlv_1", Event.QUOTED, "quoting"),
    ...     delivery_id="dlv_1", order_reference="s42-0000001", event=Event.QUOTED, source="quoting",
    ...     at=datetime(2026, 11, 18, 11, 0, tzinfo=UTC))
    >>> m = lifecycle_message(ev)
    >>> m.message_id, m.exchange, m.routing_key, dict(m.headers)
    ('dlv_1:quoted:quoting', 'lifecycle', 'quoted', {'x-delivery-id': 'dlv_1', 'x-order-reference': 's42-0000001'})
"""

from __future__ import annotations

from system.domain.lifecycle import Event

from .headers import REFERENCE_HEADER, delivery_headers
from .lifecycle import (
    Driver,
    LifecycleEvent,
    LocationPing,
    Source,
    gateway_message_id,
    lifecycle_event_id,
    lifecycle_message,
    platform_event,
)
from .orders import (
    CANCEL_REQUESTED,
    ORDER_CREATED,
    ORDER_UPDATED,
    CancelRequested,
    OrderCreated,
    OrderMessage,
    OrderUpdated,
    QuotingInput,
    cancel_requested,
    cancel_requested_id,
    decode_order,
    decode_quoting_input,
    iso,
    order_created,
    order_created_id,
    order_updated,
    order_updated_id,
)
from .quotes import (
    DeliveryQuoted,
    RequoteRequested,
    quoted_message,
    quoted_message_id,
    requote_message,
    requote_message_id,
)
from .states import Contact, StateChanged, state_message, state_message_id

__all__ = [
    "CANCEL_REQUESTED",
    "ORDER_CREATED",
    "ORDER_UPDATED",
    "REFERENCE_HEADER",
    "CancelRequested",
    "Contact",
    "DeliveryQuoted",
    "Driver",
    "Event",
    "LifecycleEvent",
    "LocationPing",
    "OrderCreated",
    "OrderMessage",
    "OrderUpdated",
    "QuotingInput",
    "RequoteRequested",
    "Source",
    "StateChanged",
    "cancel_requested",
    "cancel_requested_id",
    "decode_order",
    "decode_quoting_input",
    "delivery_headers",
    "gateway_message_id",
    "iso",
    "lifecycle_event_id",
    "lifecycle_message",
    "order_created",
    "order_created_id",
    "order_updated",
    "order_updated_id",
    "platform_event",
    "quoted_message",
    "quoted_message_id",
    "requote_message",
    "requote_message_id",
    "state_message",
    "state_message_id",
]
