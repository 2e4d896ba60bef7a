"""Pure decisions of the notifications service: what a StateChanged owes, and when to try again.

The templates and the "exactly one per state change per recipient" identity live in
:mod:`system.domain.notifications`; this module only maps the message tracking sends onto them.

Example:
    >>> from datetime import UTC, datetime
    >>> from system.domain.lifecycle import State
    >>> from system.platform.contracts import Contact, StateChanged
    >>> sc = StateChanged(message_id="dlv_1:state:picked_up", delivery_id="dlv_1",
    ...     order_reference="s42-0000001", state=State.PICKED_UP, previous=State.COURIER_ASSIGNED,
    ...     at=datetime(2026, 11, 18, 11, 0, tzinfo=UTC), recipient=Contact(phone="+447700900786"))
    >>> [(n.audience, n.channel, n.to) for n in owed(sc)]
    [('customer', 'sms', '+447700900786')]
    >>> [retry_delay(a, 0.5, 4.0) for a in (1, 2, 3, 4, 5)]
    [0.5, 1.0, 2.0, 4.0, 4.0]
"""

from __future__ import annotations

from system.domain.notifications import Notification, NotificationTarget, notifications_for
from system.platform.contracts import StateChanged


def target_of(change: StateChanged) -> NotificationTarget:
    """Who can be told about ``change``: the customer's contacts, the driver (if any), the store."""
    return NotificationTarget(
        delivery_id=change.delivery_id,
        order_reference=change.order_reference,
        phone=change.recipient.phone,
        email=change.recipient.email,
        driver_id=change.driver.id if change.driver is not None else None,
        store_name=change.store_name,
    )


def owed(change: StateChanged) -> list[Notification]:
    """The notifications ``change`` owes (none when ``previous == state``: nothing changed)."""
    return notifications_for(target_of(change), change.previous, change.state)


def retry_delay(attempts: int, initial_s: float, max_s: float, retry_after_s: float | None = None) -> float:
    """The wait before the next try after ``attempts`` tries that failed retryably: doubling from
    ``initial_s``, capped at ``max_s``; a provider's Retry-After is honoured up to the cap."""
    delay: float = min(initial_s * 2.0 ** min(max(attempts, 1) - 1, 30), max_s)
    if retry_after_s is not None and retry_after_s > delay:
        delay = min(retry_after_s, max_s)
    return delay
