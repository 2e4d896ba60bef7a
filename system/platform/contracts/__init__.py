"""The messages platform services send each other (the courier and intake contracts are in
docs/intake-api.md). Each is a pydantic model (the consumer's decoder validates it: a body that fails
is parked as malformed) and a builder for its :class:`~system.messaging.OutgoingMessage`.

Message ids are derived from what the message is about, never random, so a handler that runs again
after a crash (its transaction rolled back) writes the same outbox row, and a consumer downstream
deduplicates any republish:

================================  ====================================  ==============================
message                           id                                    exchange → routing key
================================  ====================================  ==============================
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
    >>> ev = LifecycleEvent(message_id="dlv_1:quoted:quoting", delivery_id="dlv_1",
    ...     order_reference="s42-0000001", event=Event.QUOTED, source="quoting",
    ...     at=datetime(2026, 11, 18, 11, 0, tzinfo=UTC))
    >>> m = lifecycle_message(ev)
    >>> m.exchange, m.routing_key, dict(m.headers)
    ('lifecycle', 'quoted', {'x-delivery-id': 'dlv_1', 'x-order-reference': 's42-0000001'})
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from system.domain.common import Frozen, LatLon, Vehicle
from system.domain.lifecycle import Event, State
from system.domain.quoting import Quote
from system.messaging.envelope import OutgoingMessage

from .topology import (
    DELIVERY_HEADER,
    DELIVERY_QUOTED,
    DELIVERY_REQUOTE,
    LIFECYCLE,
    QUOTES,
    STATE_PREFIX,
    TRACKING,
)

Source = Literal["quoting", "dispatch", "gateway", "intake"]


class Driver(Frozen):
    """The courier's driver on a job."""

    id: str
    vehicle: Vehicle | None = None


class DeliveryQuoted(Frozen):
    """Quoting → dispatch: the suitable quotes, best first (``rank_quotes``); dispatch books them in order.

    ``round``: 1 for the order's first quotes, ``n`` for the answer to dispatch's ``n-1``-th
    :class:`RequoteRequested`. ``book_by``: the order's own deadline (quoting derives it from the
    retailer's pickup window, capped by a default), until which a transient failure is answered with a
    new round rather than giving up. ``pending``: see the field.
    """

    type: Literal["delivery.quoted"] = "delivery.quoted"
    message_id: str
    delivery_id: str
    order_reference: str
    retailer_id: str
    options: tuple[Quote, ...]
    decided_at: AwareDatetime
    round: int = Field(default=1, ge=1)
    book_by: AwareDatetime | None = None
    #: couriers asked in this round that had not answered when it was decided but answer other orders:
    #: they may still quote, so running out of ``options`` is not yet a refusal by every courier
    pending: tuple[str, ...] = ()


class RequoteRequested(Frozen):
    """Dispatch → quoting: round ``round``'s options ran out for transient reasons (a quote expired while
    the brokers were down, a courier never answered), before the order's deadline: ask the couriers again.

    ``refused`` lists the couriers that refused the order for good (they declined or had no driver):
    quoting does not ask them again. Quoting answers with a :class:`DeliveryQuoted` of round
    ``round + 1`` (or a ``no_courier`` lifecycle event), once: a repeated request for a round it already
    moved past changes nothing.
    """

    type: Literal["delivery.requote"] = "delivery.requote"
    message_id: str
    delivery_id: str
    order_reference: str
    round: int = Field(ge=1)
    reason: str
    refused: tuple[str, ...] = ()


class LifecycleEvent(Frozen):
    """Something happened to a delivery; tracking applies it with ``lifecycle.transition``.

    ``seq`` is the courier job's sequence number (courier statuses only). ``courier``,
    ``courier_job_id`` and ``driver`` come with ``booked`` (dispatch) and with courier statuses.
    """

    type: Literal["lifecycle"] = "lifecycle"
    message_id: str
    delivery_id: str
    order_reference: str
    event: Event
    source: Source
    at: AwareDatetime
    seq: int | None = None
    courier: str | None = None
    courier_job_id: str | None = None
    driver: Driver | None = None
    eta: AwareDatetime | None = None
    location: LatLon | None = None
    reason: str | None = None


class LocationPing(Frozen):
    """Gateway → tracking: where the driver of a job is (not a lifecycle event)."""

    type: Literal["location"] = "location"
    message_id: str
    delivery_id: str
    order_reference: str
    courier: str
    courier_job_id: str
    seq: int
    at: AwareDatetime
    location: LatLon


class Contact(Frozen):
    """Who gets the customer notifications."""

    name: str | None = None
    phone: str | None = None
    email: str | None = None


class StateChanged(Frozen):
    """Tracking → notifications and intake: an accepted state change, with what a notifier needs."""

    type: Literal["delivery.state"] = "delivery.state"
    message_id: str
    delivery_id: str
    order_reference: str
    retailer_id: str | None = None
    state: State
    previous: State | None = None
    at: AwareDatetime
    courier: str | None = None
    courier_job_id: str | None = None
    driver: Driver | None = None
    eta: AwareDatetime | None = None
    recipient: Contact = Contact()
    store_name: str | None = None
    reason: str | None = None


def _headers(delivery_id: str, reference: str) -> dict[str, str]:
    return {DELIVERY_HEADER: delivery_id, "x-order-reference": reference}


def quoted_message(m: DeliveryQuoted) -> OutgoingMessage:
    """``quotes`` → ``delivery.quoted``."""
    return OutgoingMessage.json(
        QUOTES,
        DELIVERY_QUOTED,
        m,
        message_id=m.message_id,
        headers=_headers(m.delivery_id, m.order_reference),
        message_type=m.type,
    )


def quoted_message_id(delivery_id: str, round_: int = 1) -> str:
    """The id of round ``round_``'s :class:`DeliveryQuoted` (round 1 keeps the id it had before rounds)."""
    base = f"{delivery_id}:{DELIVERY_QUOTED}"
    return base if round_ <= 1 else f"{base}:{round_}"


def requote_message(m: RequoteRequested) -> OutgoingMessage:
    """``quotes`` → ``delivery.requote`` (quoting's ``quoting.orders`` queue is bound to it)."""
    return OutgoingMessage.json(
        QUOTES,
        DELIVERY_REQUOTE,
        m,
        message_id=m.message_id,
        headers=_headers(m.delivery_id, m.order_reference),
        message_type=m.type,
    )


def requote_message_id(delivery_id: str, round_: int) -> str:
    """The id of dispatch's request to requote after round ``round_``."""
    return f"{delivery_id}:requote:{round_}"


def lifecycle_message(m: LifecycleEvent | LocationPing) -> OutgoingMessage:
    """``lifecycle`` (consistent hash on the delivery id); routing key = the event (or ``location``)."""
    key = m.event.value if isinstance(m, LifecycleEvent) else "location"
    return OutgoingMessage.json(
        LIFECYCLE,
        key,
        m,
        message_id=m.message_id,
        headers=_headers(m.delivery_id, m.order_reference),
        message_type=m.type,
    )


def state_message(m: StateChanged) -> OutgoingMessage:
    """``tracking`` → ``delivery.state.<state>``."""
    return OutgoingMessage.json(
        TRACKING,
        f"{STATE_PREFIX}{m.state.value}",
        m,
        message_id=m.message_id,
        headers=_headers(m.delivery_id, m.order_reference),
        message_type=m.type,
    )


def state_message_id(delivery_id: str, state: State) -> str:
    """The id of the state change ``state`` of ``delivery_id``."""
    return f"{delivery_id}:state:{state.value}"
