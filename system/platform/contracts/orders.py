"""Intake → quoting, dispatch and tracking on the ``orders`` exchange: the order messages, both sides.

Intake writes them with :func:`order_created`, :func:`order_updated` and :func:`cancel_requested` (from
its outbox); quoting and dispatch read them with :func:`decode_order` (quoting also with
:func:`decode_quoting_input`), tracking as part of its shard's input. Fields a reader does not use are
ignored (a newer intake may add some), but every field here is validated: a body that fails is parked as
malformed.

Message ids are derived from the delivery id (and the ePOS version), never random: two replicas racing
on the same order, or a request retried after an unknown outcome, produce the same id, so the outbox's
unique ``message_id`` keeps one row and consumers deduplicate any republish.

Routing keys are ones the platform topology binds (``system/platform/topology.py``): a mandatory
publish to an unbound key would come back unroutable and wait in the outbox. A cancellation therefore
travels as ``order.updated`` with ``type`` (and AMQP type) ``order.cancel_requested``.

Example:
    >>> decode_order(b'{"type": "order.cancel_requested", "message_id": "dlv_1:order.cancel_requested",'
    ...     b' "delivery_id": "dlv_1", "order_reference": "s42-0000001", "retailer_id": "r01",'
    ...     b' "reason": "customer_request", "requested_at": "2026-11-18T11:00:00.000Z"}').reason
    'customer_request'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, TypeAdapter

from system.domain.intake import DeliveryRequest
from system.messaging.envelope import OutgoingMessage
from system.platform.topology import ORDERS

from .headers import delivery_message
from .quotes import RequoteRequested

ORDER_CREATED = "order.created"
ORDER_UPDATED = "order.updated"
CANCEL_REQUESTED = "order.cancel_requested"


def iso(at: float) -> str:
    """Unix time as ISO-8601 UTC with a ``Z`` (the contract's instant format), millisecond precision."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: An instant of an order message: read as any aware datetime, written as :func:`iso` writes it.
Instant = Annotated[AwareDatetime, PlainSerializer(_instant, return_type=str)]


class _Order(BaseModel):
    # A reader ignores what it does not know (intake may add fields); what it knows is validated.
    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderCreated(_Order):
    """``order.created``: the whole normalised request; quoting starts from it, tracking starts the
    delivery in ``requested``."""

    type: Literal["order.created"] = "order.created"
    message_id: str
    delivery_id: str = Field(min_length=1)
    order_reference: str
    retailer_id: str
    channel: str | None = None
    #: when intake accepted the order (the order's deadline counts from here)
    accepted_at: Instant
    request: DeliveryRequest


class OrderUpdated(_Order):
    """``order.updated``: a newer version of a provider's order (ePOS ``version``)."""

    type: Literal["order.updated"] = "order.updated"
    message_id: str
    delivery_id: str = Field(min_length=1)
    order_reference: str
    retailer_id: str | None = None
    version: int | None = None
    updated_at: Instant
    #: the new version as intake normalised it (a ``DeliveryRequest``); no reader uses it yet, so it is
    #: not validated here: an update never parks for a detail nobody reads
    request: dict[str, Any] | None = None


class CancelRequested(_Order):
    """``order.cancel_requested`` (routing key ``order.updated``): the retailer or customer cancelled;
    downstream stops quoting or cancels the courier job."""

    type: Literal["order.cancel_requested"] = "order.cancel_requested"
    message_id: str
    delivery_id: str = Field(min_length=1)
    order_reference: str
    retailer_id: str | None = None
    reason: str | None = None
    state: Literal["cancelled"] = "cancelled"
    requested_at: Instant


OrderMessage = OrderCreated | OrderUpdated | CancelRequested

_ADAPTER: TypeAdapter[OrderMessage] = TypeAdapter(
    Annotated[OrderCreated | OrderUpdated | CancelRequested, Field(discriminator="type")]
)


def decode_order(body: bytes) -> OrderMessage:
    """The message's body as one of the three kinds; raises (so the consumer parks it) when invalid."""
    return _ADAPTER.validate_json(body)


#: What ``quoting.orders`` carries: the orders, and dispatch's requests to quote an order again.
QuotingInput = OrderCreated | OrderUpdated | CancelRequested | RequoteRequested

_QUOTING_ADAPTER: TypeAdapter[QuotingInput] = TypeAdapter(
    Annotated[OrderCreated | OrderUpdated | CancelRequested | RequoteRequested, Field(discriminator="type")]
)


def decode_quoting_input(body: bytes) -> QuotingInput:
    """An order message or a :class:`~system.platform.contracts.RequoteRequested`; raises when invalid."""
    return _QUOTING_ADAPTER.validate_json(body)


# ------------------------------------------------------------------ the writing side (intake)
def order_created_id(delivery_id: str) -> str:
    """The id of ``delivery_id``'s ``order.created``."""
    return f"{delivery_id}:{ORDER_CREATED}"


def order_updated_id(delivery_id: str, version: int) -> str:
    """The id of version ``version`` of ``delivery_id``'s order."""
    return f"{delivery_id}:{ORDER_UPDATED}:v{version}"


def cancel_requested_id(delivery_id: str) -> str:
    """The id of ``delivery_id``'s cancel request (one per delivery: a cancel is final)."""
    return f"{delivery_id}:{CANCEL_REQUESTED}"


def _at(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def _message(routing_key: str, m: OrderMessage) -> OutgoingMessage:
    return delivery_message(ORDERS, routing_key, m)


def order_created(delivery_id: str, request: DeliveryRequest, at: float) -> OutgoingMessage:
    """``order.created``: the whole normalised request, accepted at ``at`` (Unix time)."""
    m = OrderCreated(
        message_id=order_created_id(delivery_id),
        delivery_id=delivery_id,
        order_reference=request.reference,
        retailer_id=request.retailer_id,
        channel=request.channel,
        accepted_at=_at(at),
        request=request,
    )
    return _message(ORDER_CREATED, m)


def order_updated(delivery_id: str, request: DeliveryRequest, at: float) -> OutgoingMessage:
    """``order.updated``: a newer version of a provider's order (ePOS ``version``)."""
    version = request.source_version or 0
    m = OrderUpdated(
        message_id=order_updated_id(delivery_id, version),
        delivery_id=delivery_id,
        order_reference=request.reference,
        retailer_id=request.retailer_id,
        version=version,
        updated_at=_at(at),
        request=request.model_dump(mode="json"),
    )
    return _message(ORDER_UPDATED, m)


def cancel_requested(
    delivery_id: str, reference: str, retailer_id: str, reason: str, at: float
) -> OutgoingMessage:
    """The retailer or customer cancelled: ``order.updated`` with type ``order.cancel_requested``."""
    m = CancelRequested(
        message_id=cancel_requested_id(delivery_id),
        delivery_id=delivery_id,
        order_reference=reference,
        retailer_id=retailer_id,
        reason=reason,
        requested_at=_at(at),
    )
    return _message(ORDER_UPDATED, m)
