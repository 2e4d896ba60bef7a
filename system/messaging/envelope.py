"""Messages on the wire: what a publisher sends and what a handler receives, and the header names."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

# Headers the messaging core owns. Handlers must not rely on others of the ``x-drill-`` prefix.
ATTEMPT = "x-drill-attempt"  # handler failures so far
ORIGINAL_EXCHANGE = "x-drill-original-exchange"
ORIGINAL_ROUTING_KEY = "x-drill-original-routing-key"
PARK_REASON = "x-drill-park-reason"
PARKED_FROM = "x-drill-parked-from"  # the work queue that gave up on the message
PARKED_AT = "x-drill-parked-at"
LAST_ERROR = "x-drill-last-error"

CORE_HEADERS = (
    ATTEMPT,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
    PARK_REASON,
    PARKED_FROM,
    PARKED_AT,
    LAST_ERROR,
)

JSON = "application/json"


def new_message_id() -> str:
    """A fresh globally unique message id."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to publish: the id is fixed once, so every republish carries the same id."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str = field(default_factory=new_message_id)
    headers: Mapping[str, Any] = field(default_factory=dict)
    content_type: str = JSON
    message_type: str | None = None
    #: Per-message TTL (AMQP ``expiration``): a message still queued after this long is dropped by the
    #: broker. For requests that are worthless late (a quote request after the quote deadline).
    expiration_ms: int | None = None

    @classmethod
    def json(
        cls,
        exchange: str,
        routing_key: str,
        payload: BaseModel | Mapping[str, Any],
        *,
        message_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        message_type: str | None = None,
        expiration_ms: int | None = None,
    ) -> OutgoingMessage:
        """A JSON message from a pydantic model or a mapping."""
        if isinstance(payload, BaseModel):
            body = payload.model_dump_json().encode()
        else:
            body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            message_id=message_id or new_message_id(),
            headers=dict(headers or {}),
            message_type=message_type,
            expiration_ms=expiration_ms,
        )


T = TypeVar("T")


@dataclass(frozen=True)
class InboundMessage(Generic[T]):
    """What a handler receives: the decoded payload and the delivery's metadata."""

    message_id: str
    payload: T
    headers: Mapping[str, Any]
    exchange: str
    routing_key: str
    redelivered: bool
    attempt: int
    body: bytes

    @property
    def original_exchange(self) -> str:
        """Where the message was first published (retries arrive through the requeue exchange)."""
        return str(self.headers.get(ORIGINAL_EXCHANGE, self.exchange))

    @property
    def original_routing_key(self) -> str:
        """The routing key it was first published with."""
        return str(self.headers.get(ORIGINAL_ROUTING_KEY, self.routing_key))
