"""Which notifications a state change owes, to whom, by which channel — with a deterministic identity.

The platform posts each to the provider (``POST {notify_url}/v1/notifications``, docs/intake-api.md §4).
"Exactly one per state change per recipient" is enforced by storing each :class:`Notification` under
its :attr:`Notification.dedup_key` ``(delivery_id, state, audience, channel)`` with a unique index
before sending, and by sending its deterministic ``notification_id`` (the provider and the audit see
a retry as the same notification).

What is sent (templates are plain text; every state the customer can see is told once):

=================  =========================================  ========================================
new state          customer                                   driver (``to`` = driver id, push)
=================  =========================================  ========================================
requested          email "order received"                     —
quoted             —  (internal step)                         —
booked             —  (internal step)                         push: the job (store, reference)
courier_assigned   sms "a driver is on the way to the store"  push: pickup instructions
picked_up          sms "your order is on its way"             —
in_transit         sms "your driver is nearly there"          —
delivered          sms + email                                —
failed             sms + email                                —
returned           email                                      —
cancelled          sms + email                                push, if a driver was assigned
=================  =========================================  ========================================

A channel without an address (no e-mail on a provider order, no driver id yet) is skipped, not sent
empty. States skipped by a forward jump in the lifecycle owe nothing: they never happened for us.

Example:
    >>> d = NotificationTarget(delivery_id="dlv_1", order_reference="s42-0000001", phone="+447700900786",
    ...                        email="ben@example.com")
    >>> [(n.audience, n.channel, n.state.value) for n in notifications_for(d, State.IN_TRANSIT, State.DELIVERED)]
    [('customer', 'sms', 'delivered'), ('customer', 'email', 'delivered')]
    >>> notifications_for(d, State.DELIVERED, State.DELIVERED)
    []
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, Literal

from system.domain.lifecycle import State

Audience = Literal["customer", "driver"]
NotifyChannel = Literal["sms", "email", "push"]


@dataclass(frozen=True, slots=True)
class NotificationTarget:
    """What a notification needs to know about the delivery."""

    delivery_id: str
    order_reference: str
    phone: str | None = None
    email: str | None = None
    driver_id: str | None = None
    store_name: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one recipient about one state."""

    delivery_id: str
    order_reference: str
    state: State
    audience: Audience
    channel: NotifyChannel
    to: str
    template: str
    text: str

    @property
    def dedup_key(self) -> tuple[str, str, str, str]:
        """``(delivery_id, state, audience, channel)``: unique per state change and recipient."""
        return (self.delivery_id, self.state.value, self.audience, self.channel)

    @property
    def notification_id(self) -> str:
        """``ntf_`` + a hash of :attr:`dedup_key`: the same notification always has the same id."""
        digest = hashlib.sha256("\x1f".join(self.dedup_key).encode()).hexdigest()[:24]
        return f"ntf_{digest}"

    def wire(self) -> dict[str, str]:
        """The provider's request body (docs/intake-api.md §4)."""
        return {
            "notification_id": self.notification_id,
            "delivery_id": self.delivery_id,
            "order_reference": self.order_reference,
            "audience": self.audience,
            "channel": self.channel,
            "to": self.to,
            "state": self.state.value,
            "text": self.text,
        }


#: (audience, channel, template, text) per new state; ``{ref}`` and ``{store}`` are filled in.
PLAN: Final[dict[State, tuple[tuple[Audience, NotifyChannel, str, str], ...]]] = {
    State.REQUESTED: (("customer", "email", "order_received", "We have your order {ref}"),),
    State.QUOTED: (),
    State.BOOKED: (("driver", "push", "driver_job", "New job {ref}: collect at {store}"),),
    State.COURIER_ASSIGNED: (
        ("customer", "sms", "driver_assigned", "A driver is on the way to collect your order {ref}"),
        ("driver", "push", "driver_pickup", "Collect order {ref} at {store}"),
    ),
    State.PICKED_UP: (("customer", "sms", "picked_up", "Your order is on its way"),),
    State.IN_TRANSIT: (("customer", "sms", "arriving", "Your driver is nearly there with order {ref}"),),
    State.DELIVERED: (
        ("customer", "sms", "delivered", "Your order {ref} has been delivered"),
        ("customer", "email", "delivered", "Your order {ref} has been delivered"),
    ),
    State.FAILED: (
        ("customer", "sms", "failed", "We could not deliver your order {ref}"),
        ("customer", "email", "failed", "We could not deliver your order {ref}"),
    ),
    State.RETURNED: (("customer", "email", "returned", "Your order {ref} has gone back to the store"),),
    State.CANCELLED: (
        ("customer", "sms", "cancelled", "Your order {ref} has been cancelled"),
        ("customer", "email", "cancelled", "Your order {ref} has been cancelled"),
        ("driver", "push", "driver_cancelled", "Job {ref} is cancelled: do not collect"),
    ),
}


def _address(d: NotificationTarget, audience: Audience, channel: NotifyChannel) -> str | None:
    if audience == "driver":
        return d.driver_id
    return d.phone if channel == "sms" else d.email if channel == "email" else None


def notifications_for(
    delivery: NotificationTarget, old_state: State | None, new_state: State
) -> list[Notification]:
    """The notifications owed when ``delivery`` moves from ``old_state`` (None: just created) to
    ``new_state``. No change, no notification; the caller calls this only for accepted transitions.

    Example:
        >>> d = NotificationTarget("dlv_1", "s1-0000001", phone="+447700900001", driver_id="zoomly-drv-00007")
        >>> [(n.audience, n.to) for n in notifications_for(d, State.BOOKED, State.COURIER_ASSIGNED)]
        [('customer', '+447700900001'), ('driver', 'zoomly-drv-00007')]
    """
    if old_state == new_state:
        return []
    out = []
    for audience, channel, template, text in PLAN[new_state]:
        to = _address(delivery, audience, channel)
        if not to:
            continue
        body = text.format(ref=delivery.order_reference, store=delivery.store_name or "the store")
        out.append(
            Notification(
                delivery.delivery_id,
                delivery.order_reference,
                new_state,
                audience,
                channel,
                to,
                template,
                body,
            )
        )
    return out
