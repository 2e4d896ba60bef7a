"""Tracking → notifications and intake on the ``tracking`` exchange: an accepted state change."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime

from system.domain.common import Frozen
from system.domain.lifecycle import State
from system.messaging.envelope import OutgoingMessage
from system.platform.topology import STATE_PREFIX, TRACKING

from .headers import delivery_message
from .lifecycle import Driver


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


def state_message(m: StateChanged) -> OutgoingMessage:
    """``tracking`` → ``delivery.state.<state>``."""
    return delivery_message(TRACKING, f"{STATE_PREFIX}{m.state.value}", m)


def state_message_id(delivery_id: str, state: State) -> str:
    """The id of the state change ``state`` of ``delivery_id``."""
    return f"{delivery_id}:state:{state.value}"
