"""Intake's messages on the ``orders`` exchange as the downstream services read them.

The bodies are built by :mod:`system.intake.messages`; a cancel travels with routing key
``order.updated`` and body type ``order.cancel_requested``. Fields a reader does not use are ignored
(intake may add some), but the ones it uses are validated: a body that fails is parked as malformed.

Example:
    >>> decode_order(b'{"type": "order.cancel_requested", "message_id": "dlv_1:order.cancel_requested",'
    ...     b' "delivery_id": "dlv_1", "order_reference": "s42-0000001", "reason": "customer_request"}').reason
    'customer_request'
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from system.domain.intake import DeliveryRequest
from system.platform.contracts import RequoteRequested


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderCreated(_Lenient):
    """``order.created``: the whole normalised request."""

    type: Literal["order.created"]
    message_id: str
    delivery_id: str = Field(min_length=1)
    order_reference: str
    retailer_id: str
    request: DeliveryRequest
    #: when intake accepted the order (its deadline counts from here; absent in old messages: now)
    accepted_at: AwareDatetime | None = None


class OrderUpdated(_Lenient):
    """``order.updated``: a newer version of a provider's order (ePOS ``version``)."""

    type: Literal["order.updated"]
    message_id: str
    delivery_id: str = Field(min_length=1)
    order_reference: str
    version: int | None = None


class CancelRequested(_Lenient):
    """``order.cancel_requested`` (routing key ``order.updated``): the retailer or customer cancelled."""

    type: Literal["order.cancel_requested"]
    message_id: str
    delivery_id: str = Field(min_length=1)
    order_reference: str
    reason: str | None = None


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
